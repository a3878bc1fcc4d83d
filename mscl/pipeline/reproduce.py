"""``python -m mscl.pipeline.reproduce --profile cpu``: run the numbered notebooks in order with papermill.

This is what ``make reproduce`` (and ``make smoke``) call. Each notebook runs with its profile's
parameter files; executed copies go to ``<reports>/notebooks/`` (see :func:`mscl.common.paths.reports_dir`).
Notebooks that train reuse every stage already finished under ``artifacts/runs/``, so a rerun after
a kill picks up where it stopped. Notebook 03 (one stage of one method) runs once per stage of the
domain-independent stream for CIT and PBL (PBL from stage 2: stage 1 is CIT's, shared).

Before the notebooks, every stage they will ask for is trained (:func:`stage_jobs`): first the shared
CIT stages, then each method's chain of stages as one ``python -m mscl run`` job, ``--workers`` jobs
at a time with the cores split between them (longest first): on 2 cores two 1-thread jobs side by
side do more training work per second than one 2-thread job (``make bench`` measures it:
``parallel_jobs_throughput`` in ``reports/benchmarks.md``). The notebooks then only read finished stages, so what
they show is exactly what ``python -m mscl run`` trained; each job's log is in
``artifacts/logs/reproduce/``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mscl.common.paths import REPO_ROOT, artifacts_dir, reports_dir
from mscl.pipeline.schedule import Task, run_tasks

if TYPE_CHECKING:
    import pandas as pd

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
STAGE_NOTEBOOK = "03_stage_training"
STAGE_METHODS = ("cit", "pbl")
STAGE_STREAM = "domain_independent"


def planned_runs(profile: str, backbone: str | None) -> list[tuple[str, str, dict]]:
    """(notebook name, executed-copy name, parameters) in the order they run."""
    from mscl import benchmark
    from mscl.common.params import load_params
    from mscl.common.paths import SHARED_METHOD

    common = {"profile": profile, **({"backbone": backbone} if backbone else {})}
    runs = []
    for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]*_*.ipynb")):
        name = path.stem
        if name == STAGE_NOTEBOOK:
            training = load_params(profile, "training")
            stages = benchmark.STREAM_STAGES[STAGE_STREAM]
            for method in STAGE_METHODS:
                # a shared stage is CIT's: shown once, under cit
                for stage in stages if method == SHARED_METHOD else stages[training.shared_stages:]:
                    runs.append((name, f"{name}_{STAGE_STREAM}_{method}_stage{stage}",
                                 {**common, "stream": STAGE_STREAM, "method": method, "stage": stage}))
        else:
            runs.append((name, name, dict(common)))
    for path in sorted((NOTEBOOKS_DIR / "walkthrough").glob("*.ipynb")):  # teaching notebooks, last
        runs.append((f"walkthrough/{path.stem}", f"walkthrough_{path.stem}", dict(common)))
    return runs


# relative cost of one stage per method on the cpu profile, to start the longest chains first and to
# estimate the run (--plan): a whole stage 2 over CIT's, measured side by side by make bench
# (reports/benchmarks.md, "Every method's whole stage over CIT's"), rounded; Ours's since its
# gradient norms are logged every 20 steps and its pairs tokenized without re-reading the vocabulary:
# 231 s against cit+matched's 120 s in one side-by-side run (mscl.perf.stages.whole_stages' stages)
METHOD_COST = {"cit": 1.0, "replay": 1.15, "dpo": 1.35, "cit+matched": 1.5, "flearning": 1.6, "osf": 1.7,
               "mocl": 1.85, "pbl": 1.9, "ours": 2.8}
# seconds of one CIT stage of the full base set as make reproduce runs it, one thread beside another
# job: make bench's CIT stage (82 s on both cores) times 2 over its parallel_jobs_throughput (1.35).
# The unit of the costs above, to print the plan's estimate in worker-minutes (--plan)
CIT_STAGE_SECONDS = 121.0
# the share of a method's stage that its gradient steps take (the same bench's phase table,
# gradient_steps over wall, rounded): the part of its cost that grows with the epochs; sampling,
# rewriting, selection, loading and evaluation stay what they are at any budget
GRADIENT_SHARE = {"cit": 0.65, "replay": 0.7, "dpo": 0.55, "cit+matched": 0.8, "flearning": 0.4, "osf": 0.7,
                  "mocl": 0.0, "pbl": 0.55, "ours": 0.5}
EVALUATION_COST = 0.3   # asking a finished stage's questions again, against training one CIT stage
TRAINED_STREAMS = ("domain_independent", "cross_domain", "real_revisions")   # the streams stage jobs train


@dataclass(frozen=True)
class StageJob:
    """Train ``method`` on ``stream`` up to ``stage`` (earlier stages first) on ``backbone`` with
    training seed ``seed``."""
    backbone: str
    stream: str
    method: str
    stage: int
    seed: int = 0
    sweep_setting: str | None = None   # a setting of the pilot's budget sweep (mscl/pipeline/pilot.py) instead
    sweep_cost: float = 0.0            # its relative cost (epochs x stages x its share of the base set)
    choice: str | None = None          # "<study>/<setting>" of mscl/pipeline/choices.py instead (every seed)
    budget: str | None = None          # a budget of the budget axis (mscl/pipeline/budgets.py) instead (every seed)
    mode: str | None = None            # instead: ask the finished stage's questions under this evaluation mode

    @property
    def name(self) -> str:
        if self.sweep_setting:
            return f"{self.backbone.replace('/', '__')}-sweep-{self.sweep_setting}"
        if self.choice:
            return f"{self.backbone.replace('/', '__')}-choice-{self.choice.replace('/', '-')}"
        if self.budget:
            return f"{self.backbone.replace('/', '__')}-budget-{self.budget}-{self.method}"
        if self.mode:
            return (f"{self.backbone.replace('/', '__')}-seed{self.seed}-{self.stream}-{self.method}-stage{self.stage}"
                    f"-eval-{self.mode}")
        return f"{self.backbone.replace('/', '__')}-seed{self.seed}-{self.stream}-{self.method}-stage{self.stage}"

    def cost(self, first_own_stage: int) -> float:
        if self.sweep_setting or self.choice or self.budget:
            return self.sweep_cost
        per_stage = METHOD_COST.get(self.method, 3.0 if "+ca" in self.method else 2.2)
        return per_stage * max(1, self.stage - first_own_stage + 1) * (0.7 if self.stream == "cross_domain" else 1.0)

    def command(self, profile: str) -> list[str]:
        if self.sweep_setting:
            return [sys.executable, "-m", "mscl", "sweep", "--profile", profile, "--setting", self.sweep_setting,
                    "--backbone", self.backbone]
        if self.mode:
            return [sys.executable, "-m", "mscl", "evaluate", "--profile", profile, "--stream", self.stream,
                    "--method", self.method, "--stage", str(self.stage), "--mode", self.mode,
                    "--seed", str(self.seed), "--backbone", self.backbone]
        if self.budget:
            return [sys.executable, "-m", "mscl", "budget", "--profile", profile, "--budget", self.budget,
                    "--method", self.method, "--backbone", self.backbone]
        if self.choice:
            study, setting = self.choice.split("/", 1)
            return [sys.executable, "-m", "mscl", "choose", "--profile", profile, "--study", study,
                    "--setting", setting, "--backbone", self.backbone]
        return [sys.executable, "-m", "mscl", "run", "--profile", profile, "--stream", self.stream,
                "--method", self.method, "--stage", str(self.stage), "--backbone", self.backbone,
                "--seed", str(self.seed)]


def _wanted_chains(profile: str, backbone: str | None, training,
                   stages: dict[str, list[int]]) -> dict[tuple[str, str, str, int], int]:
    """(backbone, stream, method, seed) -> the last stage any notebook of ``profile`` reads of that chain."""
    from mscl.common.params import load_params

    default = backbone or training.backbone
    wanted: dict[tuple[str, str, str, int], int] = {}

    def want(backbone_name: str, stream: str, method: str, stage: int | None = None,
             seeds: list[int] | None = None) -> None:
        for seed in training.seeds if seeds is None else seeds:
            key = (backbone_name, stream, method, seed)
            wanted[key] = max(wanted.get(key, 0), stage or stages[stream][-1])

    pilot = load_params(profile, "02_pilot")
    want(default, pilot.stream, pilot.method)
    for method in STAGE_METHODS:  # notebook 03 shows one training seed, the first
        want(default, STAGE_STREAM, method, seeds=training.seeds[:1])
    main = load_params(profile, "04_domain_independent")
    for backbone_name in ([backbone] if backbone else main.backbones):
        for method in main.methods:
            want(backbone_name, main.stream, method)
    for name in ("05_cross_domain", "05b_real_revisions", "07_retention"):
        notebook_params = load_params(profile, name)
        for method in notebook_params.methods:
            want(default, notebook_params.stream, method)
    ablations = load_params(profile, "06_ablations")
    for methods in ablations.tables.values():
        for method in methods:
            want(default, ablations.stream, method, ablations.stage, ablations.seeds)
    for choice in ablations.choices.values():  # the profile's own setting is the main run's chain
        want(default, ablations.stream, choice.method, choice.stage)
    return wanted


def _chain_jobs(wanted: dict[tuple[str, str, str, int], int], training,
                stages: dict[str, list[int]]) -> tuple[list[StageJob], list[StageJob]]:
    """Each wanted chain as its shared CIT stages' job and, past them, the method's own job."""
    from mscl.common.paths import SHARED_METHOD

    shared, own = [], []
    for (backbone_name, stream, method, seed), stage in sorted(wanted.items(), key=lambda kv: kv[0][3]):
        n_shared = min(training.shared_stages, len(stages[stream]))
        if n_shared:
            shared.append(StageJob(backbone_name, stream, SHARED_METHOD, stages[stream][n_shared - 1], seed))
        if stage > (stages[stream][n_shared - 1] if n_shared else 0):
            own.append(StageJob(backbone_name, stream, method, stage, seed))
    return shared, own


def _sweep_jobs(profile: str, backbone: str, training, stages: dict[str, list[int]]) -> list[StageJob]:
    """The pilot's budget sweep: one job per setting, CIT on a reduced stream (its cost relative to a
    CIT stage of the full base set trained with training.yaml's epochs)."""
    from mscl.common.params import load_params
    from mscl.pipeline import pilot as budget_sweep

    pilot = load_params(profile, "02_pilot")
    share = pilot.sweep.facts / load_params(profile, "01_data_build").sizes.stage1_facts
    swept = stages[pilot.stream][:pilot.sweep.stages] if pilot.sweep.stages else stages[pilot.stream]
    return [StageJob(backbone, pilot.stream, pilot.method, swept[-1], training.seeds[0],
                     sweep_setting=setting.name,
                     sweep_cost=len(swept) * share * budget_stage_cost("cit", setting.epochs / training.train.epochs))
            for setting in budget_sweep.settings(pilot)]


