"""Run dependent jobs on a few workers, critical path first, with one progress bar for the whole run.

``make reproduce`` trains a few hundred stages as ``python -m mscl run`` jobs on two workers. Some
jobs wait for others (every method's chain for its shared CIT stage, ``cit+matched`` for ``ours``'s
stages, an evaluation for the chain it asks), so "longest first" is not enough: a long job that
others wait on must start before an equally long one that nobody waits on. Each job's priority is
its *critical path*: its own estimated cost plus the longest chain of jobs that wait on it
(:func:`critical_paths`). A ready job with the longest critical path starts first, and the bar's
estimate of the time left is the remaining estimated cost at the rate measured so far.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from tqdm.auto import tqdm


@dataclass(frozen=True)
class Task:
    """One job: its estimated ``cost`` (any unit, the same for all) and the jobs it waits for."""
    key: Hashable
    cost: float
    after: tuple[Hashable, ...] = ()
    label: str = ""
    payload: Any = field(default=None, compare=False)


class CycleError(ValueError):
    """The tasks wait on each other in a cycle."""


def critical_paths(tasks: dict[Hashable, Task]) -> dict[Hashable, float]:
    """Each task's cost plus the longest chain of tasks that (transitively) wait on it."""
    dependants: dict[Hashable, list[Hashable]] = {key: [] for key in tasks}
    for task in tasks.values():
        for before in task.after:
            if before not in tasks:
                raise KeyError(f"task {task.key!r} waits for {before!r}, which is not a task of this run")
            dependants[before].append(task.key)

    memo: dict[Hashable, float] = {}
    visiting: set[Hashable] = set()

    def path(key: Hashable) -> float:
        if key in memo:
            return memo[key]
        if key in visiting:
            raise CycleError(f"the tasks wait on each other in a cycle through {key!r}")
        visiting.add(key)
        memo[key] = tasks[key].cost + max((path(d) for d in dependants[key]), default=0.0)
        visiting.discard(key)
        return memo[key]

    return {key: path(key) for key in tasks}


def next_ready(tasks: dict[Hashable, Task], done: set, started: set, paths: dict[Hashable, float]) -> Hashable | None:
    """The task to start now: not started, everything it waits for done, the longest critical path
    (ties: the order the tasks were given)."""
    ready = [key for key, task in tasks.items() if key not in started and all(b in done for b in task.after)]
    return max(ready, key=lambda key: paths[key]) if ready else None


def run_tasks(tasks: list[Task], start: Callable[[Task], Any], workers: int, poll_s: float = 1.0,
              desc: str = "stages") -> list[dict]:
    """Run ``tasks`` ``workers`` at a time: ``start(task)`` launches one and returns an object with
    ``poll()`` (None while running, else the exit status, as ``subprocess.Popen``). A failed task stops
    new starts; the running ones finish. Returns one row per finished task (label, seconds, status)."""
    by_key = {task.key: task for task in tasks}
    paths = critical_paths(by_key)
    done: set = set()
    started: set = set()
    running: dict[Hashable, tuple[Any, float]] = {}
    rows: list[dict] = []
    failed = False
    with tqdm(total=round(sum(t.cost for t in tasks), 2), desc=desc, unit="cost", smoothing=0.0,
              bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} cost [{elapsed}<{remaining}]{postfix}") as bar:
        while len(done) < len(tasks) and (running or not failed):
            while len(running) < workers and not failed:
                key = next_ready(by_key, done, started, paths)
                if key is None:
                    break
                started.add(key)
                running[key] = (start(by_key[key]), time.perf_counter())
            if not running:
                raise RuntimeError("no task can start: each waits for one that cannot run")
            time.sleep(poll_s)
            for key, (proc, tic) in list(running.items()):
                status = proc.poll()
                if status is None:
                    continue
                del running[key]
                done.add(key)
                failed = failed or status != 0
                rows.append({"task": key, "label": by_key[key].label, "seconds": time.perf_counter() - tic,
                             "status": status})
                bar.update(by_key[key].cost)
                bar.set_postfix_str(f"{len(done)}/{len(tasks)} jobs; running: "
                                    + ", ".join(by_key[k].label for k in running))
    return rows
