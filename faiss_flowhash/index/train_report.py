"""What :meth:`FlowQuantizer.train <faiss_flowhash.index.quantizer.FlowQuantizer.train>` did (own module:
the quantizer and the index name it without importing the torch training code)."""

from dataclasses import dataclass, field

__all__ = ["TrainReport"]


@dataclass
class TrainReport:
    """What :meth:`FlowQuantizer.train` did.

    Attributes:
        projection: projection kind used. used_positives: the user's positives (else neighbour pairs).
        n_train: training vectors used. steps: flow steps run. seconds: wall time of the whole training.
        nll, bce: last training losses (None where not computed).
        heldout_start, heldout_trained: held-out pair score of the identity start and of the trained
            flow (``QuantizerConfig.gate``: "probes", mean of hit@1/@16/@256 of the target's code among
            the query's cheapest flips; "candidates", mean hit rate within 0.1/0.5/2 % scanned).
        kept: "trained" or "start" (the trained flow did not beat its start and was dropped).
        balance: bucket balance of the training codes. history: training log.
    """

    projection: str
    used_positives: bool
    n_train: int
    steps: int
    seconds: float
    nll: float | None
    bce: float | None
    heldout_start: float | None
    heldout_trained: float | None
    kept: str
    balance: dict
    history: list = field(default_factory=list)
