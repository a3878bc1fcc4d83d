"""A stage is what its manifest says: file hashes, cache identity, the code that trained it, and
the command that retrains it.

- The manifest records the sha256 of every file the stage wrote (:func:`file_hashes`); reusing a
  stage checks them, and its predecessors' (:func:`check_files`).
- A killed stage's caches (K samples, rewrites, ...) are kept for the rerun only when they were
  made under the same stage identity (:func:`keep_caches`); otherwise they are recomputed, and the
  run says so.
- Every error says how to recover: :func:`clean_command` names the ``python -m mscl clean`` call
  that removes the stage and everything that depends on it, under the artifacts root in use.
"""
from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from mscl.common.io import read_json, sha256_file, write_json
from mscl.common.paths import MANIFEST, runs_dir
from mscl.common.provenance import code_version, describe

CACHE_IDENTITY = ".cache_identity.json"  # the config hash the folder's caches were made under
# written after the manifest, or by other jobs, so never part of a stage's recorded files
UNRECORDED = ("predictions_*.jsonl", "rank[0-9]*", "trainer", ".*")


class StageIntegrityError(RuntimeError):
    """A finished stage's files are missing, changed or unreadable."""


def clean_command(profile: str, stream: str, method: str, stage: int, seed: int, backbone: str | None = None,
                  runs_root: Path | None = None) -> str:
    """The command that removes a stage and its dependants (:mod:`mscl.pipeline.clean`)."""
    words = ["python", "-m", "mscl", "clean", "--profile", profile, "--stream", stream, "--method", method,
             "--stage", str(stage), "--seed", str(seed)]
    if backbone:
        words += ["--backbone", backbone]
    if runs_root is not None and Path(runs_root) != runs_dir():
        words += ["--runs-root", str(runs_root)]
    return shlex.join(words)


def _recorded(folder: Path) -> list[Path]:
    skipped = {p for pattern in UNRECORDED for p in folder.glob(pattern)}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
                  and not any(s == p or s in p.parents for s in skipped))


def file_hashes(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file the stage wrote (adapter, predictions, caches, state)."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in _recorded(folder)}


def read_manifest(folder: Path, retrain: str) -> dict:
    """A finished stage's manifest; an unreadable one names itself and the retraining command."""
    try:
        return read_json(folder / MANIFEST)
    except FileNotFoundError as exc:
        raise StageIntegrityError(f"{folder / MANIFEST} is missing: the stage is not finished; retrain it "
                                  f"with `{retrain}` and run again") from exc
    except ValueError as exc:
        raise StageIntegrityError(f"{exc}; the stage's manifest is damaged: remove the stage and its dependants "
                                  f"with `{retrain}` and run again") from exc


def check_files(folder: Path, manifest: dict, retrain: str) -> None:
    """Every file the manifest recorded is there with its sha256 (manifests written before file
    hashes were recorded are taken as they are)."""
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        problem = ("is missing" if not path.is_file() else
                   "differs from the file the stage wrote" if sha256_file(path) != digest else None)
        if problem:
            raise StageIntegrityError(f"{path} {problem} (its manifest records sha256 {digest[:12]}); remove the "
                                      f"stage and its dependants with `{retrain}` and run again to retrain them")


def problems(folder: Path) -> list[str]:
    """What is wrong with a finished stage's folder, as sentences (empty when nothing): for verify."""
    try:
        check_files(folder, read_manifest(folder, "python -m mscl clean ..."), "python -m mscl clean ...")
    except StageIntegrityError as exc:
        return [str(exc)]
    return []


def code_note(manifest: dict) -> str:
    """Which code trained a stage, said against this checkout's."""
    recorded = manifest.get("code")
    if recorded and recorded.get("source_hash") == code_version()["source_hash"]:
        return f"trained by this code, {describe(recorded)}"
    return f"trained by other code: {describe(recorded)}"


def keep_caches(folder: Path, config_hash: str, say=print) -> None:
    """Make ``folder`` ready for a (re)started stage: partial files and sub-folders of a killed
    attempt go; its caches stay only if they were made under ``config_hash``."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / CACHE_IDENTITY
    made_under = read_json(marker).get("config_hash") if marker.is_file() else None
    stale = made_under is not None and made_under != config_hash
    caches = [c for c in folder.iterdir() if c.is_file() and not c.name.startswith(".")]
    if stale and caches:
        say(f"recomputing {', '.join(c.name for c in caches)}: made under other parameters "
            f"(config hash {made_under[:12]}, now {config_hash[:12]})")
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        elif ".tmp" in child.name or (stale and child in caches):
            child.unlink()
    write_json(marker, {"config_hash": config_hash})
