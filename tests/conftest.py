"""Shared test fixtures: fixed seeds, never the clock."""

import os

import faiss
import numpy as np
import pytest
import torch
from hypothesis import settings

#: CI=true (what CI services set, and .ci/run exports): the ci profile, and missing components fail.
CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

# ci explores 4x more than dev (200 would add ~45 s CPU, 3/4 of it in test_index.py's batch-search test); both derandomized (the same examples every run, so a red CI reproduces).
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci" if CI else "dev")

# The tests use small tensors: on a busy machine two OpenMP threads spend most of their time in
# barriers (10 ms per op seen here), one thread is several times faster and just as deterministic.
torch.set_num_threads(1)
faiss.omp_set_num_threads(1)


def _skip_reason(report) -> str:
    lr = report.longrepr
    return str(lr[2]) if isinstance(lr, tuple) and len(lr) == 3 else str(lr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Skips that hide a broken product turn into failures.

    Always: ``pytest.importorskip`` of one of the package's own modules (a module that does not import
    is a bug, not a missing option). Under CI: any skip for a missing import or a missing espeak-ng
    (``.ci/run`` installs both; a CI machine without them must go red, not quietly test less).
    """
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    own = "could not import 'faiss_flowhash" in reason
    missing = CI and ("could not import" in reason or "espeak" in reason.lower())
    if own or missing:
        report.outcome = "failed"
        why = "the package's own module does not import" if own else "CI=true: a component the tests need is missing"
        report.longrepr = f"{why} (a skip is not allowed here): {reason}"


@pytest.fixture(scope="session")
def espeak():
    """For tests that need espeak-ng: skips without it, except under CI=true, where it fails."""
    from faiss_flowhash.audio import synth

    if not synth.espeak_available():
        if CI:
            pytest.fail("CI=true and espeak-ng is not installed (.ci/run installs it)")
        pytest.skip("espeak-ng not installed")
    return synth


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
