"""bench/table1.py --quick (the Table 1 protocol on a tiny synthetic-music corpus) runs end to end."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_CONDITIONS = 18  # the paper's 15 + bursty 0 / 10 dB + phone


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("table1")
    md = out / "RESULTS.md"
    md.write_text("# Results\n\n## Other section\n\nkept\n")
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "bench.table1", "--quick", "--out-dir", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    return proc, out


def test_quick_run_reports_every_method_and_cell(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads((out / "table1.json").read_text())
    table = res["table"]
    methods = {r["method"] for r in table}
    assert len(methods) == 5 and "FlowHash (TE+NF)" in methods and "TE+Exact" in methods
    assert {r["length_s"] for r in table} == {1.0, 2.0}
    assert len(table) == 5 * 2 * N_CONDITIONS and all(r["n"] == 3 for r in table)
    for r in table:
        assert 0.0 <= r["hit_rate"] <= 100.0 and 0.0 <= r["eval_pct"] <= 100.0 + 1e-6
    assert all(r["eval_pct"] == 100.0 for r in table if r["method"] == "TE+Exact")
    assert all(r["eval_pct"] < 50.0 for r in table if r["method"] == "FlowHash (TE+NF)")
    # exact search is the upper bound of the index methods on the same fingerprints (on average)
    mean = {m: sum(r["hit_rate"] for r in table if r["method"] == m) / (2 * N_CONDITIONS) for m in methods}
    assert mean["TE+Exact"] >= 50.0
    assert mean["TE+Exact"] >= max(mean.values()) - 5.0


def test_quick_run_writes_section_plot_and_queries(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = (out / "RESULTS.md").read_text()
    assert "## Other section\n\nkept" in text and "## Table 1 protocol on real music" in text
    assert "| 2s | FlowHash (TE+NF) |" in text and "Command: `python -m bench.table1 --quick" in text
    assert (out / "hit_rate_vs_snr.png").stat().st_size > 10_000
    assert (out / "queries.npz").exists()


def test_flowhash_figures_in_the_quick_run(quick_run):
    """FlowHash's own numbers, not only Exact's: measured in the quick run (the index's defaults),
    FlowHash (TE+NF) hits 81.1 % on average vs exact's 83.3 % scanning 2.2 % of this tiny database
    (max 2.9 %). Random ids, a broken index or a broken vote fall far below."""
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = json.loads((out / "table1.json").read_text())["table"]
    fh = [r for r in table if r["method"] == "FlowHash (TE+NF)"]
    ex = [r for r in table if r["method"] == "TE+Exact"]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    assert mean(fh, "hit_rate") >= mean(ex, "hit_rate") - 8.0, (mean(fh, "hit_rate"), mean(ex, "hit_rate"))
    assert mean(fh, "eval_pct") < 10.0
