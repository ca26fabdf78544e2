"""The stubs match the runtime (mypy.stubtest) and a script written against
the documented API passes ``mypy --strict``.  Needs mypy (scripts/setup.sh
installs it in .venv; other venvs skip these two tests)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "typing")


def _mypy_available():
    try:
        import mypy  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _mypy_available(), reason="mypy is not installed")


def _run(args, tmp_path):
    return subprocess.run([sys.executable, "-m", *args], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=240)


@pytest.mark.node_timeout(280)
def test_stubs_match_the_runtime(tmp_path):
    r = _run(["mypy.stubtest", "redlease",
              "--mypy-config-file", os.path.join(HERE, "stubtest.ini"),
              "--allowlist", os.path.join(HERE, "stubtest_allowlist.txt")], tmp_path)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


@pytest.mark.node_timeout(280)
def test_documented_api_passes_mypy_strict(tmp_path):
    r = _run(["mypy", "--strict", "--no-incremental", os.path.join(HERE, "user_script.py")],
             tmp_path)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
