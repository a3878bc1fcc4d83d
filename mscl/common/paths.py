"""Where things go: generated artifacts (git-ignored) and reports (what a reader looks at)."""
from __future__ import annotations

import os
from pathlib import Path

from mscl.common.io import read_json

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


# --------------------------------------------------------------------------- the run layout
SHARED_METHOD = "cit"  # trains the stages every method shares (training.yaml: shared_stages)
MANIFEST = "manifest.json"  # written last: a stage is finished exactly when it exists


def runs_dir() -> Path:
    """Root of every stage folder: ``<artifacts>/runs``."""
    return artifacts_dir() / "runs"


def backbone_slug(backbone: str) -> str:
    """A folder name for a backbone name, id or path."""
    return backbone.strip("/").replace("/", "__")


def run_dir(profile: str, backbone: str, stream: str, method: str, stage: int, root: Path | None = None, *,
            seed: int) -> Path:
    """``<runs>/<profile>/<backbone>/seed<S>/<stream>/<method>/stage<N>`` (``S``: training seed)."""
    root = root or runs_dir()
    return root / profile / backbone_slug(backbone) / f"seed{seed}" / stream / method / f"stage{stage}"


def is_finished(folder: Path) -> bool:
    """Whether the stage folder holds its manifest (written last)."""
    return (folder / MANIFEST).is_file()


def finished_stage_dir(profile: str, backbone: str, stream: str, method: str, stage: int,
                       runs_root: Path | None = None, *, seed: int) -> Path:
    """The folder holding ``method``'s finished stage for training seed ``seed`` (CIT's for a stage
    every method shares)."""
    own = run_dir(profile, backbone, stream, method, stage, runs_root, seed=seed)
    if is_finished(own):
        return own
    shared = run_dir(profile, backbone, stream, SHARED_METHOD, stage, runs_root, seed=seed)
    if is_finished(shared) and stage <= read_json(shared / MANIFEST)["params"].get("shared_stages", 0):
        return shared
    raise FileNotFoundError(f"no finished stage at {own}: run `python -m mscl run --profile {profile} "
                            f"--stream {stream} --method {method} --stage {stage} --seed {seed}` first")
