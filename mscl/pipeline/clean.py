"""``python -m mscl clean``: remove one stage and every stage that depends on it, under the artifacts
root in use (``$MSCL_ARTIFACTS`` or ``<repo>/artifacts``).

A stage's dependants are the same method's later stages of the stream (same backbone and seed); a
stage every method shares (CIT's first ``shared_stages``) is also the start of every other method's
later stages, so those go too. Nothing else is touched: other seeds, streams, profiles and the data
stay.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from mscl.common.io import read_json
from mscl.common.params import load_params
from mscl.common.paths import MANIFEST, SHARED_METHOD, run_dir


def _shared_stages(folder: Path, profile: str) -> int:
    """How many first stages are shared: from the stage's manifest, else the profile's params."""
    try:
        return int(read_json(folder / MANIFEST)["params"]["shared_stages"])
    except (OSError, ValueError, KeyError, TypeError):
        return load_params(profile, "training").shared_stages


def _stage_number(folder: Path) -> int:
    match = re.fullmatch(r"stage(\d+)", folder.name)
    return int(match.group(1)) if match else -1


def dependants(profile: str, backbone: str, stream: str, method: str, stage: int, seed: int,
               runs_root: Path | None = None) -> list[Path]:
    """The stage's folder and every existing folder that depends on it, in path order."""
    own = run_dir(profile, backbone, stream, method, stage, runs_root, seed=seed)
    chains = [own.parent]
    if method == SHARED_METHOD and stage <= _shared_stages(own, profile):
        chains = sorted(p for p in own.parents[1].iterdir() if p.is_dir()) if own.parents[1].is_dir() else []
    found = [f for chain in chains for f in (chain.iterdir() if chain.is_dir() else [])
             if _stage_number(f) > stage or (f == own)]
    return sorted(set(found) | ({own} if own.exists() else set()))


def remove_stage(profile: str, backbone: str, stream: str, method: str, stage: int, seed: int,
                 runs_root: Path | None = None, say=print) -> list[Path]:
    """Delete :func:`dependants`; returns what was removed."""
    removed = [f for f in dependants(profile, backbone, stream, method, stage, seed, runs_root) if f.exists()]
    for folder in removed:
        shutil.rmtree(folder) if folder.is_dir() and not folder.is_symlink() else folder.unlink()
        say(f"removed {folder}")
    if not removed:
        say(f"nothing to remove: {run_dir(profile, backbone, stream, method, stage, runs_root, seed=seed)} "
            "does not exist")
    return removed
