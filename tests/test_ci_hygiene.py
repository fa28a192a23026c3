"""CI hygiene: .ci/run fails without espeak-ng, skips cannot hide a broken module (or, under CI, a missing
component), the ci hypothesis profile explores more than dev, and no test asserts on the wall clock."""

import os
import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from hypothesis import settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


def _stub(folder, name, body):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def _run_ci(tmp_path, *, espeak: bool, apt_installs: bool):
    """.ci/run with PATH holding only stubs: apt-get (fails, or 'installs' an espeak-ng stub), python (logs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("dirname"), bin_dir / "dirname")
    log = tmp_path / "python.log"
    _stub(bin_dir, "python", f'echo "CI=$CI $*" >> "{log}"')
    if espeak:
        _stub(bin_dir, "espeak-ng", "exit 0")
    if apt_installs:
        _stub(bin_dir, "apt-get", f'[ "$1" = install ] && printf "#!/bin/sh\\nexit 0\\n" > "{bin_dir}/espeak-ng" '
                                  f'&& chmod +x "{bin_dir}/espeak-ng"; exit 0')
    else:
        _stub(bin_dir, "apt-get", 'echo "E: Unable to locate package espeak-ng" >&2; exit 100')
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    proc = subprocess.run([shutil.which("bash"), os.path.join(ROOT, ".ci", "run")], env=env, capture_output=True,
                          text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


def test_ci_run_fails_when_espeak_cannot_be_installed(tmp_path):
    proc, calls = _run_ci(tmp_path, espeak=False, apt_installs=False)
    assert proc.returncode != 0 and "espeak-ng" in proc.stderr
    assert calls == []  # stopped before installing or testing anything


@pytest.mark.parametrize("espeak, apt_installs", [(True, False), (False, True)])
def test_ci_run_goes_on_with_espeak_and_sets_ci(tmp_path, espeak, apt_installs):
    proc, calls = _run_ci(tmp_path, espeak=espeak, apt_installs=apt_installs)
    assert proc.returncode == 0, proc.stderr
    assert calls[-1] == "CI=true -m pytest -q"  # the README's command, under the ci profile


def _inner_pytest(tmp_path, ci: bool):
    """Start pytest with tests/conftest.py on four kinds of skip in a scratch folder; returns (process, xml)."""
    folder = tmp_path / ("ci" if ci else "dev")
    folder.mkdir()
    shutil.copy(os.path.join(TESTS, "conftest.py"), folder / "conftest.py")
    (folder / "test_skips.py").write_text(
        "import pytest\n"
        "def test_own_module():\n    pytest.importorskip('faiss_flowhash.no_such_module')\n"
        "def test_third_party():\n    pytest.importorskip('no_such_package_xyz')\n"
        "def test_espeak():\n    pytest.skip('espeak-ng not installed')\n"
        "def test_other_skip():\n    pytest.skip('libsndfile here cannot write this subtype')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    xml = folder / "out.xml"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder),
                             f"--junitxml={xml}"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, xml


def _outcomes(proc, xml) -> dict:
    out = proc.communicate(timeout=120)[0].decode(errors="replace")
    assert xml.exists(), out[-2000:]
    result = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kinds = {c.tag for c in case}
        result[case.get("name")] = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
    return result


def test_skips_that_hide_a_broken_product_fail(tmp_path):
    dev, ci = _inner_pytest(tmp_path, ci=False), _inner_pytest(tmp_path, ci=True)  # both at once (2 cores)
    assert _outcomes(*dev) == {"test_own_module": "failed", "test_third_party": "skipped", "test_espeak": "skipped",
                               "test_other_skip": "skipped"}
    assert _outcomes(*ci) == {"test_own_module": "failed", "test_third_party": "failed", "test_espeak": "failed",
                              "test_other_skip": "skipped"}


def _test_sources():
    for name in sorted(os.listdir(TESTS)):
        if name.endswith(".py"):
            with open(os.path.join(TESTS, name)) as f:
                yield name, f.read().splitlines()


def test_no_importorskip_of_the_package_itself():
    bad = [f"{name}:{i + 1}" for name, lines in _test_sources() for i, line in enumerate(lines)
           if re.search(r"importorskip\(\s*[\"']faiss_flowhash", line) and name != "test_ci_hygiene.py"]
    assert bad == []


def test_no_wall_clock_asserts():
    clock = re.compile(r"\bassert\b.*\b(perf_counter|monotonic|process_time|time\.time)\(")
    bad = [f"{name}:{i + 1}" for name, lines in _test_sources() for i, line in enumerate(lines)
           if clock.search(line) and name != "test_ci_hygiene.py"]
    assert bad == []


def test_ci_profile_explores_more_than_dev():
    ci, dev = settings.get_profile("ci"), settings.get_profile("dev")
    assert ci.max_examples >= 4 * dev.max_examples and ci.derandomize and dev.derandomize
    assert ci.deadline is None and dev.deadline is None  # no timing-dependent failures on a busy machine
    from conftest import CI

    assert settings.default.max_examples == (ci if CI else dev).max_examples
