"""Pre-training loop, pairs, checkpoints and the train command (tiny configs, generated audio)."""

import argparse

import numpy as np
import pytest
import torch

from faiss_flowhash.audio.augment import AugmentConfig, Augmenter
from faiss_flowhash.audio.encoder import EncoderConfig
from faiss_flowhash.audio.pairs import sample_pairs
from faiss_flowhash.audio.checkpoint import load_checkpoint
from faiss_flowhash.audio.train import TrainConfig, add_train_arguments, fingerprint_pairs, pretrain, train_quantizer


SR = 16000
TINY_DROP = EncoderConfig(dim=16, layers=1, heads=2, ffn=32, out_dim=16, dropout=0.1)


def _sources(n=6, seconds=4.0, seed=0):
    """Distinct tonal signals: each a sum of a few random partials with a slow vibrato."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = []
    for _ in range(n):
        f = rng.uniform(150, 3000, size=4)
        x = sum(np.sin(2 * np.pi * fk * t + 3 * np.sin(2 * np.pi * rng.uniform(0.2, 2) * t)) for fk in f)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t) ** 2
        out.append((0.1 * x * env).astype(np.float32))
    return out


def _augment(seed=0):
    rng = np.random.default_rng(seed)
    noises = [rng.standard_normal(SR).astype(np.float32) for _ in range(3)]
    rirs = [np.exp(-np.arange(2000) / 300.0) * rng.standard_normal(2000) for _ in range(3)]
    aug = Augmenter(noises, rirs, config=AugmentConfig(p_offset=0.0), seed=seed)

    def augment(x, g):
        aug.rng = g
        return aug(x)

    return augment


def test_config_validation_and_round_trip():
    c = TrainConfig(encoder="tiny", batch_pairs=4, steps=3)
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert c.encoder.dim == 16
    for bad in (dict(batch_pairs=1), dict(lr=0.0), dict(tau=-1.0), dict(steps=0), dict(seed=-1), dict(encoder="huge")):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(TypeError):
        TrainConfig(quantizer=[1])


def test_sample_pairs_shapes_determinism_and_silence():
    src = _sources(3)
    src.append(np.zeros(3 * SR, np.float32))  # silence is re-drawn, never picked as x
    a = sample_pairs(src, 16, rng=np.random.default_rng(1), augment=_augment())
    b = sample_pairs(src, 16, rng=np.random.default_rng(1), augment=_augment())
    assert a[0].shape == a[1].shape == (16, SR) and a[0].dtype == a[1].dtype == np.float32
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert (np.sqrt(np.mean(a[0] ** 2, axis=1)) > 1e-3).all()
    assert not np.allclose(a[0], a[1])
    with pytest.raises(ValueError):
        sample_pairs([np.zeros(100, np.float32)], 2, rng=np.random.default_rng(0), augment=_augment())


def test_tiny_training_lowers_loss():
    torch.manual_seed(0)
    cfg = TrainConfig(encoder="tiny", batch_pairs=16, steps=40, lr=3e-3, seed=0)
    _, _, hist = pretrain(_sources(), cfg, augment=_augment(), progress=False)
    losses = np.array([h[0] for h in hist])
    assert len(losses) == 40 and np.isfinite(losses).all()
    assert losses[-8:].mean() < losses[:8].mean() - 0.3


def test_checkpoint_resume_matches_uninterrupted(tmp_path):
    cfg = TrainConfig(encoder=TINY_DROP, batch_pairs=4, steps=6, lr=1e-3, checkpoint_every=2, seed=3)
    src, aug = _sources(3, 2.0), _augment()
    enc_a, head_a, hist_a = pretrain(src, cfg, augment=aug, progress=False, checkpoint_dir=tmp_path / "a")
    _, _, hist_b1 = pretrain(src, cfg, augment=aug, progress=False, checkpoint_dir=tmp_path / "b", max_steps=3)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 3
    enc_b, head_b, hist_b = pretrain(src, cfg, augment=aug, progress=False, checkpoint_dir=tmp_path / "b", resume=True)
    assert len(hist_b1) == 3 and len(hist_b) == 6
    np.testing.assert_allclose(np.array(hist_b), np.array(hist_a), rtol=1e-5, atol=1e-6)
    for k, v in enc_a.state_dict().items():
        torch.testing.assert_close(enc_b.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    state = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert state["step"] == 6 and set(state) >= {"encoder", "head", "optimizer", "config", "torch_rng", "history"}


def test_resume_refuses_other_model(tmp_path):
    src, aug = _sources(2, 2.0), _augment()
    cfg = TrainConfig(encoder="tiny", batch_pairs=4, steps=1)
    pretrain(src, cfg, augment=aug, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="expected a checkpoint of encoder"):
        pretrain(src, TrainConfig(encoder=TINY_DROP, batch_pairs=4, steps=2), augment=aug, progress=False,
                 checkpoint_dir=tmp_path, resume=True)


def test_load_checkpoint_rejects_foreign_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "faiss-flowhash-train-checkpoint", "version": 99}, other)
    with pytest.raises(ValueError, match="expected checkpoint version 1, got 99"):
        load_checkpoint(other)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_flow_on_frozen_fingerprints():
    torch.manual_seed(0)
    cfg = TrainConfig(encoder="tiny", batch_pairs=8, steps=2, K=4)
    enc, _, _ = pretrain(_sources(3, 2.0), cfg, augment=_augment(), progress=False)
    e, e_pos = fingerprint_pairs(enc, _sources(3, 2.0), 256, augment=_augment(), batch_size=100)
    assert e.shape == e_pos.shape == (256, 16) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    q = train_quantizer(e, e_pos, K=4, quantizer=dict(steps=20, batch_size=64, projection_steps=5, precondition=False, verbose=False))
    assert q.encode(e).shape == (256, 4)


def test_cli_arguments_parse():
    args = add_train_arguments(argparse.ArgumentParser()).parse_args(["--out", "m.pt", "--steps", "7", "--synthetic-music", "2"])
    assert (args.steps, args.synthetic_music, args.config, args.threads, args.resume) == (7, 2, "small", 1, False)


def test_time_budget_stops_pretraining(tmp_path):
    cfg = TrainConfig(encoder="tiny", batch_pairs=4, steps=50)
    _, _, hist = pretrain(_sources(2, 2.0), cfg, augment=_augment(), progress=False, max_seconds=0.0,
                          checkpoint_dir=tmp_path)
    assert hist == [] and not (tmp_path / "checkpoint.pt").exists()


def test_train_command_writes_a_loadable_model(tmp_path, capsys):
    from faiss_flowhash.audio.fingerprinter import Fingerprinter
    from faiss_flowhash.audio.train import main

    out = tmp_path / "m.pt"
    argv = ["--synthetic-music", "2", "--synthetic-seconds", "3", "--noises", "2", "--rirs", "2", "--config", "tiny",
            "--steps", "3", "--batch-pairs", "4", "--no-quantizer", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    fp = Fingerprinter.load(out)
    assert fp.dim == 16 and fp.quantizer is None
    assert fp.meta["pretrain"]["steps"] == 3 and fp.meta["audio"]["synthetic_music"] == 2
    assert (tmp_path / "m.pt.ckpt" / "checkpoint.pt").exists()
    assert main(argv[:-1] + [str(out), "--resume", "--steps", "5"]) == 0  # continues from step 3
    assert Fingerprinter.load(out).meta["pretrain"]["steps"] == 5


def test_load_sources_reads_folders_and_skips_bad_files(tmp_path, capsys):
    from faiss_flowhash.audio.io import save_audio
    from faiss_flowhash.audio.pairs import load_sources

    (tmp_path / "sub").mkdir()
    save_audio(tmp_path / "a.wav", _sources(1, 2.0)[0], SR)
    save_audio(tmp_path / "sub" / "b.flac", _sources(1, 1.5, seed=1)[0], SR)
    save_audio(tmp_path / "short.wav", np.zeros(SR // 2, np.float32), SR)  # < 1.1 s: dropped
    (tmp_path / "bad.ogg").write_bytes(b"not audio")
    extra = np.zeros(2 * SR, np.float32)
    out = load_sources([tmp_path, extra])
    assert sorted(len(x) for x in out) == [int(1.5 * SR), 2 * SR, 2 * SR]
    assert "skipping" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        load_sources([tmp_path / "missing"])


def test_lr_schedule_and_warm_start():
    cfg = TrainConfig(encoder="tiny", batch_pairs=4, steps=100, lr=1e-3, schedule="cosine", warmup_steps=10)
    lrs = [cfg.lr_at(s) for s in range(101)]
    assert lrs[0] == pytest.approx(5e-5) and max(lrs) == pytest.approx(1e-3, rel=0.03)
    assert lrs[100] == pytest.approx(5e-5) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert TrainConfig(encoder="tiny", lr=2e-4).lr_at(7) == 2e-4
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    enc, head, _ = pretrain(_sources(2, 2.0), TrainConfig(encoder="tiny", batch_pairs=4, steps=2), augment=_augment(),
                            progress=False, max_steps=1)
    init = {"encoder": enc.state_dict(), "head": head.state_dict()}
    enc2, head2, hist = pretrain(_sources(2, 2.0), TrainConfig(encoder="tiny", batch_pairs=4, steps=2, seed=5),
                                 augment=_augment(), progress=False, max_steps=0, init=init)
    assert hist == [] and all(torch.equal(v, enc2.state_dict()[k]) for k, v in init["encoder"].items())