def _choice_jobs(profile: str, backbone: str, training) -> list[StageJob]:
    """The measured choices' other settings: one job per setting, every seed (mscl/pipeline/choices.py)."""
    from mscl.common.params import load_params
    from mscl.pipeline import choices

    ablations = load_params(profile, "06_ablations")
    jobs = []
    for study, choice in ablations.choices.items():
        for setting in choice.settings:
            if not choices.is_profile_setting(profile, study, setting):
                jobs.append(StageJob(backbone, ablations.stream, choice.method, choice.stage, training.seeds[0],
                                     choice=f"{study}/{setting}",
                                     sweep_cost=len(training.seeds) * (choice.stage - training.shared_stages)
                                     * METHOD_COST.get(choice.method, 2.2)))
    return jobs


def _budget_jobs(profile: str, backbone: str, training) -> list[StageJob]:
    """The budget axis: one job per (budget, method), every seed (mscl/pipeline/budgets.py); its cost
    relative to a CIT stage of the full base set at training.yaml's epochs."""
    from mscl.common.params import load_params, params_path
    from mscl.pipeline import budgets

    if not params_path(profile, "04b_budget_axis").is_file():
        return []
    axis, sizes = budgets.axis(profile), load_params(profile, "01_data_build").sizes
    share = (axis.facts + sizes.validation_facts) / (sizes.stage1_facts + sizes.validation_facts)
    shared = min(training.shared_stages, axis.stages)
    jobs = []
    for budget in axis.budgets:
        scale = budgets.budget_params(profile, budget, training.seeds[0]).train.epochs / training.train.epochs
        for method in axis.methods:
            # its own stages, and its part of the budget's shared CIT stage(s) (whichever job trains them)
            stages = ((axis.stages - shared) * budget_stage_cost(method, scale)
                      + shared * budget_stage_cost("cit", scale) / len(axis.methods))
            jobs.append(StageJob(backbone, axis.stream, method, axis.stages, training.seeds[0], budget=budget,
                                 sweep_cost=len(training.seeds) * share * stages))
    return jobs


