"""bench/fingerprint_ann.py: the issue-10 QPS floor read off ann_bench rows (no data set needed)."""

from bench.fingerprint_ann import floor_lines, qps_floor


def _row(family, label, r1, qps, qps_single, eval_pct=1.0):
    return dict(family=family, label=label, search={"p": 1}, r1=r1, qps=qps, qps_single=qps_single, eval_pct=eval_pct)


def test_floor_compares_the_best_qps_at_the_recall_target():
    rows = [_row("IVFFlat", "IVF1024", 0.96, 8000, 3000), _row("IVFFlat", "IVF1024", 0.99, 4000, 1500),
            _row("IVFFlat", "IVF64", 0.94, 20000, 9000),  # fast but below the target: not IVF's best
            _row("FlowHash", "FlowHash K16", 0.951, 4100, 1000), _row("FlowHash", "FlowHash K16", 0.90, 9000, 5000),
            _row("HNSWFlat", "HNSW32", 0.99, 50000, 50000)]  # other families play no part
    f = qps_floor(rows)
    assert f["batch"]["ivf"] == 8000 and f["batch"]["flowhash"] == 4100
    assert f["batch"]["ratio"] == 4100 / 8000 and f["batch"]["met"]
    assert f["single"]["ratio"] == 1000 / 3000 and not f["single"]["met"]
    text = "\n".join(floor_lines(f))
    assert "0.51x -> **met**" in text and "0.33x -> **not met**" in text


def test_floor_not_met_when_flowhash_never_reaches_the_target():
    rows = [_row("IVFFlat", "IVF1024", 0.97, 8000, 3000), _row("FlowHash", "FlowHash K16", 0.87, 9000, 5000)]
    f = qps_floor(rows)
    assert f["batch"]["flowhash"] is None and not f["batch"]["met"] and f["batch"]["ratio"] is None
    assert "FlowHash never reaches R@1 0.95" in "\n".join(floor_lines(f))
