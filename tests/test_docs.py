"""The README's example and the package docstring run as written."""

import doctest
import re
from pathlib import Path

import faiss_flowhash

ROOT = Path(__file__).resolve().parents[1]


def test_package_docstring_example():
    result = doctest.testmod(faiss_flowhash, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_readme_index_example(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "README has a python example"
    code = blocks[0].replace("/tmp/idx.flowhash", str(tmp_path / "idx.flowhash"))
    code = code.replace("steps=100)", "steps=20, projection_steps=20, batch_size=512, verbose=False)")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["I"].shape == (100, 10) and (scope["I"][:, 0] == range(100)).mean() > 0.9