def budget_stage_cost(method: str, scale: float) -> float:
    """A stage of ``method`` at ``scale`` times training.yaml's epochs, against a CIT stage at them: its
    gradient steps (GRADIENT_SHARE) scale with the epochs, the rest of the stage does not."""
    gradient = GRADIENT_SHARE.get(method, 0.5)
    return METHOD_COST.get(method, 2.2) * (1 - gradient + gradient * scale)


def stage_jobs(profile: str, backbone: str | None) -> tuple[list[StageJob], list[StageJob]]:
    """Every stage the notebooks of ``profile`` train, as (shared CIT jobs, per-method jobs).

    Read from the notebooks' params files, so a method added to a table is trained here too; a
    method's job runs its whole chain up to the last stage any notebook needs.
    """
    from mscl.common.params import load_params

    training = load_params(profile, "training")
    default = backbone or training.backbone
    stages = benchmark_stages()
    shared, own = _chain_jobs(_wanted_chains(profile, backbone, training, stages), training, stages)
    own += (_sweep_jobs(profile, default, training, stages) + _choice_jobs(profile, default, training)
            + _budget_jobs(profile, default, training))
    own.sort(key=lambda j: -j.cost(first_own_stages(training)[j.stream]))  # the longest first
    return list(dict.fromkeys(shared)), own


