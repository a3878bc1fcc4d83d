"""`ruff check` and `lint-imports` (both configured in pyproject.toml) pass on the package and its tests."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mscl.common.paths import REPO_ROOT


def test_ruff_check_passes():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "mscl", "tests"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"ruff check failed:\n{proc.stdout}{proc.stderr}"


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=root, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(root)})


def test_every_import_goes_down_the_layers():
    """`lint-imports` keeps the contract of pyproject.toml ([tool.importlinter])."""
    proc = _lint_imports(REPO_ROOT)
    assert proc.returncode == 0, f"lint-imports failed:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("module, upward", [
    ("mscl/common/io.py", "from mscl.engine import models"),
    ("mscl/engine/training.py", "from mscl.core import losses"),
    ("mscl/core/metrics.py", "from mscl.methods import base"),
    ("mscl/methods/cit.py", "from mscl.pipeline import stages"),
    ("mscl/pipeline/verify.py", "from mscl.evaluation import tables"),
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    """The contract is not vacuous: one import reversed in a scratch copy makes `lint-imports` fail."""
    shutil.copytree(REPO_ROOT / "mscl", tmp_path / "mscl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{upward}  # noqa\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout
