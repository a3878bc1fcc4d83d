"""`ruff check` (configured in pyproject.toml) passes on the package and its tests."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from mscl.common.paths import REPO_ROOT


def test_ruff_check_passes():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "mscl", "tests"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"ruff check failed:\n{proc.stdout}{proc.stderr}"
