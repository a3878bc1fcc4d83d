"""The paper's claims, checked against our runs: differences with bootstrap intervals and p-values.

**Resampling.** A claim's frames hold one row per (training seed, evaluation question). Rows are not
independent draws: the questions of one fact (rows sharing ``fact_id``) probe the same knowledge, and
every seed answers the same questions. The bootstrap is therefore hierarchical, over training seeds,
then facts within seeds (:func:`resample_weights`): each resample draws S of the S seeds with
replacement and, within each drawn seed, that seed's F_s facts with replacement; every row of a drawn
fact comes along, so facts of 1, 2 or 3 questions are drawn as wholes. With one seed this is a
fact-level cluster bootstrap, with one question per fact also a plain row bootstrap. A resample is a
vector w of row weights (how often each row was drawn) and every statistic is a weighted ratio
``sum(w * x) / sum(w * y)`` (:func:`weighted_acc`, :func:`weighted_kgr`, :func:`weighted_krr`); all-ones
weights give the point estimate, pooled over seeds and rows.

**Pairing.** A claim compares two evaluations of the same questions (two methods at one stage, or one
method at two stages on the retention set), so the difference is bootstrapped *paired*: one draw of
weights (the same seeds, the same facts) is applied to both sides (:func:`paired_difference`,
:func:`krr_difference`). Comparisons across different question sets draw each side on its own
(:func:`unpaired_difference`); two stages of the domain-independent stream ask the same questions,
so the pilot's stage-1 against last-stage ACC is paired after :func:`across_stages`.

**Interval and p-value.** From the B resampled differences d_1..d_B: the 95% percentile interval, and
the two-sided bootstrap p-value p = min(1, 2 min((#{d_b <= 0} + 1) / (B + 1), (#{d_b >= 0} + 1) / (B + 1)))
(:func:`bootstrap_p`). Over the family of claims of one table the p-values are Holm-Bonferroni
adjusted (:func:`holm_adjust`, :func:`claims_table`).

A verdict compares the sign the paper reports with our difference and its significance, which is
"the 95% interval excludes 0" for ``verdict`` and "Holm-adjusted p < 0.05" for ``verdict (Holm)``:

- ``agrees``: same sign, significant;
- ``same direction, not significant``: same sign, not significant;
- ``no difference``: a difference of exactly 0, not significant;
- ``opposite, not significant``: other sign, not significant;
- ``disagrees``: other sign, significant.

Nothing here reads the paper's numbers to make ours; :func:`paper_results` only loads them to show
beside our tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from mscl.common.io import read_jsonl
from mscl.common.paths import REPO_ROOT, finished_stage_dir
from mscl.core import metrics

PAPER_DIR = REPO_ROOT / "reports" / "paper"
# Bootstrap resamples for the claims: the smallest bootstrap p-value is 2 / (B + 1), and Holm's
# correction multiplies it by up to the number of claims m, so B must satisfy m * 2 / (B + 1) well
# below 0.05 or no claim can ever be significant after the correction. B = 64,000 keeps it under
# 0.005 for families of up to 150 claims.
CLAIMS_BOOTSTRAP = 64_000
HOLM_FAMILY_MAX = 150
# our method names -> the paper's row labels
PAPER_METHODS = {"cit": "CIT", "mocl": "MoCL", "flearning": "F-Learning", "ours": "Ours"}
PAPER_ABLATION_ROWS = {
    # the paper's augmentation and selection ablations sit on CIT: their "No augmentation" row is the
    # main table's CIT at stage 2 (Llama3-8B), so our rows are the CIT-based variants
    "learning_bias": {"cit": "CIT", "pbl": "PBL (Ours)"},
    "augmentation": {"cit": "No augmentation", "cit+bki": "+ BKI", "cit+lce": "+ LCE", "cit+pa": "+ PA",
                     "cit+ca": "CA (Ours)"},
    "selection": {"cit": "No augmentation", "cit+ca": "Data augmentation", "cit+ca+rs50": "+ RS (50%)",
                  "cit+ca+rs25": "+ RS (25%)", "cit+ca+rs12.5": "+ RS (12.5%)", "cit+ca+ds": "DS (Ours)"},
}
PAPER_ABLATION_NAMES = {"learning_bias": "pbl", "augmentation": "augmentation", "selection": "selection"}


def paper_results(folder: Path = PAPER_DIR) -> dict[str, pd.DataFrame]:
    """The paper's transcribed tables: ``main`` (backbone, method, stage, KGR, ACC in %) and
    ``ablations`` (ablation, variant, ACC, KGR, note), read from ``reports/paper/*.csv``."""
    main = pd.read_csv(folder / "domain_independent.csv").rename(columns={"kgr": "KGR", "acc": "ACC"})
    ablations = pd.read_csv(folder / "ablations.csv").rename(columns={"acc": "ACC", "kgr": "KGR"})
    return {"main": main, "ablations": ablations}


def paper_main_table(paper_main: pd.DataFrame) -> pd.DataFrame:
    """The paper's main table in the long form :func:`mscl.evaluation.report.main_table` lays out (methods other
    than CIT have no stage-1 column in the paper: they start from CIT's stage 1)."""
    long = paper_main.copy()
    long["trained_by"] = np.where((long["stage"] == 1) & (long["method"] != "CIT"), "CIT", long["method"])
    return long


# --------------------------------------------------------------------------- our stage results
def stage_predictions(profile: str, backbone: str, stream: str, method: str, stage: int, eval_set: str = "eval",
                      runs_root: Path | None = None, *, seeds: Sequence[int]) -> pd.DataFrame:
    """One row per (training seed, question of ``eval_set``) with old/new correctness and the
    question's ``fact_id``, indexed by (seed, item id). With several seeds a comparison pools their
    rows (the point estimate) and the bootstrap draws seeds, then facts within each drawn seed
    (:func:`resample_weights`)."""
    frames = []
    for seed in seeds:
        folder = finished_stage_dir(profile, backbone, stream, method, stage, runs_root, seed=seed)
        rows = [{**r, "seed": seed} for r in read_jsonl(folder / "predictions.jsonl") if r["set"] == eval_set]
        frames.append(pd.DataFrame(rows))
    frame = pd.concat(frames, ignore_index=True).set_index(["seed", "id"])
    frame["new_ok"] = [metrics.is_correct(p, a) for p, a in zip(frame["new_prediction"], frame["answer"])]
    frame["old_ok"] = [p is not None and metrics.is_correct(p, a)
                       for p, a in zip(frame["old_prediction"], frame["answer"])]
    return frame


def across_stages(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` indexed by (seed, question key) instead of (seed, item id): the id without its
    ``<stream>/<stage>/`` prefix, so the same fact asked in the same wording at two stages of the
    domain-independent stream (which asks every base fact at every stage) lines up for a paired
    comparison of the two stages."""
    keys = [item.split("/", 2)[2] for item in frame.index.get_level_values("id")]
    out = frame.copy()
    out.index = pd.MultiIndex.from_arrays([frame.index.get_level_values("seed"), keys], names=["seed", "id"])
    return out


# --------------------------------------------------------------------------- hierarchical bootstrap
def resample_weights(seeds: np.ndarray, facts: np.ndarray, n_resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """How often each row is drawn in each of ``n_resamples`` hierarchical bootstrap resamples,
    integer array of shape ``(n_resamples, n_rows)``.

    ``seeds`` and ``facts`` label every row with its training seed and its fact. Resample b draws
    S seeds uniformly with replacement from the S distinct seeds, giving counts m_bs (sum_s m_bs = S),
    then, for each of the m_bs draws of seed s, F_s facts uniformly with replacement from the F_s
    facts of seed s. A fact f of seed s drawn k times gives each of its rows weight k:

        w_b[row] = c_b(s, f),   c_b(s, .) ~ Multinomial(m_bs * F_s, (1/F_s, ..., 1/F_s))

    (m_bs independent Multinomial(F_s, uniform) fact draws sum to one Multinomial(m_bs F_s, uniform)).
    A statistic of a resample is then a weighted one, e.g. ACC_b = sum_i w_bi x_i / sum_i w_bi,
    which is the statistic of the rows listed with repetition. Each resample draws
    sum_s m_bs F_s facts (S * F when every seed has F facts); with one seed and one row per fact
    the weights are those of a plain row bootstrap, Multinomial(n, uniform).
    """
    seeds, facts = np.asarray(seeds), np.asarray(facts)
    if seeds.shape != facts.shape or seeds.ndim != 1 or len(seeds) == 0:
        raise ValueError(f"seeds and facts must be 1-D, non-empty and of one length, got shapes "
                         f"{seeds.shape} and {facts.shape}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    seed_names, seed_of_row = np.unique(seeds, return_inverse=True)
    fact_names, fact_of_row = np.unique(facts, return_inverse=True)
    # a cluster is one fact under one seed: code it as seed * n_facts + fact
    clusters, cluster_of_row = np.unique(seed_of_row * len(fact_names) + fact_of_row, return_inverse=True)
    cluster_seed = clusters // len(fact_names)
    n_seeds = len(seed_names)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_resamples)
    cluster_weights = np.empty((n_resamples, len(clusters)), dtype=np.int64)
    for s in range(n_seeds):
        members = np.flatnonzero(cluster_seed == s)
        cluster_weights[:, members] = rng.multinomial(seed_counts[:, s] * len(members),
                                                      np.full(len(members), 1.0 / len(members)))
    return cluster_weights[:, cluster_of_row]


def _labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(seed, fact) of every row: the index level ``seed`` (one seed if absent) and the column
    ``fact_id`` (each row its own fact if absent)."""
    seeds = (frame.index.get_level_values("seed").to_numpy() if "seed" in frame.index.names
             else np.zeros(len(frame), dtype=np.int64))
    facts = frame["fact_id"].to_numpy() if "fact_id" in frame.columns else np.arange(len(frame))
    return seeds, facts


def _ratio(weights: np.ndarray, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """sum_i w_bi num_i / sum_i w_bi den_i per resample b (0 where the denominator is 0)."""
    top = weights @ numerator.astype(np.float64)
    bottom = weights @ denominator.astype(np.float64)
    return np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)


def weighted_acc(weights: np.ndarray, new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """ACC per row of ``weights`` (shape ``(B, n)``): sum_i w_i new_i / sum_i w_i, the share of
    (weighted) questions the new model answers right. ``old`` is unused (one signature for ACC and
    KGR)."""
    return _ratio(weights, new, np.ones_like(new))


def weighted_kgr(weights: np.ndarray, new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """KGR per row of ``weights``: sum_i w_i (!old_i & new_i) / sum_i w_i !old_i, the share of the
    questions the old model got wrong that the new one gets right (0 if the old got none wrong)."""
    return _ratio(weights, ~old & new, ~old)


def weighted_krr(weights: np.ndarray, first: np.ndarray, now: np.ndarray) -> np.ndarray:
    """KRR per row of ``weights``: sum_i w_i (first_i & now_i) / sum_i w_i first_i, the share of the
    questions right after stage 1 that are still right (0 if none was right after stage 1)."""
    return _ratio(weights, first & now, first)


def _stat(metric: str):
    if metric == "ACC":
        return weighted_acc
    if metric == "KGR":
        return weighted_kgr
    raise ValueError(f"unknown metric {metric!r}; expected ACC or KGR")


# --------------------------------------------------------------------------- differences with CIs
class Difference(NamedTuple):
    """A difference in percentage points, its 95% bootstrap interval, two-sided bootstrap p and the
    resampled differences (points) they come from (:func:`holm_intervals` reads them)."""
    point: float
    lo: float
    hi: float
    p: float
    draws: np.ndarray | None = None


def bootstrap_p(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference" from B resampled differences d_b:

        p = min(1, 2 * min((#{d_b <= 0} + 1) / (B + 1), (#{d_b >= 0} + 1) / (B + 1)))

    (the +1 counts the observed sample among the resamples, so p >= 2 / (B + 1) > 0)."""
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    below, above = (np.count_nonzero(d <= 0) + 1) / (n + 1), (np.count_nonzero(d >= 0) + 1) / (n + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def _result(point: float, differences: np.ndarray, with_p: bool) -> tuple[float, float, float] | Difference:
    """(point, lo, hi) in points, the 2.5% and 97.5% quantiles of the resampled differences, and
    with ``with_p`` their :func:`bootstrap_p` as a :class:`Difference`."""
    lo, hi = np.quantile(differences, [0.025, 0.975])
    values = (100 * float(point), 100 * float(lo), 100 * float(hi))
    return Difference(*values, bootstrap_p(differences), 100 * np.asarray(differences, dtype=np.float64)) \
        if with_p else values


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, metric: str, n_resamples: int = 1000, seed: int = 0,
                      *, with_p: bool = False) -> tuple[float, float, float] | Difference:
    """``metric(a) - metric(b)`` in percentage points over the same rows (same (seed, id) index),
    with a paired 95% hierarchical bootstrap interval: resample b uses one weight vector w_b
    (:func:`resample_weights`, from ``a``'s seeds and facts) for both sides,
    d_b = metric_w_b(a) - metric_w_b(b). Returns (point, lo, hi), or with ``with_p`` a
    :class:`Difference` (point, lo, hi, p) with p = :func:`bootstrap_p` of the d_b."""
    if set(a.index) != set(b.index):
        raise ValueError("paired_difference needs the same items on both sides")
    b = b.loc[a.index]
    if "fact_id" in a.columns and "fact_id" in b.columns and not np.array_equal(a["fact_id"], b["fact_id"]):
        raise ValueError("paired_difference needs the same facts on both sides")
    stat = _stat(metric)
    sides = [(f["new_ok"].to_numpy(bool), f["old_ok"].to_numpy(bool)) for f in (a, b)]

    def diff(weights):
        return stat(weights, *sides[0]) - stat(weights, *sides[1])

    point = diff(np.ones((1, len(a))))[0]
    return _result(point, diff(resample_weights(*_labels(a), n_resamples, np.random.default_rng(seed))), with_p)


def unpaired_difference(a: pd.DataFrame, b: pd.DataFrame, metric: str, n_resamples: int = 1000, seed: int = 0,
                        *, with_p: bool = False) -> tuple[float, float, float] | Difference:
    """``metric(a) - metric(b)`` in percentage points for two different item sets, with a 95%
    hierarchical bootstrap interval whose sides are drawn independently (weights w_b for ``a``,
    v_b for ``b``): d_b = metric_w_b(a) - metric_v_b(b). Returns (point, lo, hi), or with
    ``with_p`` a :class:`Difference` (point, lo, hi, p), p = :func:`bootstrap_p` of the d_b."""
    stat = _stat(metric)
    rng = np.random.default_rng(seed)
    points, resampled = [], []
    for frame in (a, b):
        new, old = frame["new_ok"].to_numpy(bool), frame["old_ok"].to_numpy(bool)
        points.append(stat(np.ones((1, len(frame))), new, old)[0])
        resampled.append(stat(resample_weights(*_labels(frame), n_resamples, rng), new, old))
    return _result(points[0] - points[1], resampled[0] - resampled[1], with_p)


def krr_difference(first: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame, n_resamples: int = 1000, seed: int = 0,
                   *, with_p: bool = False) -> tuple[float, float, float] | Difference:
    """KRR(a) - KRR(b) in points on the retention set, both measured against ``first`` (the
    stage-1 correctness of the same rows), with a paired 95% hierarchical bootstrap interval: one
    weight vector w_b (from ``first``'s seeds and facts) for both sides,
    d_b = KRR_w_b(first, a) - KRR_w_b(first, b) (:func:`weighted_krr`). Returns (point, lo, hi), or
    with ``with_p`` a :class:`Difference` (point, lo, hi, p), p = :func:`bootstrap_p` of the d_b."""
    a, b = a.loc[first.index], b.loc[first.index]
    kept, now_a, now_b = (f["new_ok"].to_numpy(bool) for f in (first, a, b))

    def diff(weights):
        return weighted_krr(weights, kept, now_a) - weighted_krr(weights, kept, now_b)

    point = diff(np.ones((1, len(first))))[0]
    return _result(point, diff(resample_weights(*_labels(first), n_resamples, np.random.default_rng(seed))), with_p)


CONTINUAL_MEASURES = {"A": "average accuracy", "BWT": "backward transfer", "F": "forgetting"}


def _continual(weights: np.ndarray, correct: np.ndarray, origin: np.ndarray, measure: str) -> np.ndarray:
    """A, BWT or F (:func:`mscl.core.metrics.continual_summary`) of each resample's weighted R, where
    R[k, j] = sum_i w_i c_ik / sum_i w_i over the rows of origin j (``correct``: rows x stages, NaN
    before a row's origin; ``origin``: each row's origin as a column index)."""
    stages = correct.shape[1]
    known = np.nan_to_num(correct)
    R = np.full((weights.shape[0], stages, stages), np.nan)
    for j in range(stages):
        rows = origin == j
        total = weights[:, rows].sum(axis=1)
        for k in range(j, stages):
            R[:, k, j] = (weights[:, rows] * known[rows, k]).sum(axis=1) / np.where(total > 0, total, np.nan)
    last = stages - 1
    if measure == "A":
        return np.nanmean(R[:, last, :], axis=1)
    if measure == "BWT":
        return np.nanmean(np.stack([R[:, last, j] - R[:, j, j] for j in range(last)], axis=1), axis=1)
    if measure == "F":
        return np.nanmean(np.stack([np.nanmax(R[:, j:last, j], axis=1) - R[:, last, j] for j in range(last)], axis=1),
                          axis=1)
    raise ValueError(f"unknown measure {measure!r}; known: {', '.join(CONTINUAL_MEASURES)}")


def continual_difference(a: pd.DataFrame, b: pd.DataFrame, measure: str, n_resamples: int = 1000, seed: int = 0,
                         *, with_p: bool = False) -> tuple[float, float, float] | Difference:
    """``measure(a) - measure(b)`` in points for A, BWT or F of the cross-domain accuracy matrix,
    over the same rows (:func:`mscl.evaluation.conflict.correctness_by_stage` of two methods), with a
    paired 95% hierarchical bootstrap interval: one weight vector per resample (seeds, then facts
    within seeds, :func:`resample_weights`) for both sides."""
    if set(a.index) != set(b.index):
        raise ValueError("continual_difference needs the same items on both sides")
    b = b.loc[a.index]
    stages = [c for c in a.columns if c not in ("fact_id", "origin")]
    position = {stage: i for i, stage in enumerate(stages)}
    origin = a["origin"].map(position).to_numpy()
    sides = [frame[stages].to_numpy(dtype=float) for frame in (a, b)]

    def diff(weights):
        return _continual(weights, sides[0], origin, measure) - _continual(weights, sides[1], origin, measure)

    labels = (a.index.get_level_values("seed").to_numpy(), a["fact_id"].to_numpy())
    point = diff(np.ones((1, len(a))))[0]
    return _result(point, diff(resample_weights(*labels, n_resamples, np.random.default_rng(seed))), with_p)


# --------------------------------------------------------------------------- verdicts over a family
def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the order given. With the m p-values sorted,
    p_(1) <= ... <= p_(m), the adjusted one of rank i is

        p~_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))

    (step-down, monotone in rank, capped at 1); rejecting p~ < alpha controls the family-wise error
    rate at alpha. E.g. [0.01, 0.04, 0.03, 0.005] -> [0.03, 0.06, 0.06, 0.02]."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError(f"p_values must be a 1-D sequence of numbers in [0, 1], got {p_values!r}")
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


def holm_intervals(points: Sequence[float], p_values: Sequence[float], draws: Sequence[np.ndarray],
                   alpha: float = 0.05) -> list[tuple[float, float]]:
    """Intervals compatible with Holm's adjusted p-values: claim k's percentile interval of its
    resampled differences at level 1 - alpha_k, with

        alpha_k = alpha * p_k / p~_k      (p~_k: :func:`holm_adjust`; alpha_k <= alpha)

    so that it excludes 0 exactly when p_k < alpha_k, i.e. when p~_k < alpha (up to one bootstrap
    draw: :func:`bootstrap_p` counts the observed sample among the resamples). A claim Holm does not
    reject gets a wider interval than its raw one; one with p~ = p keeps its raw level."""
    adjusted = holm_adjust(p_values)
    out = []
    for p, p_holm, d in zip(p_values, adjusted, draws):
        level = alpha * p / p_holm if p_holm > 0 else alpha
        lo, hi = np.quantile(d, [level / 2, 1 - level / 2])
        out.append((float(lo), float(hi)))
    return out


def _verdict(expected_sign: int, point: float, significant: bool) -> str:
    """The verdict's words for a difference and whether it is significant (module docstring)."""
    if point == 0 and not significant:
        return "no difference"
    if np.sign(point) == expected_sign:
        return "agrees" if significant else "same direction, not significant"
    return "disagrees" if significant else "opposite, not significant"


def verdict(expected_sign: int, point: float, lo: float, hi: float) -> str:
    """Our difference against the sign the paper reports, significant meaning that the 95%
    interval [lo, hi] excludes 0 (see the module docstring)."""
    return _verdict(expected_sign, point, lo > 0 or hi < 0)


def _format_p(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


@dataclass
class Claim:
    """One of the paper's claims, its evidence in the paper, our difference, its interval and its
    bootstrap p-value (None where not computed)."""
    section: str
    claim: str
    paper: str
    expected_sign: int
    point: float
    lo: float
    hi: float
    p: float | None = None
    draws: np.ndarray | None = None   # the resampled differences (points), for the Holm interval

    def row(self) -> dict:
        return {"section": self.section, "claim": self.claim, "paper": self.paper,
                "ours (points, 95% CI)": _interval(self.point, self.lo, self.hi),
                "verdict": verdict(self.expected_sign, self.point, self.lo, self.hi), "p": _format_p(self.p)}


def _interval(point: float, lo: float, hi: float) -> str:
    return f"{point:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    """One row per claim (:meth:`Claim.row`: the raw 95% interval and its verdict), plus, over the
    family of claims that have a p-value:

    - ``p (Holm)``: Holm-adjusted p (:func:`holm_adjust`);
    - ``ours (points, Holm CI)``: the interval compatible with it (:func:`holm_intervals`);
    - ``verdict (Holm)``: the verdict with significant meaning that this interval excludes 0 (for a
      claim without resampled differences: adjusted p < 0.05), so each interval agrees with its verdict.

    "—" for a claim without p. p-values are shown as text, 3 decimals."""
    tested = [i for i, c in enumerate(claims) if c.p is not None]
    adjusted = dict(zip(tested, holm_adjust([claims[i].p for i in tested])))
    drawn = [i for i in tested if claims[i].draws is not None]
    intervals = dict(zip(drawn, holm_intervals([claims[i].point for i in drawn], [claims[i].p for i in drawn],
                                               [claims[i].draws for i in drawn])))
    rows = []
    for i, c in enumerate(claims):
        p_holm, interval = adjusted.get(i), intervals.get(i)
        significant = (interval[0] > 0 or interval[1] < 0) if interval else p_holm is not None and p_holm < 0.05
        rows.append({**c.row(), "p (Holm)": _format_p(p_holm),
                     "ours (points, Holm CI)": _interval(c.point, *interval) if interval else "—",
                     "verdict (Holm)": "—" if p_holm is None else _verdict(c.expected_sign, c.point, significant)})
    return pd.DataFrame(rows)


def paper_main_delta(paper_main: pd.DataFrame, metric: str, a: tuple[str, int], b: tuple[str, int]) -> str:
    """How the paper's main table compares ``a`` = (method, stage) with ``b`` over its backbones: the
    majority sign and its count, and the range, e.g. ``"+ in 4/4 backbones (+12.0 to +34.8)"``."""
    table = paper_main.set_index(["backbone", "method", "stage"])[metric]
    deltas = []
    for bb in paper_main["backbone"].unique():
        try:
            deltas.append(float(table[(bb, a[0], a[1])] - table[(bb, b[0], b[1])]))
        except KeyError:
            continue
    if not deltas:
        return "not in the paper's table"
    positive, negative = sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)
    sign, count = ("+", positive) if positive >= negative else ("-", negative)
    return f"{sign} in {count}/{len(deltas)} backbones ({min(deltas):+.1f} to {max(deltas):+.1f})"


def paper_ablation_delta(paper_ablations: pd.DataFrame, ablation: str, metric: str, a: str, b: str) -> str:
    """The paper's ablation difference ``a - b`` (row labels) in ``metric``, as printed."""
    rows = paper_ablations[paper_ablations["ablation"] == ablation].set_index("variant")[metric]
    if a not in rows.index or b not in rows.index:
        return "not in the paper's table"
    return f"{rows[a] - rows[b]:+.1f} ({rows[a]:.1f} vs {rows[b]:.1f})"
