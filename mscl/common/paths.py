"""Where things go: generated artifacts (git-ignored) and reports (what a reader looks at)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """Root of everything generated (models, data, runs): ``$MSCL_ARTIFACTS`` or ``<repo>/artifacts``."""
    return Path(os.environ.get("MSCL_ARTIFACTS", REPO_ROOT / "artifacts"))


def reports_dir(profile: str) -> Path:
    """Tables, figures and executed notebooks of a profile.

    ``cpu`` (the committed reference run) writes to ``reports/``; ``gpu`` to ``reports/gpu/``;
    ``smoke`` runs only check that everything executes, so they write under ``artifacts/`` and
    never overwrite a committed report.
    """
    if profile == "cpu":
        return REPO_ROOT / "reports"
    if profile == "smoke":
        return artifacts_dir() / "reports" / "smoke"
    return REPO_ROOT / "reports" / profile