def first_own_stages(training) -> dict[str, int]:
    """Each trained stream's first stage after the shared ones (its last when every stage is shared)."""
    return {stream: (s[training.shared_stages] if training.shared_stages < len(s) else s[-1])
            for stream, s in benchmark_stages().items()}


class _Launched:
    """A running ``python -m mscl run`` job whose log closes when it ends."""

    def __init__(self, job: StageJob, profile: str, log_dir: Path, env: dict):
        self.job, self.log_path = job, log_dir / f"{job.name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(job.command(profile), stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     cwd=REPO_ROOT)

    def poll(self) -> int | None:
        status = self.proc.poll()
        if status is not None and not self.log.closed:
            self.log.close()
        return status


def job_tasks(shared: list[StageJob], own: list[StageJob], evaluations: list[StageJob], training) -> list[Task]:
    """The jobs as :class:`mscl.pipeline.schedule.Task`s with what each waits for: a method's chain for
    its shared CIT stage, a method that reads another's stages (``cit+matched``) for that method's
    job on the same stream, seed (and budget), an evaluation for the chain it asks, and the choice
    and budget jobs for every shared stage; the sweep's for nothing."""
    from mscl.methods import METHODS

    first_own = first_own_stages(training)
    shared_of = {(j.backbone, j.stream, j.seed): j for j in shared}
    chain_of = {(j.backbone, j.stream, j.method, j.seed, j.budget): j for j in own if not (j.sweep_setting or j.choice)}
    tasks = [Task(j, METHOD_COST.get(j.method, 1.0), label=f"seed {j.seed} {j.stream} shared stage {j.stage}")
             for j in shared]
    for job in own:
        if job.sweep_setting:  # its own reduced stream and runs: it waits for nothing (and runs first)
            after = ()
        elif job.choice or job.budget:
            after = tuple(shared)
        else:
            after = tuple(x for x in [shared_of.get((job.backbone, job.stream, job.seed))] if x)
        reference = getattr(METHODS.get(job.method), "reference", None)
        if reference and not (job.sweep_setting or job.choice):
            after += tuple(x for x in [chain_of.get((job.backbone, job.stream, reference, job.seed, job.budget))] if x)
        tasks.append(Task(job, job.cost(first_own[job.stream]), after, label=_describe(job)))
    for job in evaluations:
        chain = chain_of.get((job.backbone, job.stream, job.method, job.seed, None))
        tasks.append(Task(job, EVALUATION_COST, (chain,) if chain else (), label=_describe(job)))
    return tasks


