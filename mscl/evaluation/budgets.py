"""Reading the budget axis (:mod:`mscl.pipeline.budgets` trains it): does a method's gain survive
when every method gets the training it needs, and at equal compute?

- :func:`budget_table`: one row per (budget, method, seed, stage) with ACC, the stale share and
  validation ACC (%), and the method's compute to that stage (forward-equivalent tokens through the
  backbone, :mod:`mscl.engine.compute`, summed over the stages of its chain, the shared one included);
- :func:`budget_summary`: seed means with 95% t-intervals;
- :func:`budget_figure`: ACC and the stale share at stage 2 and at the last stage against compute;
- :func:`budget_claims`: at every budget, Ours against CIT and against ``cit+matched``, PBL against
  CIT, and CIT's decline from the first stage to the last, as claims (:mod:`mscl.evaluation.claims`).
"""
from __future__ import annotations

import pandas as pd

from mscl.common.params import load_params
from mscl.core.metrics import t_quantile_975
from mscl.evaluation import claims
from mscl.evaluation.report import series_styles
from mscl.evaluation.tables import results_table
from mscl.pipeline import budgets

MEASURES = {"ACC": "ACC (%)", "stale": "stale answers (%)"}


def budget_table(profile: str, backbone: str | None = None) -> pd.DataFrame:
    """One row per (budget, method, seed, stage); stages not trained yet are trained first."""
    axis = budgets.axis(profile)
    frames = []
    for budget in axis.budgets:
        for method in sorted(axis.methods, key=lambda m: m == "cit+matched"):  # it reads ours's stages
            table = results_table(budgets.run_budget(profile, budget, method, backbone), per_seed=True)
            table = table.sort_values(["seed", "stage"])
            table["compute"] = table.groupby("seed")["compute_tokens"].cumsum()
            frames.append(table.assign(budget=budget))
    columns = ["budget", "method", "seed", "stage", "ACC", "stale", "ACC_validation", "compute"]
    return pd.concat(frames, ignore_index=True)[columns]


def budget_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Seed mean of every measure per (budget, method, stage), with a 95% t-interval (``_lo``, ``_hi``).
    The interval of a percentage is cut to the range it can take, 0 to 100: with three seeds the
    t-interval of a mean near either end reaches past it."""
    rows = []
    for (budget, method, stage), group in table.groupby(["budget", "method", "stage"], sort=False):
        row = {"budget": budget, "method": method, "stage": stage, "seeds": len(group)}
        for measure in ("ACC", "stale", "ACC_validation", "compute"):
            mean, sd, n = group[measure].mean(), group[measure].std(ddof=1), len(group)
            half = t_quantile_975(n - 1) * sd / n ** 0.5 if n > 1 else float("nan")
            lo, hi = mean - half, mean + half
            if measure != "compute":
                lo, hi = max(lo, 0.0), min(hi, 100.0)
            row.update({measure: mean, f"{measure}_lo": lo, f"{measure}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def budget_figure(summary: pd.DataFrame, stages: list[int]):
    """A grid: rows ACC and the stale share, columns ``stages``; one line per method through its
    budgets (compute on a log axis), the 95% seed interval as a band."""
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(summary["method"]))
    styles = series_styles(methods)
    fig, axes = plt.subplots(len(MEASURES), len(stages), figsize=(5.2 * len(stages), 7.4), squeeze=False,
                             sharex="col")
    for col, stage in enumerate(stages):
        for row, (measure, label) in enumerate(MEASURES.items()):
            ax = axes[row][col]
            for method in methods:
                points = summary[(summary["method"] == method) & (summary["stage"] == stage)]
                ax.plot(points["compute"], points[measure], label=method, **styles[method])
                ax.fill_between(points["compute"], points[f"{measure}_lo"], points[f"{measure}_hi"],
                                color=styles[method]["color"], alpha=0.15, linewidth=0)
            ax.set_xscale("log")
            ax.set_title(f"stage {stage}: {label}")
            ax.set_ylabel(label)
            if row == len(MEASURES) - 1:
                ax.set_xlabel("compute to this stage (forward-equivalent tokens, log scale)")
    axes[0][0].legend(title="method", fontsize=8)
    fig.suptitle("The budget axis: each point a training budget (seed mean, 95% interval band)")
    fig.tight_layout()
    return fig


def budget_claims(profile: str, backbone: str | None = None, n_resamples: int = claims.CLAIMS_BOOTSTRAP) -> list:
    """At every budget: Ours > CIT, Ours > ``cit+matched`` and PBL > CIT in ACC at stage 2 and at the
    last stage (where the axis has those methods), and CIT's ACC falling from the first stage to the
    last, each a :class:`~mscl.evaluation.claims.Claim` with its paired interval and p."""
    axis, training = budgets.axis(profile), load_params(profile, "training")
    backbone = backbone or training.backbone
    stages = budgets.budget_stages(profile)
    pairs = [("ours", "cit"), ("ours", "cit+matched"), ("pbl", "cit")]
    found = []
    for budget in axis.budgets:
        def frame(method, stage):
            return claims.stage_predictions(profile, backbone, axis.stream, method, stage,
                                            runs_root=budgets.budget_root(profile, budget), seeds=training.seeds)

        for a, b in [p for p in pairs if set(p) <= set(axis.methods)]:
            for stage in sorted({2, stages[-1]}):
                found.append(claims.Claim(f"budget {budget}", f"{a} ACC > {b} at stage {stage}",
                                          "the paper's gain", +1,
                                          *claims.paired_difference(frame(a, stage), frame(b, stage), "ACC",
                                                                    n_resamples, with_p=True)))
        if "cit" in axis.methods:
            last, first = (claims.across_stages(frame("cit", s)) for s in (stages[-1], stages[0]))
            found.append(claims.Claim(f"budget {budget}", f"CIT's ACC falls from stage {stages[0]} to {stages[-1]}",
                                      "CIT declines", -1,
                                      *claims.paired_difference(last, first, "ACC", n_resamples, with_p=True)))
    return found


def budget_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The budget-axis table as committed: per (budget, method, stage) the seed means (ACC, stale,
    validation ACC in %, compute in thousands of forward-equivalent tokens) and the seed count."""
    summary = budget_summary(table)
    out = summary[["budget", "method", "stage", "seeds", "ACC", "ACC_lo", "ACC_hi", "stale", "ACC_validation"]].copy()
    out["compute (k tokens)"] = summary["compute"] / 1e3
    return out
