"""The critical-path scheduler of make reproduce (mscl/pipeline/schedule.py) and the jobs it is given."""
from __future__ import annotations

import pytest

from mscl.common.params import load_params
from mscl.pipeline.reproduce import evaluation_jobs, job_tasks, stage_jobs
from mscl.pipeline.schedule import CycleError, Task, critical_paths, next_ready, run_tasks


class FakeJob:
    """A job that ends after ``polls`` polls with ``status``."""

    def __init__(self, polls: int, status: int = 0):
        self.left, self.status = polls, status

    def poll(self):
        self.left -= 1
        return self.status if self.left <= 0 else None


def _tasks():
    # shared -> chain_a (long) -> eval_a ; shared -> chain_b (short); lone (medium, nobody waits)
    return {t.key: t for t in [Task("shared", 1.0), Task("chain_a", 5.0, ("shared",)),
                               Task("eval_a", 0.5, ("chain_a",)), Task("chain_b", 1.0, ("shared",)),
                               Task("lone", 4.0)]}


def test_critical_path_is_own_cost_plus_the_longest_chain_waiting():
    paths = critical_paths(_tasks())
    assert paths == {"shared": 6.5, "chain_a": 5.5, "eval_a": 0.5, "chain_b": 1.0, "lone": 4.0}


def test_the_ready_task_on_the_longest_path_starts_first():
    tasks, paths = _tasks(), critical_paths(_tasks())
    assert next_ready(tasks, set(), set(), paths) == "shared"          # before the longer lone job
    assert next_ready(tasks, set(), {"shared"}, paths) == "lone"       # chain_a waits for shared
    assert next_ready(tasks, {"shared"}, {"shared"}, paths) == "chain_a"
    assert next_ready(tasks, {"shared"}, {"shared", "chain_a", "lone", "chain_b"}, paths) is None


def test_cycles_and_unknown_dependencies_are_errors():
    with pytest.raises(CycleError):
        critical_paths({"a": Task("a", 1, ("b",)), "b": Task("b", 1, ("a",))})
    with pytest.raises(KeyError, match="not a task"):
        critical_paths({"a": Task("a", 1, ("ghost",))})


def test_run_tasks_respects_dependencies_on_one_worker():
    started = []

    def start(task):
        started.append(task.key)
        return FakeJob(polls=1)

    rows = run_tasks(list(_tasks().values()), start, workers=1, poll_s=0.0)
    assert started == ["shared", "chain_a", "lone", "chain_b", "eval_a"]
    assert [r["task"] for r in rows] == started and all(r["status"] == 0 for r in rows)


def test_a_failed_task_stops_new_starts():
    started = []

    def start(task):
        started.append(task.key)
        return FakeJob(polls=1, status=1 if task.key == "shared" else 0)

    rows = run_tasks(list(_tasks().values()), start, workers=1, poll_s=0.0)
    assert started == ["shared"] and rows[0]["status"] == 1


def test_reproduce_jobs_wait_for_what_they_read():
    """cit+matched waits for ours's chain of the same seed, every chain for its shared stage, an
    evaluation for the chain it asks (the cpu profile's plan; nothing runs)."""
    shared, own = stage_jobs("cpu", None)
    tasks = {t.key: t for t in job_tasks(shared, own, evaluation_jobs("cpu", None), load_params("cpu", "training"))}
    critical_paths(tasks)  # no cycle, no unknown dependency
    for job, task in tasks.items():
        if job.method == "cit+matched" and not (job.choice or job.sweep_setting or job.mode):
            assert any(d.method == "ours" and d.seed == job.seed and d.budget == job.budget for d in task.after), job
        if job.mode:
            assert [(d.method, d.seed) for d in task.after] == [(job.method, job.seed)]
        if job in own and not (job.choice or job.sweep_setting or job.budget):
            assert any(d in shared and d.seed == job.seed and d.stream == job.stream for d in task.after), job
    sweep = {job: task for job, task in tasks.items() if job.sweep_setting}
    assert sweep and not any(task.after for task in sweep.values())
    critical_paths(sweep)  # make reproduce runs the sweep alone first (its rule sets everyone's budget)


def test_the_plan_adds_up_every_job_once():
    from mscl.pipeline.reproduce import CIT_STAGE_SECONDS, plan_table

    shared, own = stage_jobs("cpu", None)
    tasks = job_tasks(shared, own, evaluation_jobs("cpu", None), load_params("cpu", "training"))
    table = plan_table("cpu", None).set_index("part")
    assert table.loc["total", "jobs"] == len(tasks) == table.drop("total")["jobs"].sum()
    assert table.loc["total", "cost"] == pytest.approx(sum(t.cost for t in tasks))
    assert table.loc["total", "worker_min"] == pytest.approx(table.loc["total", "cost"] * CIT_STAGE_SECONDS / 60)
    assert {"budget axis (04b)", "real_revisions stages", "shared stages"} <= set(table.index)


def test_stage_costs_count_a_linked_stage_once_and_every_choice(tmp_path, monkeypatch):
    import json

    from mscl.pipeline import reproduce

    monkeypatch.setenv("MSCL_ARTIFACTS", str(tmp_path))

    def stage(root, method: str, number: int, seconds: float):
        folder = root / "seed0" / "domain_independent" / method / f"stage{number}"
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({
            "stream": "domain_independent", "method": method, "run_seed": 0, "stage": number,
            "timings_s": {"total": seconds, "train": seconds / 2}}))
        return folder

    runs = tmp_path / "runs" / "smoke" / "tiny-random"
    shared = stage(runs, "cit", 1, 60.0)
    stage(runs, "ours", 2, 120.0)
    choice = tmp_path / "choices" / "smoke" / "loss_variant" / "paper-sum" / "smoke" / "tiny-random"
    (choice / "seed0" / "domain_independent" / "cit").mkdir(parents=True)
    (choice / "seed0" / "domain_independent" / "cit" / "stage1").symlink_to(shared)  # reused, not trained
    stage(choice, "pbl", 2, 30.0)

    table = reproduce.stage_costs("smoke").set_index("method")
    assert table.loc["cit", "stages"] == 1 and table.loc["cit", "total_min"] == 1.0
    assert table.loc["choice: loss_variant", "stages"] == 1 and table.loc["choice: loss_variant", "total_min"] == 0.5
    assert table["total_min"].sum() == 3.5
    assert table.loc["ours", "train_min"] == 1.0