def _describe(job: StageJob) -> str:
    if job.sweep_setting:
        return f"sweep {job.sweep_setting}"
    if job.choice:
        return f"choice {job.choice}"
    if job.budget:
        return f"budget {job.budget} {job.method}"
    if job.mode:
        return f"seed {job.seed} {job.stream} {job.method} stage {job.stage}, {job.mode} evaluation"
    return f"seed {job.seed} {job.stream} {job.method} to stage {job.stage}"


def benchmark_stages() -> dict[str, list[int]]:
    """The stages of every trained stream (what the jobs are planned on before any data exists)."""
    from mscl import benchmark

    return {s: benchmark.STREAM_STAGES[s] for s in TRAINED_STREAMS}


def run_jobs(tasks: list[Task], profile: str, workers: int, log_dir: Path) -> list[dict]:
    """Run the jobs as ``python -m mscl run`` subprocesses, ``workers`` at a time with ``cores //
    workers`` threads each, critical path first (:func:`mscl.pipeline.schedule.run_tasks`), under one
    progress bar with the time left; return one timing row per job. A failed job stops new starts and
    raises with its log's path and last lines (finished stages stay reusable)."""
    if not tasks:
        return []
    log_dir.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    rows = run_tasks(tasks, lambda task: _Launched(task.key, profile, log_dir, env), workers, desc="make reproduce")
    failed = [row for row in rows if row["status"] != 0]
    if failed:
        path = log_dir / f"{failed[0]['task'].name}.log"
        tail = "".join(path.read_text().splitlines(keepends=True)[-20:])
        raise RuntimeError(f"stage job {failed[0]['task'].name} failed; its log is {path}:\n{tail}")
    return [{"phase": "stages", "job": row["label"], "seconds": row["seconds"], "threads": threads} for row in rows]


def plan_table(profile: str, backbone: str | None) -> "pd.DataFrame":
    """What ``make reproduce`` would run, by part: jobs, estimated cost (one CIT stage = 1) and
    estimated worker-minutes (:data:`CIT_STAGE_SECONDS` a unit). An estimate from the cost table
    above; the manifests give what a run really took (:func:`stage_costs`)."""
    import pandas as pd

    from mscl.common.params import load_params

    shared, own = stage_jobs(profile, backbone)
    tasks = job_tasks(shared, own, evaluation_jobs(profile, backbone), load_params(profile, "training"))

    def part(job: StageJob) -> str:
        if job.sweep_setting:
            return "budget sweep (02)"
        if job.choice:
            return f"choice {job.choice.split('/')[0]} (06)"
        if job.budget:
            return "budget axis (04b)"
        if job.mode:
            return "evaluation modes (08)"
        return f"{job.stream} stages" if job.method != "cit" or job not in shared else "shared stages"

    frame = pd.DataFrame([{"part": part(t.key), "cost": t.cost} for t in tasks])
    table = frame.groupby("part", sort=False).agg(jobs=("cost", "size"), cost=("cost", "sum")).reset_index()
    table["worker_min"] = table["cost"] * CIT_STAGE_SECONDS / 60
    total = pd.DataFrame([{"part": "total", "jobs": table["jobs"].sum(), "cost": table["cost"].sum(),
                           "worker_min": table["worker_min"].sum()}])
    return pd.concat([table.sort_values("cost", ascending=False), total], ignore_index=True)


