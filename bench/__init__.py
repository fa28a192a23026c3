"""Benchmarks (not part of the installed package). Run from the repository root as modules,
``python -m bench.<script> ...``, so ``bench`` and ``faiss_flowhash`` import without path tricks
(see bench/README.md for each script's command, section and plot)."""
