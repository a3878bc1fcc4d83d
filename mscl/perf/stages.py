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
    return {"seconds": seconds, "peak_rss_gib": usage.ru_maxrss / 2 ** 20, "timings_s": manifest["timings_s"],
            "phases_s": manifest.get("method_info", {}).get("phases_s", {})}


# the whole-stage comparison: ours first (cit+matched reads its finished stage), pbl before cit
WHOLE_STAGE_METHODS = ("ours", "cit+matched", "pbl", "cit")
# the other methods make reproduce trains, timed the same way after them (--other-methods): their
# stage cost against CIT's is what the run's schedule and its cost plan read
# (mscl.pipeline.reproduce.METHOD_COST)
OTHER_STAGE_METHODS = ("mocl", "flearning", "replay", "dpo", "osf")
# the phases of a stage, in the order they run (mscl.pipeline.stages.train_stage; the method's own from
# its manifest's method_info.phases_s)
STAGE_PHASES = ("load", "eval_old", "sample", "reference", "rewrite_bki", "rewrite_lce", "rewrite_pa", "mi",
                "indication", "gradient_steps", "other", "eval_new")


def phase_row(run: dict) -> dict[str, float]:
    """Seconds by phase of one stage run: the pipeline's timings with ``train`` split into the
    method's phases, ``other`` the rest of ``train`` (building examples, saving, merging), and
    ``process`` the subprocess's wall time beyond the manifest's ``total`` (imports, the backbone)."""
    timings, phases = run["timings_s"], run["phases_s"]
    row = {"load": timings.get("load", 0.0), "eval_old": timings.get("eval_old", 0.0)}
    row.update({name: phases.get(name, 0.0) for name in STAGE_PHASES[2:-2]})
    row["other"] = max(timings.get("train", 0.0) - sum(phases.values()), 0.0)
    row["eval_new"] = timings.get("eval_new", 0.0)
    row["stage"] = timings["total"]
    row["process"] = max(run["seconds"] - timings["total"], 0.0)
    row["wall"] = run["seconds"]
    return row


def whole_stages(profile: str, stage: int, workdir: Path, backbone: str | None = None,
                 others: tuple[str, ...] = ()) -> dict:
    """Ours, ``cit+matched``, PBL and CIT at stage ``stage`` as the pipeline runs them (``python -m
    mscl run``: loading, the old model's answers, the method's phases, the gradient steps, the new
    model's answers on every evaluation set), from the same shared stage 1, one after another; their
    phase table, ``ours_vs_matched_stage_ratio`` and ``whole_stage_ratio`` (PBL over CIT), and the
    peak memory of the Ours stage. ``others``: more methods timed the same way after them;
    ``cost_vs_cit`` gives every method's stage over CIT's."""
    from mscl.common.params import load_params

    params = load_params(profile, "training")
    if backbone:
        params = dataclasses.replace(params, backbone=backbone)
    if stage != params.shared_stages + 1:  # one stage each, from the shared ones (a later stage would time a chain)
        raise ValueError(f"--stage-number {stage}: the whole-stage comparison runs the first stage after the "
                         f"{params.shared_stages} shared one(s), stage {params.shared_stages + 1}")
    scratch = scratch_artifacts(profile, params, workdir)
    runs = {m: run_stage_process(profile, m, stage, scratch, params.backbone) for m in WHOLE_STAGE_METHODS + others}
    return {"stage": stage, "epochs": params.train.epochs,
            "cost_vs_cit": {m: run["seconds"] / runs["cit"]["seconds"] for m, run in runs.items()},
            "phases_s": {m: phase_row(run) for m, run in runs.items()},
            **{f"{m}_seconds": run["seconds"] for m, run in runs.items()},
            "ours_peak_rss_gib": runs["ours"]["peak_rss_gib"],
            "ours_vs_matched_stage_ratio": runs["ours"]["seconds"] / runs["cit+matched"]["seconds"],
            "whole_stage_ratio": runs["pbl"]["seconds"] / runs["cit"]["seconds"]}


def phase_table(phases_s: dict[str, dict[str, float]]) -> str:
    """The phase table as Markdown: one row per phase, one column per method, seconds."""
    methods = list(phases_s)
    names = [*STAGE_PHASES, "stage", "process", "wall"]
    lines = ["| phase (s) | " + " | ".join(f"`{m}`" for m in methods) + " |",
             "|---|" + "---:|" * len(methods)]
    for name in names:
        label = f"**{name}**" if name in ("stage", "wall") else name
        lines.append(f"| {label} | " + " | ".join(f"{phases_s[m].get(name, 0.0):.1f}" for m in methods) + " |")
    return "\n".join(lines)


def stage_peak_rss(profile: str, method: str, stage: int, workdir: Path, backbone: str | None = None) -> dict:
    """Run one stage as ``python -m mscl run`` in a scratch artifacts folder; its peak RSS (GiB)."""
    from mscl.common.params import load_params

    params = load_params(profile, "training")
    if backbone:
        params = dataclasses.replace(params, backbone=backbone)
    run = run_stage_process(profile, method, stage, scratch_artifacts(profile, params, workdir), params.backbone)
    return {"stage": f"{method} stage {stage}", "stage_seconds": run["seconds"], "peak_rss_gib": run["peak_rss_gib"]}


