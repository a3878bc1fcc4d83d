"""Result tables from finished stages: the paper's metrics per method and stage, averaged over seeds,
and ACC under either evaluation mode (:data:`mscl.common.params.EVAL_MODES`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mscl import benchmark
from mscl.benchmark.probe import ensure_benchmark
from mscl.common.io import read_jsonl, write_jsonl
from mscl.common.params import EVAL_MODES, TrainingParams
from mscl.common.paths import finished_stage_dir
from mscl.core import metrics
from mscl.engine.generation import evaluation_answers
from mscl.pipeline.stages import finished_model, stage_seed


def mode_predictions(profile: str, stream: str, method: str, stage: int, mode: str, *, params: TrainingParams,
                     backbone: str | None = None, runs_root: Path | None = None) -> list[dict]:
    """The evaluation rows of ``method``'s finished ``stage`` (training seed ``params.seed``) under
    evaluation mode ``mode``: the saved predictions for the profile's own mode, otherwise the rebuilt
    model (:func:`finished_model`) asked the stage's evaluation questions again, cached in the stage
    folder as ``predictions_<mode>.jsonl`` (``python -m mscl evaluate`` fills it)."""
    if mode not in EVAL_MODES:
        raise ValueError(f"unknown evaluation mode {mode!r}; known: {', '.join(EVAL_MODES)}")
    backbone, stage = backbone or params.backbone, int(stage)
    folder = finished_stage_dir(profile, backbone, stream, method, stage, runs_root, seed=params.seed)
    if mode == params.eval.mode:
        return [{"id": r["id"], "answer": r["answer"], "prediction": r["new_prediction"], "correct": r["new_correct"]}
                for r in read_jsonl(folder / "predictions.jsonl") if r["set"] == "eval"]
    cache = folder / f"predictions_{mode}.jsonl"
    if not cache.is_file():
        records = benchmark.stage_sets(ensure_benchmark(profile, params.data_seed), stream, stage)["eval"]
        records = records if params.eval.max_items <= 0 else records[:params.eval.max_items]
        model, tokenizer = finished_model(profile, stream, method, stage, params=params, backbone=backbone,
                                          runs_root=runs_root)
        answers = evaluation_answers(model, tokenizer, [r.question for r in records], params.eval,
                                     f"{method} seed {params.seed}: {mode} evaluation", mode=mode,
                                     seed=stage_seed(params.seed, stage))
        write_jsonl(cache, [{"id": r.id, "answer": r.answer, "prediction": a,
                             "correct": metrics.is_correct(a, r.answer)} for r, a in zip(records, answers)])
    return read_jsonl(cache)


def evaluation_modes(profile: str, stream: str, methods: list[str], stage: int, *, params: TrainingParams,
                     backbone: str | None = None, runs_root: Path | None = None):
    """ACC (%) of each method's finished ``stage`` under both evaluation modes, per training seed
    (:func:`mode_predictions`)."""
    rows = []
    for method in methods:
        for seed in params.seeds:
            for mode in EVAL_MODES:
                predictions = mode_predictions(profile, stream, method, stage, mode, params=params.with_seed(seed),
                                               backbone=backbone, runs_root=runs_root)
                rows.append({"method": method, "seed": seed, "mode": mode,
                             "ACC": 100 * float(np.mean([bool(r["correct"]) for r in predictions]))})
    return pd.DataFrame(rows)


METRICS = ("ACC", "KGR", "ACC_edited", "previous_answer_edited", "ACC_validation", "KGR_validation",
           "stale_validation", "KRR", "KRR_heldout", "ACC_general", "current", "stale", "neither")
RETENTION = {"KRR": "retention", "KRR_heldout": "heldout"}  # column: the set it is measured on


def results_table(manifests: list[dict], per_seed: bool = False):
    """One row per (method, stage) with the paper's metrics in percent and the stage's wall time;
    ``trained_by`` names the method that trained the stage (CIT for a shared stage).

    ``ACC`` is on the evaluation split (the claims' items), ``ACC_validation`` on the validation
    split (what the choices read); ``KRR`` on the stage-1 facts later stages retrain unchanged,
    ``KRR_heldout`` on those no later stage trains (NaN for stages that predate a set).

    Manifests of several training seeds are averaged (:func:`aggregate_seeds`) unless ``per_seed``,
    which keeps one row per seed with a ``seed`` column.
    """
    rows = []
    for m in manifests:
        r = {name: m["metrics"].get(name, {}) for name in ("eval", "edited", "validation", "retention", "heldout",
                                                            "general")}
        rows.append({
            "method": m["method"], "stream": m["stream"], "stage": m["stage"], "backbone": m["backbone"],
            "trained_by": m.get("trained_by", m["method"]),
            "ACC": 100 * r["eval"].get("acc", float("nan")), "KGR": 100 * r["eval"].get("kgr", float("nan")),
            "ACC_edited": 100 * r["edited"].get("acc", float("nan")),
            "previous_answer_edited": 100 * r["edited"].get("acc_previous", float("nan")),
            "ACC_validation": 100 * r["validation"].get("acc", float("nan")),
            "KGR_validation": 100 * r["validation"].get("kgr", float("nan")),
            "stale_validation": 100 * r["validation"].get("source_stale", float("nan")),
            **{f"{column}{end}": 100 * r[name].get(f"krr{end}", float("nan"))
               for column, name in RETENTION.items() for end in ("", "_lo", "_hi")},
            "ACC_general": 100 * r["general"].get("acc", float("nan")),
            # where the stage's evaluation answers come from (mscl.core.metrics.answer_source)
            **{source: 100 * r["eval"].get(f"source_{source}", float("nan")) for source in metrics.ANSWER_SOURCES},
            # the method's compute (mscl.engine.compute): tokens through the backbone, training weighed 3x
            "compute_tokens": (m.get("compute") or {}).get("forward_equivalent_tokens", float("nan")),
            "wall_s": m["timings_s"]["total"],
            "seed": m.get("run_seed", m["params"]["seed"]),
        })
    table = pd.DataFrame(rows)
    if per_seed or table.empty:
        return table
    if table["seed"].nunique() > 1:
        return aggregate_seeds(table)
    return table.drop(columns="seed")


def aggregate_seeds(per_seed):
    """Mean over training seeds of each (backbone, stream, method, stage), in first-seen order.

    ``<metric>_sd``: the across-seed standard deviation (ddof 1); ``KRR_lo``/``KRR_hi`` (and
    ``KRR_heldout_lo``/``_hi``): a 95% t-interval of the mean across seeds, cut to the 0-100 a rate
    can take (with one seed a row's item-bootstrap interval is kept instead); ``wall_s``: the mean
    stage time; ``seeds``: how many seeds the row averages.
    """
    keys = ["method", "stream", "stage", "backbone", "trained_by"]
    rows = []
    for key, group in per_seed.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        n = len(group)
        for metric in METRICS:
            row[metric] = group[metric].mean()
            row[f"{metric}_sd"] = group[metric].std(ddof=1) if n > 1 else float("nan")
        for column in RETENTION:
            if n > 1:
                half = metrics.t_quantile_975(n - 1) * row[f"{column}_sd"] / n ** 0.5
                row[f"{column}_lo"], row[f"{column}_hi"] = max(row[column] - half, 0.0), min(row[column] + half, 100.0)
            else:
                row[f"{column}_lo"], row[f"{column}_hi"] = group[f"{column}_lo"].iloc[0], group[f"{column}_hi"].iloc[0]
        row["wall_s"] = group["wall_s"].mean()
        row["compute_tokens"] = group["compute_tokens"].mean()
        row["seeds"] = n
        rows.append(row)
    return pd.DataFrame(rows)