def train_stages(profile: str, backbone: str | None, workers: int) -> list[dict]:
    """Train every stage the notebooks need, and ask the main table's last stages again under the
    other evaluation mode, as one scheduled run (:func:`job_tasks`); returns one timing row per job."""
    from mscl.benchmark.probe import ensure_benchmark
    from mscl.common.params import load_params

    ensure_benchmark(profile, load_params(profile, "training").data_seed)  # once, before jobs that read it
    shared, own = stage_jobs(profile, backbone)
    evaluations = evaluation_jobs(profile, backbone)
    tasks = job_tasks(shared, own, evaluations, load_params(profile, "training"))
    print(f"{len(shared)} shared-stage job(s), {len(own)} method job(s) and {len(evaluations)} evaluation job(s) "
          f"on {workers} worker(s), critical path first; estimated cost {sum(t.cost for t in tasks):.0f} "
          "(one CIT stage = 1)", flush=True)
    # the budget sweep first: the rule it feeds sets the budget everything else trains with
    sweep = [t for t in tasks if t.key.sweep_setting]
    log_dir = artifacts_dir() / "logs" / "reproduce"
    rows = run_jobs(sweep, profile, workers, log_dir)
    if sweep:
        from mscl.pipeline import pilot

        pick = pilot.check_training_regime(profile, backbone)
        print(f"the budget sweep's rule picks {pick.name}; training.yaml trains with it" if pick else
              "no setting of the budget sweep reaches the rule's threshold; training.yaml keeps its budget",
              flush=True)
    return rows + run_jobs([t for t in tasks if not t.key.sweep_setting], profile, workers, log_dir)


def evaluation_jobs(profile: str, backbone: str | None) -> list[StageJob]:
    """The report's side table asks every main-table method's last stage again under the other
    evaluation mode (:func:`mscl.evaluation.tables.mode_predictions`): one job per method and seed, after training."""
    from mscl import benchmark
    from mscl.common.params import EVAL_MODES, load_params

    training = load_params(profile, "training")
    main = load_params(profile, "04_domain_independent")
    last = benchmark.STREAM_STAGES[main.stream][-1]
    return [StageJob(backbone or training.backbone, main.stream, method, last, seed, mode=mode)
            for mode in EVAL_MODES if mode != training.eval.mode for method in main.methods for seed in training.seeds]


def stage_costs(profile: str, backbone: str | None = None) -> "pd.DataFrame":
    """What costs what: the wall time of every finished stage of ``profile`` (each stage's manifest,
    ``timings_s``), summed per stream and method, with the sweep, the budget axis and each measured
    choice as one row. A stage linked into several runs (the shared CIT stage 1 a choice or budget
    reuses) counts once, where it was trained. Stages trained by ``make reproduce`` ran one thread each
    beside another job, so ``total_min / workers`` is the wall time their training takes on that many
    workers. Not counted: the evaluation-mode re-asks of notebook 08 (no manifest records their time;
    ``tables/00_reproduce_timings`` has their jobs' wall time when they ran)."""
    import pandas as pd

    from mscl.common.io import read_json
    from mscl.common.params import load_params

    slug = (backbone or load_params(profile, "training").backbone).replace("/", "__")
    rows, seen = [], set()
    roots = [(artifacts_dir() / "runs" / profile / slug, None),
             (artifacts_dir() / "sweep" / profile, "budget sweep (02)"),
             (artifacts_dir() / "budgets" / profile, "budget axis (04b)")]
    roots += [(study, f"choice: {study.name}") for study in sorted((artifacts_dir() / "choices" / profile).glob("*"))
              if study.is_dir()]
    for root, label in roots:
        for path in sorted(root.glob("**/stage*/manifest.json")):
            if path.resolve() in seen:  # a linked stage (the shared one): counted where it was trained
                continue
            seen.add(path.resolve())
            m = read_json(path)
            rows.append({"stream": m["stream"], "method": label or m["method"], "seed": m["run_seed"],
                         "stage": m["stage"], "seconds": m["timings_s"]["total"],
                         **{f"{k}_s": v for k, v in m["timings_s"].items() if k != "total"}})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    phases = [c for c in frame.columns if c.endswith("_s")]
    table = (frame.groupby(["stream", "method"], sort=False)
             .agg(stages=("stage", "size"), seeds=("seed", "nunique"), total_min=("seconds", "sum"),
                  per_stage_s=("seconds", "mean"), **{c: (c, "sum") for c in phases}).reset_index())
    table["total_min"] /= 60
    for c in phases:
        table[c.replace("_s", "_min")] = table.pop(c) / 60
    return table.sort_values("total_min", ascending=False, ignore_index=True)


