"""The FlowHash index: quantizer (projection -> flow -> sign codes), bucket table, scoring, files."""

from .balance import bucket_balance, code_balance
from .errors import NotTrainedError
from .engine import IVFEngine
from .flowhash_index import FlowHashIndex, SearchStats
from .params import DEFAULT, SearchParams
from .quantizer import FlowQuantizer, QuantizerConfig, TrainReport
from .serialize import deserialize_index, read_index, serialize_index, write_index

__all__ = [
    "FlowHashIndex", "SearchParams", "DEFAULT", "IVFEngine", "FlowQuantizer", "QuantizerConfig", "TrainReport", "SearchStats", "NotTrainedError",
    "write_index", "read_index", "serialize_index", "deserialize_index", "bucket_balance", "code_balance",
]
