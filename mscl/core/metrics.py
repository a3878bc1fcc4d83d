"""The paper's metrics: ACC, KGR, KRR and their bootstrap confidence intervals.

Correctness follows the authors' released evaluation script exactly: an answer is correct when the
gold answer, lower-cased and stripped, is a substring of the generated answer, lower-cased and
stripped. On top of that per-item flag:

- ACC  = correct / all
- KGR  = #(old wrong and new right) / #(old wrong), 0 when the old model got none wrong
- KRR  = #(correct after stage 1 and correct now) / #(correct after stage 1), 0 when none were

All values are fractions in [0, 1]; reports multiply by 100. The statistics are written over the
last axis of boolean arrays, so the same function scores one evaluation (shape ``(n,)``) and a whole
bootstrap at once (shape ``(n_resamples, n)``): 1000 resamples of 6000 items take milliseconds.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np

from mscl.common.answers import ANSWER_SOURCES, answer_source, is_correct, normalize

__all__ = [
    "normalize",
    "is_correct",
    "correctness",
    "accuracy",
    "knowledge_gain_ratio",
    "knowledge_retention_rate",
    "bootstrap_ci",
    "accuracy_ci",
    "knowledge_gain_ratio_ci",
    "knowledge_retention_rate_ci",
    "summarize",
    "answer_source",
    "ANSWER_SOURCES",
    "accuracy_matrix",
    "continual_summary",
    "stage_metrics",
]


def _check_lengths(**sequences: Sequence) -> int:
    """The common length of the named sequences; ValueError naming every length if they differ or
    if they are empty."""
    lengths = {name: len(seq) for name, seq in sequences.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"lengths differ: {described}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"no items to score ({', '.join(lengths)} are empty)")
    return n


def correctness(predictions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """Per-item correctness flags, ``is_correct(predictions[i], answers[i])``, as a bool array."""
    _check_lengths(predictions=predictions, answers=answers)
    return np.fromiter((is_correct(p, a) for p, a in zip(predictions, answers)),
                       dtype=bool, count=len(answers))


def _as_flags(name: str, values: Sequence[bool]) -> np.ndarray:
    flags = np.asarray(values)
    if flags.ndim != 1 or (flags.size and flags.dtype != bool):
        raise ValueError(f"{name} must be a 1-D sequence of booleans, got dtype {flags.dtype} "
                         f"and shape {flags.shape}")
    return flags.astype(bool)


# --------------------------------------------------------------------------- statistics over the last axis
def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray | float:
    """numerator / denominator, 0 where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(out) if out.ndim == 0 else out


def _accuracy_stat(correct: np.ndarray) -> np.ndarray | float:
    """ACC = sum(correct) / n, over the last axis."""
    return _safe_ratio(correct.sum(axis=-1), correct.shape[-1])


def _kgr_stat(old_correct: np.ndarray, new_correct: np.ndarray) -> np.ndarray | float:
    """KGR = sum(~old & new) / sum(~old), over the last axis; 0 where sum(~old) = 0."""
    old_wrong = ~old_correct
    return _safe_ratio((old_wrong & new_correct).sum(axis=-1), old_wrong.sum(axis=-1))


def _krr_stat(first_correct: np.ndarray, now_correct: np.ndarray) -> np.ndarray | float:
    """KRR = sum(first & now) / sum(first), over the last axis; 0 where sum(first) = 0."""
    return _safe_ratio((first_correct & now_correct).sum(axis=-1), first_correct.sum(axis=-1))


