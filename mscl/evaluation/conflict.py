"""The picture of knowledge conflict, read from the saved predictions of finished stages.

- **Answer sources.** Each evaluation answer is the stage's *current* gold answer, a *stale* one (an
  earlier answer of the fact's chain that an edit replaced) or *neither*
  (:func:`mscl.core.metrics.answer_source`). A method that resolves the conflict moves mass from stale to
  current; one that merely fails to learn leaves it in neither.
- **The accuracy matrix** of the cross-domain stream: R[k][j] = ACC after stage k on the facts that
  stay domain j's to the end of the stream (no later stage asks them again), on their answers (the
  stage's ``eval`` set for j = k, its ``history`` set for j < k; :func:`mscl.benchmark.stage_sets`).
  Every cell of a column thus scores the same facts; the facts domain j hands over to domain j+1,
  which asks them again with an edited answer, count in column j+1 only. Average accuracy,
  backward transfer and forgetting follow Chaudhry et al. (2018)
  (:func:`mscl.core.metrics.continual_summary`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mscl.common.io import read_jsonl
from mscl.common.paths import finished_stage_dir
from mscl.core import metrics


def _predictions(profile: str, backbone: str, stream: str, method: str, stage: int, seed: int,
                 runs_root: Path | None) -> list[dict]:
    return read_jsonl(finished_stage_dir(profile, backbone, stream, method, stage, runs_root, seed=seed)
                      / "predictions.jsonl")


def answer_source_rows(profile: str, backbone: str, stream: str, methods: Sequence[str], stages: Sequence[int],
                       seeds: Sequence[int], eval_set: str = "eval", runs_root: Path | None = None) -> pd.DataFrame:
    """One row per (method, stage, seed, evaluation item of ``eval_set``) with its ``source``
    (current, stale or neither), ready for :func:`mscl.evaluation.report.answer_source_table`."""
    rows = []
    for method in methods:
        for stage in stages:
            for seed in seeds:
                for r in _predictions(profile, backbone, stream, method, stage, seed, runs_root):
                    if r["set"] == eval_set:
                        source = metrics.answer_source(r["new_prediction"], r["answer"], r.get("earlier_answers", []))
                        rows.append({"method": method, "stage": stage, "seed": seed, "id": r["id"], "source": source})
    return pd.DataFrame(rows)


def accuracy_matrices(profile: str, backbone: str, stream: str, method: str, stages: Sequence[int],
                      seeds: Sequence[int], runs_root: Path | None = None) -> list[np.ndarray]:
    """R (:func:`mscl.core.metrics.accuracy_matrix`) of ``method`` for each training seed, in order, over
    the facts that stay their domain's to the end (the same facts in every cell of a column)."""
    from mscl import benchmark
    from mscl.benchmark.probe import ensure_benchmark
    from mscl.common.params import load_params

    records = benchmark.read_stream(ensure_benchmark(profile, load_params(profile, "training").data_seed), stream)
    last_asked: dict[str, int] = {}
    for r in records:
        last_asked[r.fact_id] = max(last_asked.get(r.fact_id, 0), r.stage)
    out = []
    for seed in seeds:
        by_stage = {stage: [(r["origin_stage"], bool(r["new_correct"]))
                            for r in _predictions(profile, backbone, stream, method, stage, seed, runs_root)
                            if r["set"] in ("eval", "history") and last_asked[r["fact_id"]] == r["origin_stage"]]
                    for stage in stages}
        out.append(metrics.accuracy_matrix(by_stage, stages))
    return out


def continual_table(matrices: dict[str, list[np.ndarray]]) -> pd.DataFrame:
    """Per method, average accuracy A, backward transfer BWT and forgetting F at the last stage (in
    points), each the mean over the seeds' matrices with its across-seed standard deviation."""
    rows = []
    for method, per_seed in matrices.items():
        summaries = [metrics.continual_summary(R) for R in per_seed]
        row = {"method": method, "seeds": len(per_seed)}
        for key in ("A", "BWT", "F"):
            values = 100 * np.array([s[key] for s in summaries], dtype=float)
            row[key] = values.mean()
            row[f"{key}_sd"] = values.std(ddof=1) if len(values) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def correctness_by_stage(profile: str, backbone: str, stream: str, method: str, stages: Sequence[int],
                         seeds: Sequence[int], runs_root: Path | None = None) -> pd.DataFrame:
    """One row per (training seed, item) of the facts that stay their domain's to the end (those of
    :func:`accuracy_matrices`), indexed by (seed, id): its ``fact_id``, its ``origin`` stage and, per
    stage k of ``stages``, whether it was answered right after stage k (NaN before its origin): the
    rows behind R, ready for :func:`mscl.evaluation.claims.continual_difference`."""
    from mscl import benchmark
    from mscl.benchmark.probe import ensure_benchmark
    from mscl.common.params import load_params

    records = benchmark.read_stream(ensure_benchmark(profile, load_params(profile, "training").data_seed), stream)
    last_asked: dict[str, int] = {}
    for r in records:
        last_asked[r.fact_id] = max(last_asked.get(r.fact_id, 0), r.stage)
    rows: dict[tuple[int, str], dict] = {}
    for seed in seeds:
        for stage in stages:
            for r in _predictions(profile, backbone, stream, method, stage, seed, runs_root):
                if r["set"] in ("eval", "history") and last_asked[r["fact_id"]] == r["origin_stage"]:
                    row = rows.setdefault((seed, r["id"]), {"seed": seed, "id": r["id"], "fact_id": r["fact_id"],
                                                            "origin": r["origin_stage"]})
                    row[stage] = float(bool(r["new_correct"]))
    # a stage with no such item (an eval.max_items cut) is a column of NaN
    return pd.DataFrame(list(rows.values())).set_index(["seed", "id"]).reindex(columns=["fact_id", "origin", *stages])
