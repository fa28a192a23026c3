"""FlowHash across machines: a sharded index whose shards are Ray actors (needs the ``ray`` extra)."""

from .sharded import ShardedFlowHashIndex, code_bounds, shard_of_codes, shard_of_range

__all__ = ["ShardedFlowHashIndex", "shard_of_codes", "code_bounds", "shard_of_range"]
