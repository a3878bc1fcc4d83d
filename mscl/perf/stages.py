"""Whole stages as subprocesses: two 1-thread jobs against one, stage wall time and peak memory."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mscl.common.paths import REPO_ROOT, artifacts_dir
from mscl.perf.compute import training_flops
from mscl.perf.machine import setup


def timed_pass(profile: str, records: int, backbone: str | None) -> float:
    """Seconds of one training pass of our loss over the bench records, in this process."""
    s = setup(profile, records, backbone)
    return training_flops(s, count=False)["train_pass_seconds"]


def job_parallelism(profile: str, records: int, backbone: str | None) -> dict:
    """Training work per second of two 1-thread processes running side by side over one process
    with every core (``os.cpu_count()`` threads), each doing the same training pass."""
    cores = os.cpu_count() or 1

    def launch(threads: int):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "mscl.perf", "--profile", profile, "--records", str(records),
                   "--timed-pass"] + (["--backbone", backbone] if backbone else [])
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)

    def seconds(proc) -> float:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the timed training pass failed (exit {proc.returncode})")
        return float(out.strip().splitlines()[-1])

    alone = seconds(launch(cores))
    pair = [launch(1), launch(1)]
    side_by_side = [seconds(p) for p in pair]
    return {"cores": cores, "one_job_seconds": alone, "two_1_thread_jobs_seconds": side_by_side,
            "parallel_jobs_throughput": 2 * alone / max(side_by_side)}




def scratch_artifacts(profile: str, params, workdir: Path) -> Path:
    """A scratch artifacts folder for stage runs of ``profile``: the cached backbones (linked), the
    benchmark data (copied) and the shared stages, copied when already trained, else trained here
    first (so no timed run pays for them)."""
    from mscl.benchmark.probe import ensure_benchmark
    from mscl.common.paths import finished_stage_dir, run_dir

    ensure_benchmark(profile, params.data_seed)
    scratch = workdir / "artifacts"
    scratch.mkdir(parents=True, exist_ok=True)
    real = artifacts_dir()
    if (real / "models").is_dir() and not (scratch / "models").exists():
        (scratch / "models").symlink_to((real / "models").resolve(), target_is_directory=True)
    if not (scratch / "data" / profile).exists():
        shutil.copytree(real / "data" / profile, scratch / "data" / profile)
    for stream_stage in range(1, params.shared_stages + 1):
        target = run_dir(profile, params.backbone, "domain_independent", "cit", stream_stage, scratch / "runs",
                         seed=params.seed)
        if target.exists():
            continue
        try:
            done = finished_stage_dir(profile, params.backbone, "domain_independent", "cit", stream_stage,
                                      seed=params.seed)
            shutil.copytree(done, target)
        except FileNotFoundError:
            run_stage_process(profile, "cit", stream_stage, scratch, params.backbone)
    return scratch


def run_stage_process(profile: str, method: str, stage: int, scratch: Path, backbone: str) -> dict:
    """``python -m mscl run`` of one stage in the ``scratch`` artifacts folder: its wall time, its
    own peak RSS (``wait4``) and its manifest's timings."""
    from mscl.common.io import read_json
    from mscl.common.params import load_params
    from mscl.common.paths import finished_stage_dir

    command = [sys.executable, "-m", "mscl", "run", "--profile", profile, "--stream", "domain_independent",
               "--method", method, "--stage", str(stage), "--backbone", backbone]
    env = {**os.environ, "MSCL_ARTIFACTS": str(scratch)}
    log = scratch / f"{method}-stage{stage}.log"
    tic = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - tic
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{log.read_text()[-3000:]}")
    seed = load_params(profile, "training").seed
    folder = finished_stage_dir(profile, backbone, "domain_independent", method, stage, scratch / "runs", seed=seed)
    manifest = read_json(folder / "manifest.json")  # CIT's for a shared stage
    return {"seconds": seconds, "peak_rss_gib": usage.ru_maxrss / 2 ** 20, "timings_s": manifest["timings_s"]}


def whole_stages(profile: str, stage: int, workdir: Path, backbone: str | None = None) -> dict:
    """A CIT and a PBL stage ``stage`` as the pipeline runs them (``python -m mscl run``: loading,
    the old model's answers, training, the new model's answers on every evaluation set), from the
    same shared stage 1; PBL first, then CIT."""
    from mscl.common.params import load_params

    params = load_params(profile, "training")
    if backbone:
        params = dataclasses.replace(params, backbone=backbone)
    if stage != params.shared_stages + 1:  # one stage each, from the shared ones (a later stage would time a chain)
        raise ValueError(f"--stage-number {stage}: the whole-stage comparison runs the first stage after the "
                         f"{params.shared_stages} shared one(s), stage {params.shared_stages + 1}")
    scratch = scratch_artifacts(profile, params, workdir)
    runs = {m: run_stage_process(profile, m, stage, scratch, params.backbone) for m in ("pbl", "cit")}
    return {"stage": stage, "cit_seconds": runs["cit"]["seconds"], "pbl_seconds": runs["pbl"]["seconds"],
            "cit_timings_s": runs["cit"]["timings_s"], "pbl_timings_s": runs["pbl"]["timings_s"],
            "whole_stage_ratio": runs["pbl"]["seconds"] / runs["cit"]["seconds"]}


def stage_peak_rss(profile: str, method: str, stage: int, workdir: Path, backbone: str | None = None) -> dict:
    """Run one stage as ``python -m mscl run`` in a scratch artifacts folder; its peak RSS (GiB)."""
    from mscl.common.params import load_params

    params = load_params(profile, "training")
    if backbone:
        params = dataclasses.replace(params, backbone=backbone)
    run = run_stage_process(profile, method, stage, scratch_artifacts(profile, params, workdir), params.backbone)
    return {"stage": f"{method} stage {stage}", "stage_seconds": run["seconds"], "peak_rss_gib": run["peak_rss_gib"]}