# --------------------------------------------------------------------------- point estimates
def accuracy(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Post-injection accuracy.

    ACC = (1/n) * sum_i 1[is_correct(prediction_i, answer_i)]
    """
    return _accuracy_stat(correctness(predictions, answers))


def knowledge_gain_ratio(old_predictions: Sequence[str], new_predictions: Sequence[str],
                         answers: Sequence[str]) -> float:
    """Knowledge gain ratio: of the items the model before the stage got wrong, the share the model
    after it gets right.

    KGR = sum_i 1[~old_i and new_i] / sum_i 1[~old_i], and 0 when sum_i 1[~old_i] = 0
    (the authors' script returns 0 when the old model got nothing wrong).
    """
    _check_lengths(old_predictions=old_predictions, new_predictions=new_predictions,
                   answers=answers)
    return _kgr_stat(correctness(old_predictions, answers), correctness(new_predictions, answers))


def knowledge_retention_rate(first_correct: Sequence[bool], now_correct: Sequence[bool]) -> float:
    """Knowledge retention rate over the retention items (knowledge added in stage 1 and never
    edited since): of the items correct after stage 1, the share still correct now.

    KRR = sum_i 1[first_i and now_i] / sum_i 1[first_i], and 0 when sum_i 1[first_i] = 0
    """
    _check_lengths(first_correct=first_correct, now_correct=now_correct)
    return _krr_stat(_as_flags("first_correct", first_correct),
                     _as_flags("now_correct", now_correct))


# --------------------------------------------------------------------------- bootstrap
def resample_indices(rng: np.random.Generator, n: int, n_resamples: int,
                     clusters: Sequence | None = None) -> np.ndarray:
    """Bootstrap draws of row indices, shape ``(n_resamples, n)``: rows drawn uniformly, or, with
    ``clusters`` (one label per row, every label on the same number of rows), whole clusters drawn
    uniformly and each drawn cluster contributing all its rows (a question answered under several
    training seeds is one unit, not several)."""
    if clusters is None:
        return rng.integers(0, n, size=(n_resamples, n))
    labels = np.asarray(clusters)
    if len(labels) != n:
        raise ValueError(f"clusters: {len(labels)} labels for {n} rows")
    _, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    if sizes.min() != sizes.max():
        raise ValueError(f"clusters must be of one size, got sizes {sizes.min()} to {sizes.max()}")
    members = np.argsort(inverse, kind="stable").reshape(len(sizes), sizes[0])   # rows of each cluster
    drawn = rng.integers(0, len(sizes), size=(n_resamples, len(sizes)))
    return members[drawn].reshape(n_resamples, n)


def bootstrap_ci(statistic: Callable[..., np.ndarray], *arrays: Sequence, n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0, clusters: Sequence | None = None) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic(*arrays)``.

    Items are resampled jointly: one draw of indices idx_b ~ Uniform{0..n-1}^n per resample b
    (``numpy.random.default_rng(seed)``) is applied to every array, so paired per-item values (old
    and new correctness of the same question) stay paired. The interval is the
    ((1-confidence)/2, (1+confidence)/2) quantiles of the n_resamples statistics.

    ``statistic`` is vectorised over the last axis: given arrays of shape ``(n_resamples, n)`` it
    returns shape ``(n_resamples,)`` (all statistics in this module are). Deterministic for a seed.
    ``clusters``: resample whole clusters of rows instead (:func:`resample_indices`).
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = _check_lengths(**{f"array {i}": a for i, a in enumerate(arrays)})
    columns = [np.asarray(a) for a in arrays]
    idx = resample_indices(np.random.default_rng(seed), n, n_resamples, clusters)
    stats = np.asarray(statistic(*(c[idx] for c in columns)), dtype=np.float64)
    if stats.shape != (n_resamples,):
        raise ValueError(f"statistic must return shape ({n_resamples},) for resampled input of "
                         f"shape ({n_resamples}, {n}), got {stats.shape}")
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


def accuracy_ci(predictions: Sequence[str], answers: Sequence[str], n_resamples: int = 1000,
                confidence: float = 0.95, seed: int = 0, clusters: Sequence | None = None) -> tuple[float, float]:
    """Bootstrap CI of :func:`accuracy` (items resampled, or whole ``clusters``: a fact's questions)."""
    return bootstrap_ci(_accuracy_stat, correctness(predictions, answers),
                        n_resamples=n_resamples, confidence=confidence, seed=seed, clusters=clusters)


def knowledge_gain_ratio_ci(old_predictions: Sequence[str], new_predictions: Sequence[str],
                            answers: Sequence[str], n_resamples: int = 1000,
                            confidence: float = 0.95, seed: int = 0,
                            clusters: Sequence | None = None) -> tuple[float, float]:
    """Bootstrap CI of :func:`knowledge_gain_ratio` (items or ``clusters`` resampled, old/new kept paired)."""
    _check_lengths(old_predictions=old_predictions, new_predictions=new_predictions,
                   answers=answers)
    return bootstrap_ci(_kgr_stat, correctness(old_predictions, answers),
                        correctness(new_predictions, answers),
                        n_resamples=n_resamples, confidence=confidence, seed=seed, clusters=clusters)


def knowledge_retention_rate_ci(first_correct: Sequence[bool], now_correct: Sequence[bool],
                                n_resamples: int = 1000, confidence: float = 0.95,
                                seed: int = 0, clusters: Sequence | None = None) -> tuple[float, float]:
    """Bootstrap CI of :func:`knowledge_retention_rate` (items or ``clusters`` resampled, flags kept paired)."""
    _check_lengths(first_correct=first_correct, now_correct=now_correct)
    return bootstrap_ci(_krr_stat, _as_flags("first_correct", first_correct),
                        _as_flags("now_correct", now_correct),
                        n_resamples=n_resamples, confidence=confidence, seed=seed, clusters=clusters)


def summarize(old_predictions: Sequence[str], new_predictions: Sequence[str],
              answers: Sequence[str], n_resamples: int = 1000, confidence: float = 0.95,
              seed: int = 0) -> dict[str, float | int]:
    """ACC of the new predictions and KGR of old -> new, each with its bootstrap CI.

    Returns ``{"acc", "acc_lo", "acc_hi", "kgr", "kgr_lo", "kgr_hi", "n"}``; values are fractions.
    Both intervals use the same seed, hence the same resampled items.
    """
    n = _check_lengths(old_predictions=old_predictions, new_predictions=new_predictions,
                       answers=answers)
    old = correctness(old_predictions, answers)
    new = correctness(new_predictions, answers)
    kw = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    acc_lo, acc_hi = bootstrap_ci(_accuracy_stat, new, **kw)
    kgr_lo, kgr_hi = bootstrap_ci(_kgr_stat, old, new, **kw)
    return {"acc": _accuracy_stat(new), "acc_lo": acc_lo, "acc_hi": acc_hi,
            "kgr": _kgr_stat(old, new), "kgr_lo": kgr_lo, "kgr_hi": kgr_hi, "n": n}


# two-sided 95% quantiles of Student's t (t_{0.975, df}) for df = 1..30, from the standard tables
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: half-width factor of a 95% interval of a mean from ``df + 1`` values
    (beyond 30 degrees of freedom, 1.96 + 2.4 / df, within 0.003 of the exact value)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df


# --------------------------------------------------------------------------- continual learning (Chaudhry et al. 2018)
def accuracy_matrix(correct_by_stage: Mapping[int, Sequence[tuple[int, bool]]],
                    stages: Sequence[int]) -> np.ndarray:
    """The accuracy matrix of continual learning, shape ``(T, T)``, rows and columns in the order of
    ``stages`` (the training order):

    R[k, j] = (1/n_kj) * sum_i 1[correct_i] over the n_kj items introduced at stage j and evaluated
    after training stage k, for j <= k;

    NaN above the diagonal (j > k) and where n_kj = 0 (a stage not in ``correct_by_stage``, or no item
    of that origin). ``correct_by_stage[k]`` holds the (origin stage j, correct) pairs of the evaluation
    after stage k. A stage not in ``stages``, or an item whose origin is later than k, is a ValueError.
    """
    position = {stage: i for i, stage in enumerate(stages)}
    if len(position) != len(stages):
        raise ValueError(f"stages repeat: {list(stages)}")
    hits = np.zeros((len(stages), len(stages)))
    counts = np.zeros_like(hits)
    for stage, pairs in correct_by_stage.items():
        if stage not in position:
            raise ValueError(f"trained stage {stage!r} is not one of the stages {list(stages)}")
        k = position[stage]
        for origin, correct in pairs:
            j = position.get(origin)
            if j is None or j > k:
                raise ValueError(f"after stage {stage!r}: an item of origin stage {origin!r}, which is "
                                 f"not one of the stages up to it, {list(stages)[:k + 1]}")
            counts[k, j] += 1
            hits[k, j] += bool(correct)
    return np.divide(hits, counts, out=np.full_like(hits, np.nan), where=counts > 0)


def _nan_reduce(reduce: Callable[[np.ndarray], float], values: Sequence[float]) -> float:
    """``reduce`` of the non-NaN values, NaN when there are none (without numpy's all-NaN warning)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(reduce(values)) if values.size else float("nan")


def continual_summary(R: np.ndarray) -> dict[str, float | list[float]]:
    """Average accuracy, backward transfer and forgetting of an accuracy matrix R
    (:func:`accuracy_matrix`), as defined by Chaudhry et al. 2018 ("Riemannian Walk for Incremental
    Learning"), with T stages indexed 0..T-1:

    - A_k = mean_{j <= k} R[k, j], the average accuracy after stage k; A = A_{T-1}
    - BWT = 1/(T-1) * sum_{j < T-1} (R[T-1, j] - R[j, j])
    - F   = 1/(T-1) * sum_{j < T-1} f_j,  f_j = max_{l in [j, T-2]} R[l, j] - R[T-1, j]

    f_j is the drop from the best accuracy on stage j's items before the last stage to the final
    one; it is negative when the final accuracy beats every earlier one. NaN cells are ignored: a
    term with a NaN operand is dropped and each mean is over the remaining terms (NaN when none
    remain, e.g. BWT and F with T = 1). Returns ``{"A", "BWT", "F", "A_by_stage"}`` (``A_by_stage``
    lists A_0..A_{T-1}); values are in R's unit.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"R must be a non-empty square matrix, got shape {R.shape}")
    last = R.shape[0] - 1
    by_stage = [_nan_reduce(np.mean, R[k, :k + 1]) for k in range(last + 1)]
    bwt = [R[last, j] - R[j, j] for j in range(last)]
    forgetting = [_nan_reduce(np.max, R[j:last, j]) - R[last, j] for j in range(last)]
    return {"A": by_stage[-1], "BWT": _nan_reduce(np.mean, bwt), "F": _nan_reduce(np.mean, forgetting),
            "A_by_stage": by_stage}


# --------------------------------------------------------------------------- one stage's scores
def _fact_clusters(rows: list[dict]) -> list[str] | None:
    """The bootstrap's units: a fact with all its questions, when every fact has the same number of
    them (every built stage; a cluster bootstrap needs equal sizes); single questions otherwise (an
    ``eval.max_items`` cut can split a fact)."""
    sizes = Counter(r["fact_id"] for r in rows)
    return [r["fact_id"] for r in rows] if len(set(sizes.values())) == 1 else None


def stage_metrics(predictions: dict[str, list[dict]], first_correct: dict[str, bool] | None,
                  n_resamples: int, seed: int) -> dict:
    """ACC/KGR of each set of the stage's predictions (evaluation, edited, validation, general, ...),
    and KRR of the retention sets (``retention``, ``heldout``).

    ``first_correct`` maps retention item ids to whether they were right after stage 1
    (None at stage 1, where it is this stage's own result).
    """
    out: dict = {}
    for name, rows in predictions.items():
        if not rows:
            out[name] = {"n": 0}
            continue
        answers = [r["answer"] for r in rows]
        new = [r["new_prediction"] for r in rows]
        facts = _fact_clusters(rows)
        entry = {"n": len(rows)}
        entry["acc"] = accuracy(new, answers)
        entry["acc_lo"], entry["acc_hi"] = accuracy_ci(new, answers, n_resamples, seed=seed, clusters=facts)
        if rows[0].get("old_prediction") is not None:
            old = [r["old_prediction"] for r in rows]
            entry["acc_old"] = accuracy(old, answers)
            entry["kgr"] = knowledge_gain_ratio(old, new, answers)
            entry["kgr_lo"], entry["kgr_hi"] = knowledge_gain_ratio_ci(old, new, answers, n_resamples,
                                                                              seed=seed, clusters=facts)
        sources = [answer_source(r["new_prediction"], r["answer"], r.get("earlier_answers", []))
                   for r in rows]
        for source in ANSWER_SOURCES:  # current, stale (an answer an edit replaced), neither
            entry[f"source_{source}"] = sources.count(source) / len(rows)
        if name == "edited":
            # still giving the answer the edit replaced: the conflict the paper is about
            entry["acc_previous"] = float(np.mean([is_correct(r["new_prediction"], r["previous_answer"])
                                                   for r in rows]))
        if name in ("retention", "heldout"):
            now = [bool(r["new_correct"]) for r in rows]
            first = now if first_correct is None else [bool(first_correct.get(r["id"], False)) for r in rows]
            entry["krr"] = knowledge_retention_rate(first, now)
            entry["krr_lo"], entry["krr_hi"] = knowledge_retention_rate_ci(first, now, n_resamples,
                                                                                  seed=seed, clusters=facts)
        out[name] = entry
    return out
