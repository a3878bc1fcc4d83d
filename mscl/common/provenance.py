"""Which code produced a result: the source tree's content hash, and the git commit when there is one.

A stage's manifest records :func:`code_version`, so a finished stage trained by other code is told
apart from one trained by this checkout (``make reproduce`` says so when it reuses one, and
``python -m mscl.pipeline.verify`` lists them).
"""
from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # mscl/


def source_hash(package: Path = PACKAGE) -> str:
    """sha256 over every ``.py`` file of the package (relative path and bytes, in path order): equal
    exactly when the code is, whether or not it is a git checkout or committed."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """``{"source_hash", "commit", "dirty"}``: the package's content hash, the checkout's HEAD (None
    outside git) and whether ``mscl/`` differs from it. Computed once per process."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", str(PACKAGE)) if commit else None
    return {"source_hash": source_hash(), "commit": commit, "dirty": bool(status) if commit else None}


def describe(version: dict | None) -> str:
    """A short name for a recorded code version: ``commit 1a2b3c4d (dirty)``, or its source hash."""
    if not version:
        return "code that recorded no version"
    if version.get("commit"):
        return f"commit {version['commit'][:8]}" + (" with uncommitted changes" if version.get("dirty") else "")
    return f"source {version['source_hash'][:12]}"


def library_versions() -> dict:
    """The versions of the libraries a stage's numbers depend on."""
    import numpy as np
    import peft
    import torch
    import transformers
    import trl

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "trl": trl.__version__,
            "numpy": np.__version__}
