"""FlowHash across machines: a sharded index whose shards are Ray actors (needs the ``ray`` extra)."""

from .sharded import ShardedFlowHashIndex, shard_of_codes

__all__ = ["ShardedFlowHashIndex", "shard_of_codes"]
