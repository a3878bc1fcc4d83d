"""Kill safety and determinism of the stage loop (smoke profile, tiny random backbone).

A run killed with SIGKILL in the middle of a stage and started again must finish with the same
metrics as an uninterrupted run, must not retrain a finished stage, and must never leave a file
under its final name that a later step would read as complete.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mscl.common.paths import REPO_ROOT

RUN = (
    "import sys; from mscl.pipeline.stages import run_stage; "
    "m = run_stage('smoke', 'domain_independent', sys.argv[1], int(sys.argv[2]), verbose=False); "
    "print('DONE', m['config_hash'])"
)


def _env(artifacts: Path) -> dict:
    artifacts.mkdir(parents=True, exist_ok=True)
    models = artifacts / "models"
    (REPO_ROOT / "artifacts" / "models").mkdir(parents=True, exist_ok=True)  # a fresh clone has none yet
    if not models.exists():  # share the converted backbones; everything else is private to the test
        models.symlink_to(REPO_ROOT / "artifacts" / "models", target_is_directory=True)
    return {**os.environ, "MSCL_ARTIFACTS": str(artifacts), "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false"}


def _run(artifacts: Path, method: str, stage: int) -> None:
    subprocess.run([sys.executable, "-c", RUN, method, str(stage)], env=_env(artifacts), check=True,
                   capture_output=True, cwd=REPO_ROOT)


def _stage_dir(artifacts: Path, method: str, stage: int) -> Path:
    """The folder of a finished stage: CIT's for the stage every method shares (smoke: stage 1)."""
    from mscl.common.paths import finished_stage_dir

    return finished_stage_dir("smoke", "tiny-random", "domain_independent", method, stage, artifacts / "runs", seed=0)


def _metrics(artifacts: Path, method: str, stage: int) -> dict:
    return json.loads((_stage_dir(artifacts, method, stage) / "manifest.json").read_text())["metrics"]


@pytest.mark.trains
@pytest.mark.parametrize("method", ["cit", "pbl"])
def test_sigkill_mid_stage_then_resume_gives_the_same_results(tmp_path, method):
    reference = tmp_path / "reference"
    _run(reference, method, 2)

    killed = tmp_path / "killed"
    _run(killed, method, 1)
    stage1 = _stage_dir(killed, method, 1) / "manifest.json"
    stamp = stage1.stat().st_mtime_ns
    proc = subprocess.Popen([sys.executable, "-c", RUN, method, "2"], env=_env(killed), cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage2 = killed / "runs" / "smoke" / "tiny-random" / "seed0" / "domain_independent" / method / "stage2"
    deadline = time.monotonic() + 120
    while not (stage2 / "trainer").exists():  # training has begun (PBL: its samples are cached by now)
        assert proc.poll() is None and time.monotonic() < deadline, "stage 2 ended or stalled before training"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (stage2 / "manifest.json").exists(), "the stage was not interrupted: kill earlier"

    _run(killed, method, 2)
    stale = [p.name for p in stage2.rglob("*.tmp*")]
    assert not stale, f"temporary files of the killed attempt were left behind: {stale}"
    assert stage1.stat().st_mtime_ns == stamp, "a finished stage was trained again"
    assert _metrics(killed, method, 2) == _metrics(reference, method, 2)
    assert _metrics(killed, method, 1) == _metrics(reference, method, 1)