def say_other_code(profile: str) -> None:
    """Print the finished stages that code other than this checkout's trained: they are reused as
    they are (their config hash matches), and the report lists which code trained what."""
    from mscl.pipeline.verify import other_code

    found = other_code(profile)
    if found:
        print(f"{len(found)} finished stage(s) of profile {profile} were trained by other code and are reused:",
              flush=True)
        for stage, note in list(found.items())[:10]:
            print(f"  {stage}: {note}", flush=True)
        if len(found) > 10:
            print(f"  ... and {len(found) - 10} more (python -m mscl.pipeline.verify --profile {profile})", flush=True)


def write_timings(profile: str, rows: list[dict], total_s: float) -> Path:
    """``tables/00_reproduce_timings.{md,csv}``: the wall time of every job and notebook of this run
    so far (a job's stages already finished before the run count as the time to find them); written
    after the training phase, for the report, and again at the end."""
    import pandas as pd

    from mscl.common.outputs import save_table

    table = pd.DataFrame(rows + [{"phase": "total", "job": "make reproduce (after setup)", "seconds": total_s}])
    table["minutes"] = table["seconds"] / 60
    return save_table(table, "00_reproduce_timings", profile, floatfmt=".1f")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--backbone", default=None, help="override the profile's backbone (a name, HF id or path)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these notebooks (e.g. 00 01)")
    parser.add_argument("--workers", type=int, default=None,
                        help="stage jobs at a time (default: 2 on a CPU with 2+ cores, 1 with a GPU)")
    parser.add_argument("--plan", action="store_true",
                        help="print the jobs the run would train and their estimated cost, then stop")
    args = parser.parse_args(argv)
    if args.plan:
        print(plan_table(args.profile, args.backbone).to_string(index=False, float_format="%.1f"))
        return 0

    from mscl.pipeline.stages import check_devices

    check_devices(args.profile)  # a gpu profile without a GPU stops here, within seconds
    import papermill as pm

    out_dir = reports_dir(args.profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = planned_runs(args.profile, args.backbone)
    if args.only:
        runs = [r for r in runs if any(r[0].startswith(prefix) for prefix in args.only)]
    start = time.perf_counter()
    timings: list[dict] = []
    say_other_code(args.profile)
    if not args.only:
        import torch

        workers = args.workers or (1 if torch.cuda.is_available() else min(2, os.cpu_count() or 1))
        # the data and the backbone cache first (notebooks 00 and 01 would make them anyway)
        from mscl.common.params import load_params
        from mscl.engine.models import load_backbone

        load_backbone(args.backbone or load_params(args.profile, "training").backbone)
        from mscl.pipeline.pilot import RegimeError

        try:
            timings += train_stages(args.profile, args.backbone, workers)
        except RegimeError as error:
            print(f"make reproduce stopped before training the stages: {error}", file=sys.stderr)
            return 2
        write_timings(args.profile, timings, time.perf_counter() - start)  # the report (08) shows it
        print(f"stages trained in {time.perf_counter() - start:.0f}s; now the notebooks", flush=True)
    for i, (name, out_name, parameters) in enumerate(runs, 1):
        tic = time.perf_counter()
        print(f"[{i}/{len(runs)}] {name} {parameters}", flush=True)
        pm.execute_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(out_dir / f"{out_name}.ipynb"),
                            parameters=parameters, cwd=str(NOTEBOOKS_DIR), kernel_name="python3",
                            progress_bar=False, log_output=False)
        print(f"[{i}/{len(runs)}] {name} done in {time.perf_counter() - tic:.0f}s", flush=True)
        timings.append({"phase": "notebooks", "job": out_name, "seconds": time.perf_counter() - tic})
    if not args.only:
        write_timings(args.profile, timings, time.perf_counter() - start)
    print(f"reproduce ({args.profile}): {len(runs)} notebook runs in {time.perf_counter() - start:.0f}s; "
          f"executed copies in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
