"""The paper's claims, checked against our runs: differences with bootstrap confidence intervals.

A claim compares two evaluations of the same questions (two methods at one stage, or one method at
two stages on the retention set), so the difference is bootstrapped *paired*: one draw of item
indices is applied to both sides (:func:`mscl.metrics.bootstrap_ci`). Comparisons across different
question sets (CIT's stage-1 vs last-stage ACC in the pilot) resample each side on its own.

A verdict compares the sign the paper reports with our difference and its 95% interval:

- ``agrees``: same sign, interval excludes 0;
- ``same direction, not significant``: same sign, interval includes 0;
- ``no difference``: a difference of exactly 0 whose interval includes 0;
- ``opposite, not significant``: other sign, interval includes 0;
- ``disagrees``: other sign, interval excludes 0.

Nothing here reads the paper's numbers to make ours; :func:`paper_results` only loads them to show
beside our tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mscl import metrics
from mscl.io import read_jsonl
from mscl.paths import REPO_ROOT
from mscl.stages import finished_stage_dir

PAPER_DIR = REPO_ROOT / "reports" / "paper"
# our method names -> the paper's row labels
PAPER_METHODS = {"cit": "CIT", "mocl": "MoCL", "flearning": "F-Learning", "ours": "Ours"}
PAPER_ABLATION_ROWS = {
    "learning_bias": {"cit": "CIT", "pbl": "PBL (Ours)"},
    "augmentation": {"pbl": "No augmentation", "pbl+bki": "+ BKI", "pbl+lce": "+ LCE", "pbl+pa": "+ PA",
                     "pbl+ca": "CA (Ours)"},
    "selection": {"pbl": "No augmentation", "pbl+ca": "Data augmentation", "pbl+ca+rs50": "+ RS (50%)",
                  "pbl+ca+rs25": "+ RS (25%)", "pbl+ca+rs12.5": "+ RS (12.5%)", "ours": "DS (Ours)"},
}
PAPER_ABLATION_NAMES = {"learning_bias": "pbl", "augmentation": "augmentation", "selection": "selection"}


def paper_results(folder: Path = PAPER_DIR) -> dict[str, pd.DataFrame]:
    """The paper's transcribed tables: ``main`` (backbone, method, stage, KGR, ACC in %) and
    ``ablations`` (ablation, variant, ACC, KGR, note), read from ``reports/paper/*.csv``."""
    main = pd.read_csv(folder / "domain_independent.csv").rename(columns={"kgr": "KGR", "acc": "ACC"})
    ablations = pd.read_csv(folder / "ablations.csv").rename(columns={"acc": "ACC", "kgr": "KGR"})
    return {"main": main, "ablations": ablations}


def paper_main_table(paper_main: pd.DataFrame) -> pd.DataFrame:
    """The paper's main table in the long form :func:`mscl.report.main_table` lays out (methods other
    than CIT have no stage-1 column in the paper: they start from CIT's stage 1)."""
    long = paper_main.copy()
    long["trained_by"] = np.where((long["stage"] == 1) & (long["method"] != "CIT"), "CIT", long["method"])
    return long


# --------------------------------------------------------------------------- our stage results
def stage_predictions(profile: str, backbone: str, stream: str, method: str, stage: int, eval_set: str = "eval",
                      runs_root: Path | None = None, *, seeds: Sequence[int]) -> pd.DataFrame:
    """One row per (training seed, question of ``eval_set``) with old/new correctness, indexed by
    (seed, item id). With several seeds a comparison pools their rows, and the bootstrap resamples
    questions, each with all its seeds' rows (:func:`_clusters`): the seeds answer the same
    questions, so they are not independent draws."""
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


# --------------------------------------------------------------------------- differences with CIs
def _clusters(frame: pd.DataFrame):
    """The item id of each row when rows are (seed, id) of several seeds: the bootstrap's resampling
    unit (None with one seed: every row is its own unit)."""
    if isinstance(frame.index, pd.MultiIndex) and frame.index.get_level_values("seed").nunique() > 1:
        return frame.index.get_level_values("id").to_numpy()
    return None


def _stat(metric: str):
    if metric == "ACC":
        return lambda new, old: new.mean(axis=-1)
    if metric == "KGR":
        def kgr(new, old):
            wrong = ~old
            gained = (wrong & new).sum(axis=-1)
            total = wrong.sum(axis=-1)
            return np.where(total > 0, gained / np.maximum(total, 1), 0.0)
        return kgr
    raise ValueError(f"unknown metric {metric!r}; expected ACC or KGR")


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, metric: str, n_resamples: int = 1000,
                      seed: int = 0) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` in percentage points over the same items, with a paired 95% CI."""
    if set(a.index) != set(b.index):
        raise ValueError("paired_difference needs the same items on both sides")
    b = b.loc[a.index]
    stat = _stat(metric)
    arrays = [a["new_ok"].to_numpy(bool), a["old_ok"].to_numpy(bool), b["new_ok"].to_numpy(bool),
              b["old_ok"].to_numpy(bool)]

    def diff(na, oa, nb, ob):
        return stat(na, oa) - stat(nb, ob)

    point = float(diff(*arrays))
    lo, hi = metrics.bootstrap_ci(diff, *arrays, n_resamples=n_resamples, seed=seed, clusters=_clusters(a))
    return 100 * point, 100 * lo, 100 * hi


def unpaired_difference(a: pd.DataFrame, b: pd.DataFrame, metric: str, n_resamples: int = 1000,
                        seed: int = 0) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` in percentage points for two different item sets; each side is
    resampled on its own (independent draws), 95% percentile CI."""
    stat = _stat(metric)
    rng = np.random.default_rng(seed)
    sides = []
    for frame in (a, b):
        new, old = frame["new_ok"].to_numpy(bool), frame["old_ok"].to_numpy(bool)
        idx = metrics.resample_indices(rng, len(frame), n_resamples, _clusters(frame))
        sides.append((float(stat(new, old)), stat(new[idx], old[idx])))
    point = sides[0][0] - sides[1][0]
    lo, hi = np.quantile(sides[0][1] - sides[1][1], [0.025, 0.975])
    return 100 * point, 100 * float(lo), 100 * float(hi)


def krr_difference(first: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame, n_resamples: int = 1000,
                   seed: int = 0) -> tuple[float, float, float]:
    """KRR(a) - KRR(b) in points on the retention set, both measured against ``first`` (the
    stage-1 correctness of the same items), with a paired 95% CI."""
    a, b = a.loc[first.index], b.loc[first.index]
    arrays = [first["new_ok"].to_numpy(bool), a["new_ok"].to_numpy(bool), b["new_ok"].to_numpy(bool)]

    def krr(f, now):
        kept = f.sum(axis=-1)
        return np.where(kept > 0, (f & now).sum(axis=-1) / np.maximum(kept, 1), 0.0)

    def diff(f, na, nb):
        return krr(f, na) - krr(f, nb)

    point = float(diff(*arrays))
    lo, hi = metrics.bootstrap_ci(diff, *arrays, n_resamples=n_resamples, seed=seed, clusters=_clusters(first))
    return 100 * point, 100 * lo, 100 * hi


def verdict(expected_sign: int, point: float, lo: float, hi: float) -> str:
    """Our difference against the sign the paper reports (see the module docstring)."""
    significant = lo > 0 or hi < 0
    if point == 0 and not significant:
        return "no difference"
    same = np.sign(point) == expected_sign
    if same:
        return "agrees" if significant else "same direction, not significant"
    return "disagrees" if significant else "opposite, not significant"


@dataclass
class Claim:
    """One of the paper's claims, its evidence in the paper, our difference and the verdict."""
    section: str
    claim: str
    paper: str
    expected_sign: int
    point: float
    lo: float
    hi: float

    def row(self) -> dict:
        return {"section": self.section, "claim": self.claim, "paper": self.paper,
                "ours (points, 95% CI)": f"{self.point:+.1f} [{self.lo:+.1f}, {self.hi:+.1f}]",
                "verdict": verdict(self.expected_sign, self.point, self.lo, self.hi)}


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([c.row() for c in claims])


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
