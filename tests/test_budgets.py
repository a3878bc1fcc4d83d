"""The budget axis (mscl/pipeline/budgets.py, mscl/evaluation/budgets.py) on the smoke profile."""
from __future__ import annotations

import matplotlib

from mscl.__main__ import main as cli
from mscl.common.params import load_params
from mscl.evaluation import budgets as reading
from mscl.pipeline import budgets

matplotlib.use("Agg")


def test_every_method_trains_at_every_budget_and_compute_grows_with_it(scratch):
    axis = load_params("smoke", "04b_budget_axis")
    assert cli(["budget", "--profile", "smoke", "--budget", "e1", "--method", "cit"]) == 0
    table = reading.budget_table("smoke")
    seeds = load_params("smoke", "training").seeds
    assert len(table) == len(axis.budgets) * len(axis.methods) * len(seeds) * axis.stages
    assert table[["ACC", "stale", "ACC_validation", "compute"]].notna().all().all()
    cit = table[(table["method"] == "cit") & (table["stage"] == axis.stages)].set_index("budget")["compute"]
    assert list(cit) == sorted(cit) and cit.iloc[0] < cit.iloc[-1]  # more epochs, more tokens
    # ours samples, rewrites and selects: it computes more than cit+matched at the same budget
    at = table[(table["budget"] == "e1") & (table["stage"] == axis.stages)].set_index("method")["compute"]
    assert at["ours"] > at["cit+matched"] >= at["cit"]
    summary = reading.budget_summary(table)
    assert set(summary["budget"]) == set(axis.budgets) and (summary["seeds"] == len(seeds)).all()
    figure = reading.budget_figure(summary, [2])
    assert [ax.get_xscale() for ax in figure.axes] == ["log", "log"]
    assert all(len(ax.get_lines()) == len(axis.methods) for ax in figure.axes)
    found = reading.budget_claims("smoke", n_resamples=200)
    assert len(found) == len(axis.budgets) * 4  # three comparisons at stage 2, and CIT's decline
    assert all(c.draws is not None for c in found)
    assert budgets.budget_root("smoke", "e2").is_dir()


def test_a_percentage_interval_stays_between_0_and_100():
    import pandas as pd

    rows = [{"budget": "e8", "method": "cit", "stage": 1, "ACC": acc, "stale": stale, "ACC_validation": 90.0,
             "compute": 1e5 + acc} for acc, stale in ((100.0, 0.0), (83.3, 4.0), (100.0, 0.0))]
    summary = reading.budget_summary(pd.DataFrame(rows)).iloc[0]
    assert summary["ACC_hi"] == 100.0 and summary["stale_lo"] == 0.0  # the raw t-interval passes both ends
    assert summary["ACC_lo"] < summary["ACC"] < summary["ACC_hi"] and summary["compute_hi"] > 1e5 + 100
    assert summary["ACC_validation_lo"] == summary["ACC_validation_hi"] == 90.0  # no spread, no width
