"""CI runs every test: with TRAFFICGEN_REQUIRE_TOOLS set (``.ci/run``), a skip fails, whether it
comes from a test, a fixture, a ``skipif`` marker or a module skipped at collection; an xfail
stays one; without the variable a skip is a skip (tests/conftest.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = '''
import pytest

def test_ok():
    pass

def test_skip():
    pytest.skip("no frobnicator")

@pytest.mark.skipif(True, reason="a marker says so")
def test_marker():
    pass

@pytest.fixture
def needs():
    pytest.skip("the fixture cannot")

def test_fixture(needs):
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_xfail():
    assert 0
'''
# a conftest that takes the hooks of ours (not its fixtures)
CONFTEST = "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401\n"


def _pytest(folder: Path, strict: bool, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRAFFICGEN_REQUIRE_TOOLS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "250"  # the summary lines whole
    if strict:
        env["TRAFFICGEN_REQUIRE_TOOLS"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                           "--rootdir", str(folder), *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_skip_fails_in_ci(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    done = _pytest(tmp_path, True, "test_sample.py")
    out = done.stdout
    assert done.returncode == 1, out
    assert "1 failed, 1 passed, 1 xfailed, 2 errors" in out, out
    for name in ("test_skip", "test_marker", "test_fixture"):
        assert f"test_sample.py::{name} - test skipped, and TRAFFICGEN_REQUIRE_TOOLS is set" in out, out
    assert "no frobnicator" in out and "XFAIL test_sample.py::test_xfail" in out
    # off CI, a skip is a skip
    done = _pytest(tmp_path, False, "test_sample.py")
    assert done.returncode == 0 and "1 passed, 3 skipped, 1 xfailed" in done.stdout, done.stdout


def test_a_module_skipped_at_collection_fails_in_ci(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_mod.py").write_text('import pytest\npytest.importorskip("no_such_module_xyz")\n\n'
                                          'def test_never():\n    pass\n')
    done = _pytest(tmp_path, True)
    assert done.returncode != 0 and "module skipped, and TRAFFICGEN_REQUIRE_TOOLS is set" in done.stdout
    assert "no_such_module_xyz" in done.stdout
    done = _pytest(tmp_path, False)
    assert done.returncode == 5 and "1 skipped" in done.stdout, done.stdout  # 5: no test ran
