"""Training of the audio fingerprinter (paper 3.1-3.2, A.3.3): encoder pre-training, then the flow.

1. Pre-training: random 1 s segments x and distorted views x+ (noise, reverb, offset), log-Mel,
   encoder F_theta and projection head F_phi trained with contrastive + triplet loss (eq. 3), Adam.
   Checkpoints (model, optimizer, step, config, RNG state) every ``checkpoint_every`` steps; a run
   resumes from the last one. A step's batch depends only on (seed, step), so a resumed run sees
   the same data as an uninterrupted one.
2. Flow: the frozen encoder fingerprints fresh pairs (e, e+); the FlowQuantizer (projection + RealNVP)
   is trained on them with e+ as positives.
3. The encoder, head and quantizer are saved as one Fingerprinter model file.

CLI: ``python -m faiss_flowhash.audio.train --audio DIR --synthetic-music 40 --out model.pt``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .encoder import EncoderConfig, ProjectionHead, TransformerEncoder, encoder_config
from .features import CONTEXT, WINDOW, window_features
from .losses import pretrain_loss
from .pairs import Augment, default_augment, load_sources, sample_pairs, synthetic_sources

__all__ = ["TrainConfig", "pretrain", "fingerprint_pairs", "train_quantizer", "add_train_arguments", "run_train", "main"]

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; defaults are the paper's where it gives one (A.3.2-A.3.3).

    encoder: preset name or EncoderConfig ("small"). K: projection size / hash bits (16).
    proj_hidden: projection head hidden size (512). batch_pairs: M pairs per step (512).
    steps: pre-training steps (10000). lr: Adam learning rate (1e-4). tau: temperature (0.1).
    triplet_weight: weight of eq. 2 in eq. 3 (1.0). max_offset_s: time offset of x+ (0.05 s).
    checkpoint_every: steps between checkpoints (500). seed: everything random derives from it (0).
    flow_pairs: (e, e+) pairs the flow is trained on (20000). quantizer: keyword arguments of the
    FlowQuantizer's QuantizerConfig ({} = its defaults). schedule: learning rate over the steps,
    "constant" or "cosine" (from lr down to lr / 20 at ``steps``). warmup_steps: linear warm-up from
    lr / 20 over the first steps (0).
    """

    encoder: EncoderConfig | str = "small"
    K: int = 16
    proj_hidden: int = 512
    batch_pairs: int = 512
    steps: int = 10000
    lr: float = 1e-4
    tau: float = 0.1
    triplet_weight: float = 1.0
    max_offset_s: float = 0.05
    checkpoint_every: int = 500
    seed: int = 0
    flow_pairs: int = 20000
    quantizer: dict = field(default_factory=dict)
    schedule: str = "constant"
    warmup_steps: int = 0

    def __post_init__(self):
        object.__setattr__(self, "encoder", encoder_config(self.encoder))
        for name in ("K", "proj_hidden", "batch_pairs", "steps", "checkpoint_every", "flow_pairs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name}: expected a positive int, got {v!r}")
        if self.batch_pairs < 2:
            raise ValueError(f"TrainConfig.batch_pairs: expected >= 2 (negatives come from the batch), got {self.batch_pairs}")
        for name in ("lr", "tau"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"TrainConfig.{name}: expected a positive float, got {v!r}")
        if not isinstance(self.triplet_weight, (int, float)) or self.triplet_weight < 0:
            raise ValueError(f"TrainConfig.triplet_weight: expected a float >= 0, got {self.triplet_weight!r}")
        if not isinstance(self.max_offset_s, (int, float)) or not 0 <= self.max_offset_s <= 0.5:
            raise ValueError(f"TrainConfig.max_offset_s: expected seconds in [0, 0.5], got {self.max_offset_s!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed: expected an int >= 0, got {self.seed!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"TrainConfig.schedule: expected 'constant' or 'cosine', got {self.schedule!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps: expected an int >= 0, got {self.warmup_steps!r}")
        if not isinstance(self.quantizer, dict):
            raise TypeError(f"TrainConfig.quantizer: expected a dict, got {type(self.quantizer).__name__}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["encoder"] = self.encoder.to_dict()
        return d

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based) under ``schedule`` and ``warmup_steps``."""
        lr = self.lr
        if self.schedule == "cosine":
            lr = self.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(step, self.steps) / self.steps)))
        if step < self.warmup_steps:
            lr *= 0.05 + 0.95 * step / self.warmup_steps
        return float(lr)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["encoder"] = EncoderConfig.from_dict(d["encoder"])
        return cls(**d)


# ----------------------------------------------------------------------------- pre-training


_SPAN = WINDOW + 2 * CONTEXT  # a 1 s window and the context its edge frames see


def _windows_to_mel(x: np.ndarray, device) -> torch.Tensor:
    return window_features(torch.from_numpy(x).to(device))  # (B, 64, 100)


def pretrain(
    sources: Sequence[np.ndarray],
    config: TrainConfig,
    *,
    augment: Augment,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    log_every: int = 50,
    init: dict | None = None,
) -> tuple[TransformerEncoder, ProjectionHead, list[tuple[float, float, float]]]:
    """Pre-train encoder + projection head on pairs drawn from ``sources`` ((T,) float32 arrays at 16 kHz).

    Returns (encoder in eval mode, head, history of (total, contrastive, triplet) per step).
    ``resume=True`` continues from ``checkpoint_dir/checkpoint.pt`` when it exists. ``max_steps``
    stops early after that many steps of this call (for tests and time budgets); the checkpoint then
    holds the step reached. ``max_seconds`` likewise stops after that much wall time (a time budget on
    a shared machine; the history says how many steps ran, and ``resume`` continues). Without a
    progress bar, a line with the mean losses goes to stderr every ``log_every`` steps. ``init``
    ({"encoder": state_dict, "head": state_dict}, e.g. from a model file) starts a fresh run from
    those weights instead of random ones (a resumed checkpoint takes precedence).
    """
    from tqdm.auto import tqdm

    c = config
    torch.manual_seed(c.seed)
    encoder = TransformerEncoder(c.encoder).to(device)
    head = ProjectionHead(c.encoder.out_dim, c.K, hidden=c.proj_hidden).to(device)
    if init is not None:
        encoder.load_state_dict(init["encoder"])
        head.load_state_dict(init["head"])
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=c.lr)
    step, history = 0, []
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume and ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt)
        saved = TrainConfig.from_dict(state["config"])
        if saved.encoder != c.encoder or saved.K != c.K or saved.proj_hidden != c.proj_hidden:
            raise ValueError(f"{ckpt}: expected a checkpoint of encoder {c.encoder}, K={c.K}, found {saved.encoder}, K={saved.K}")
        encoder.load_state_dict(state["encoder"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, history = state["step"], [tuple(h) for h in state["history"]]
    end = c.steps if max_steps is None else min(c.steps, step + max_steps)
    max_offset = int(round(c.max_offset_s * 16000))
    encoder.train()
    head.train()
    bar = tqdm(total=c.steps, initial=step, disable=not progress, desc="pretrain", dynamic_ncols=True)
    first, t_start = step, time.perf_counter()
    while step < end and (max_seconds is None or time.perf_counter() - t_start < max_seconds):
        for group in optimizer.param_groups:
            group["lr"] = c.lr_at(step)
        rng = np.random.default_rng([c.seed, step])
        x, x_pos = sample_pairs(sources, c.batch_pairs, rng=rng, augment=augment, window=_SPAN, max_offset=max_offset)
        mel = _windows_to_mel(np.concatenate([x, x_pos]), device)  # (2M, 64, 100)
        e = encoder(mel)  # (2M, d)
        y = head(e)  # (2M, K)
        M = c.batch_pairs
        loss, lc, lt = pretrain_loss(e[:M], e[M:], y[:M], y[M:], tau=c.tau, triplet_weight=c.triplet_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        history.append((loss.item(), lc.item(), lt.item()))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", con=f"{lc.item():.3f}", tri=f"{lt.item():.3f}")
        if not progress and step % log_every == 0:
            recent = np.mean(history[-log_every:], axis=0)
            rate = (step - first) / (time.perf_counter() - t_start)
            print(f"pretrain step {step}/{c.steps} loss {recent[0]:.4f} contrastive {recent[1]:.4f} "
                  f"triplet {recent[2]:.4f} ({rate:.2f} steps/s)", file=sys.stderr, flush=True)
        if ckpt is not None and step % c.checkpoint_every == 0:
            save_checkpoint(ckpt, encoder=encoder, head=head, optimizer=optimizer, step=step, config=c, history=history)
    bar.close()
    if ckpt is not None and step > first and step % c.checkpoint_every:
        save_checkpoint(ckpt, encoder=encoder, head=head, optimizer=optimizer, step=step, config=c, history=history)
    return encoder.eval(), head.eval(), history


@torch.inference_mode()
def fingerprint_pairs(
    encoder: TransformerEncoder,
    sources: Sequence[np.ndarray],
    n: int,
    *,
    augment: Augment,
    seed: int = 0,
    max_offset_s: float = 0.05,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints of n fresh pairs with the frozen encoder: e (n, d), e_pos (n, d) float32."""
    encoder.eval()
    rng = np.random.default_rng([seed, 1 << 31])  # a stream no pre-training step uses
    e, e_pos = [], []
    for lo in range(0, n, batch_size):
        x, x_pos = sample_pairs(sources, min(batch_size, n - lo), rng=rng, augment=augment, window=_SPAN,
                                max_offset=int(round(max_offset_s * 16000)))
        e.append(encoder(_windows_to_mel(x, device)).cpu().numpy())
        e_pos.append(encoder(_windows_to_mel(x_pos, device)).cpu().numpy())
    return np.concatenate(e), np.concatenate(e_pos)


def train_quantizer(e: np.ndarray, e_pos: np.ndarray, *, K: int = 16, quantizer: dict | None = None):
    """Train the lead's FlowQuantizer on fingerprints e (n, d) with positives e_pos (n, d); returns it."""
    from ..index import FlowQuantizer, QuantizerConfig

    q = FlowQuantizer(e.shape[1], K=K, config=QuantizerConfig(**(quantizer or {})))
    q.train(e, x_pos=e_pos)
    return q


# ----------------------------------------------------------------------------- command line


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` options to ``parser`` (used by ``flowhash train`` and ``python -m ...train``)."""
    d = TrainConfig()
    g = parser.add_argument_group("data")
    g.add_argument("--audio", nargs="*", default=[], metavar="PATH", help="audio files or folders (searched recursively)")
    g.add_argument("--synthetic-music", type=int, default=0, metavar="N", help="add N generated music clips (default 0)")
    g.add_argument("--speech", type=int, default=0, metavar="N", help="add N espeak-ng speech clips (default 0)")
    g.add_argument("--synthetic-seconds", type=float, default=30.0, help="length of each generated music clip (30)")
    g.add_argument("--noises", type=int, default=32, help="training noise clips generated (32)")
    g.add_argument("--rirs", type=int, default=32, help="training room impulse responses generated (32)")
    g.add_argument("--midi", type=int, default=0, metavar="N",
                   help="add N generated General MIDI clips rendered with fluidsynth + FluidR3_GM (default 0)")
    g.add_argument("--augment", choices=("distort", "paper"), default="distort",
                   help="distortions of x+: 'distort' (audio.distort 'train' profile: rooms, bursty and steady noise, "
                        "phone/laptop EQ, gain, clipping, codecs) or 'paper' (noise / reverb / both, 4.4) (default distort)")
    g = parser.add_argument_group("model and optimisation")
    g.add_argument("--config", default="small", help="encoder preset: small (CPU) or paper (default small)")
    g.add_argument("--K", type=int, default=d.K, help=f"hash bits (default {d.K})")
    g.add_argument("--steps", type=int, default=d.steps, help=f"pre-training steps (default {d.steps})")
    g.add_argument("--batch-pairs", type=int, default=d.batch_pairs, help=f"M pairs per step (default {d.batch_pairs})")
    g.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    g.add_argument("--tau", type=float, default=d.tau, help=f"contrastive temperature (default {d.tau})")
    g.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    g.add_argument("--schedule", choices=("constant", "cosine"), default=d.schedule,
                   help=f"learning-rate schedule (default {d.schedule})")
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help=f"linear lr warm-up steps (default {d.warmup_steps})")
    g.add_argument("--init", default=None, metavar="MODEL",
                   help="start pre-training from this model file's encoder and head (same --config and --K)")
    g.add_argument("--flow-pairs", type=int, default=d.flow_pairs, help=f"(e, e+) pairs for the flow (default {d.flow_pairs})")
    g.add_argument("--flow-steps", type=int, default=None, help="flow training steps (default: QuantizerConfig's)")
    g.add_argument("--no-quantizer", action="store_true", help="skip flow training (the model file has no quantizer)")
    g = parser.add_argument_group("run")
    g.add_argument("--out", required=True, help="model file to write")
    g.add_argument("--checkpoint-dir", default=None, help="folder for checkpoint.pt (default: OUT + '.ckpt')")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help=f"steps (default {d.checkpoint_every})")
    g.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    g.add_argument("--max-minutes", type=float, default=None,
                   help="stop pre-training after this many minutes of wall time (default: run all --steps)")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    g.add_argument("--device", default="cpu", help="torch device (default cpu)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _command_line() -> str:
    prog = "python -m faiss_flowhash.audio.train" if sys.argv[0].endswith("train.py") else Path(sys.argv[0]).name
    return " ".join([prog] + sys.argv[1:])


def run_train(args: argparse.Namespace) -> int:
    """Run a training from parsed ``add_train_arguments`` options; writes ``args.out``. Returns 0."""
    from .fingerprinter import Fingerprinter

    torch.set_num_threads(args.threads)
    t0 = time.time()
    quantizer = {} if args.flow_steps is None else {"steps": args.flow_steps}
    config = TrainConfig(
        encoder=args.config, K=args.K, batch_pairs=args.batch_pairs, steps=args.steps, lr=args.lr, tau=args.tau,
        checkpoint_every=args.checkpoint_every, seed=args.seed, flow_pairs=args.flow_pairs, quantizer=quantizer,
        schedule=args.schedule, warmup_steps=args.warmup_steps,
    )
    sources = []
    if args.synthetic_music or args.speech:
        sources += synthetic_sources(n_music=args.synthetic_music, n_speech=args.speech,
                                     seconds=args.synthetic_seconds, seed=args.seed)
    if args.midi:
        from .midi import midi_music

        sources += [midi_music(args.synthetic_seconds, seed=args.seed * 100003 + i) for i in range(args.midi)]
    files = load_sources(args.audio)  # after the generated audio: files still being written are listed late
    n_files = len(files)
    sources += files
    if not sources:
        raise SystemExit("train: no audio (give --audio PATH, --synthetic-music N or --speech N)")
    hours = sum(len(s) for s in sources) / 16000 / 3600
    print(f"train: {len(sources)} signals ({n_files} files), {hours:.2f} h of audio", file=sys.stderr)
    if args.augment == "paper":
        augment = default_augment(seed=args.seed, n_noises=args.noises, n_rirs=args.rirs)
    else:
        from .distort import PROFILES, DistortionAugment

        augment = DistortionAugment(dataclasses.replace(PROFILES["train"], bank_seed=args.seed, n_noises=args.noises,
                                                        n_rooms=args.rirs))
    init = None
    if args.init:
        src = Fingerprinter.load(args.init)
        if src.head is None:
            raise SystemExit(f"train: --init {args.init}: the model file has no projection head")
        init = {"encoder": src.encoder.state_dict(), "head": src.head.state_dict()}
    ckpt_dir = args.checkpoint_dir or args.out + ".ckpt"
    t1 = time.time()
    encoder, head, history = pretrain(
        sources, config, augment=augment, checkpoint_dir=ckpt_dir, resume=args.resume,
        device=args.device, progress=not args.no_progress,
        max_seconds=None if args.max_minutes is None else 60 * args.max_minutes, init=init,
    )
    t2 = time.time()
    q, qreport = None, None
    if not args.no_quantizer:
        print(f"train: fingerprinting {config.flow_pairs} (e, e+) pairs for the flow", file=sys.stderr, flush=True)
        e, e_pos = fingerprint_pairs(encoder, sources, config.flow_pairs, augment=augment, seed=config.seed,
                                     device=args.device)
        q = train_quantizer(e, e_pos, K=config.K, quantizer=config.quantizer)
        qreport = q.report
    t3 = time.time()
    last = np.array(history[-100:]) if history else np.zeros((1, 3))
    meta = {
        "command": _command_line(),
        "train_config": json.loads(json.dumps(config.to_dict())),
        "audio": {"files": [str(a) for a in args.audio], "n_file_signals": n_files,
                  "synthetic_music": args.synthetic_music, "speech": args.speech, "midi": args.midi,
                  "hours": round(hours, 3)},
        "augment": args.augment, "init": args.init,
        "pretrain": {"steps": len(history), "seconds": round(t2 - t1, 1),
                     "final_loss_mean_last_100": [round(float(v), 4) for v in last.mean(0)]},
        "quantizer": None if qreport is None else {
            "seconds": round(t3 - t2, 1), "nll": qreport.nll, "bce": qreport.bce,
            "balance": json.loads(json.dumps(qreport.balance, default=float)),
        },
        "seconds_total": round(t3 - t0, 1),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": str(torch.__version__), "threads": args.threads,
    }
    fp = Fingerprinter(encoder, head=head, quantizer=q, meta=meta)
    fp.save(args.out)
    print(json.dumps({"out": args.out, "model_id": fp.model_id, **{k: meta[k] for k in ("pretrain", "quantizer", "seconds_total")}},
                     indent=1, default=float))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faiss_flowhash.audio.train", description=__doc__.split("\n")[0])
    return run_train(add_train_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
