"""Continual-learning metrics (accuracy matrix, ACC/BWT/forgetting) and the answer-source report."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from mscl.core.metrics import accuracy_matrix, continual_summary
from mscl.evaluation.report import accuracy_matrix_heatmap, answer_source_figure, answer_source_table

nan = np.nan


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- accuracy_matrix
def test_accuracy_matrix_hand_example_has_nan_above_the_diagonal():
    correct_by_stage = {
        1: [(1, True), (1, True), (1, False), (1, True)],                  # 3/4
        2: [(1, True), (1, False), (2, True), (2, True)],                  # 1/2, 2/2
        3: [(1, False), (1, False), (2, True), (2, False), (3, True)],     # 0/2, 1/2, 1/1
    }
    R = accuracy_matrix(correct_by_stage, stages=[1, 2, 3])
    expected = np.array([[0.75, nan, nan], [0.5, 1.0, nan], [0.0, 0.5, 1.0]])
    np.testing.assert_allclose(R, expected)
    assert np.isnan(R[np.triu_indices(3, k=1)]).all()


def test_accuracy_matrix_follows_the_order_of_stages_and_leaves_missing_cells_nan():
    R = accuracy_matrix({20: [(10, True), (20, False)], 10: [(10, False)]}, stages=[10, 20, 30])
    np.testing.assert_allclose(R, [[0.0, nan, nan], [1.0, 0.0, nan], [nan, nan, nan]])


@pytest.mark.parametrize("correct_by_stage, stages, match", [
    ({1: [(2, True)]}, [1, 2], "origin stage 2"),        # an item from the future
    ({1: [(7, True)]}, [1, 2], "origin stage 7"),        # an unknown origin
    ({9: [(1, True)]}, [1, 2], "trained stage 9"),       # an unknown trained stage
    ({1: [(1, True)]}, [1, 1], "repeat"),
])
def test_accuracy_matrix_rejects_inconsistent_input(correct_by_stage, stages, match):
    with pytest.raises(ValueError, match=match):
        accuracy_matrix(correct_by_stage, stages)


# --------------------------------------------------------------------------- continual_summary
def test_continual_summary_hand_values():
    R = np.array([[0.9, nan, nan], [0.6, 0.8, nan], [0.5, 0.7, 0.9]])
    summary = continual_summary(R)
    assert summary["A"] == pytest.approx(0.7)
    assert summary["BWT"] == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)   # -0.25
    assert summary["F"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)     # 0.25
    assert summary["A_by_stage"] == pytest.approx([0.9, 0.7, 0.7])


def test_forgetting_takes_the_best_earlier_accuracy_not_the_diagonal():
    # stage 0's items: 0.6 when learned, 0.9 after stage 1, 0.5 at the end -> f_0 = 0.9 - 0.5
    R = np.array([[0.6, nan, nan], [0.9, 0.8, nan], [0.5, 0.8, 0.7]])
    summary = continual_summary(R)
    assert summary["F"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.8)) / 2)
    assert summary["BWT"] == pytest.approx(((0.5 - 0.6) + (0.8 - 0.8)) / 2)


def test_no_forgetting_gives_non_negative_bwt_and_zero_forgetting():
    kept = np.array([[0.8, nan, nan], [0.8, 0.6, nan], [0.8, 0.6, 0.7]])
    summary = continual_summary(kept)
    assert summary["BWT"] >= 0
    assert summary["F"] == pytest.approx(0.0)
    improved = np.array([[0.5, nan], [0.7, 0.6]])   # the old items get better: positive transfer
    assert continual_summary(improved)["BWT"] == pytest.approx(0.2)
    assert continual_summary(improved)["F"] == pytest.approx(-0.2)


def test_continual_summary_ignores_nan_cells_and_handles_one_stage():
    R = np.array([[0.9, nan, nan], [nan, 0.8, nan], [0.5, nan, 0.9]])   # stage 1's items not re-evaluated
    summary = continual_summary(R)
    assert summary["A"] == pytest.approx(0.7)
    assert summary["BWT"] == pytest.approx(0.5 - 0.9)
    assert summary["F"] == pytest.approx(0.9 - 0.5)
    single = continual_summary(np.array([[0.4]]))
    assert single["A"] == pytest.approx(0.4)
    assert np.isnan(single["BWT"]) and np.isnan(single["F"])
    with pytest.raises(ValueError, match="square"):
        continual_summary(np.zeros((2, 3)))


# --------------------------------------------------------------------------- answer_source_table
def _rows(method, stage, seed, sources):
    return pd.DataFrame({"method": method, "stage": stage, "seed": seed, "source": list(sources)})


def test_answer_source_table_percentages_and_seed_sd():
    rows = pd.concat([
        _rows("mocl", 2, 0, ["current", "current", "stale", "neither"]),   # 50 / 25 / 25
        _rows("mocl", 2, 1, ["current", "current", "current", "stale"]),   # 75 / 25 / 0
        _rows("cit", 2, 0, ["stale", "stale"]),                            # 0 / 100 / 0
        _rows("cit", 1, 0, ["current", "neither"]),                        # 50 / 0 / 50
    ], ignore_index=True)
    table = answer_source_table(rows)
    assert list(zip(table["method"], table["stage"])) == [("mocl", 2), ("cit", 1), ("cit", 2)]
    mocl = table.iloc[0]
    assert (mocl["current"], mocl["stale"], mocl["neither"]) == pytest.approx((62.5, 25.0, 12.5))
    assert mocl["current_sd"] == pytest.approx(np.std([50, 75], ddof=1))
    assert mocl["stale_sd"] == pytest.approx(0.0)
    assert mocl["neither_sd"] == pytest.approx(np.std([25, 0], ddof=1))
    assert mocl["n_seeds"] == 2
    cit2 = table.iloc[2]
    assert (cit2["current"], cit2["stale"], cit2["neither"]) == pytest.approx((0.0, 100.0, 0.0))
    assert np.isnan(cit2[["current_sd", "stale_sd", "neither_sd"]].astype(float)).all()
    np.testing.assert_allclose(table[["current", "stale", "neither"]].sum(axis=1), 100.0)


def test_answer_source_table_rejects_unknown_sources():
    with pytest.raises(ValueError, match="unknown answer sources"):
        answer_source_table(_rows("cit", 1, 0, ["current", "old"]))


# --------------------------------------------------------------------------- figures
def test_answer_source_figure_has_one_panel_per_method():
    rows = pd.concat([_rows(m, s, seed, ["current", "stale", "neither", "current"][: 2 + seed + s])
                      for m in ("cit", "mocl", "ours") for s in (1, 2) for seed in (0, 1)],
                     ignore_index=True)
    table = answer_source_table(rows)
    fig = answer_source_figure(table, title="answer sources")
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["cit", "mocl", "ours"]
    assert fig.axes[0].get_ylim() == (0, 100)
    assert fig.axes[0].get_ylabel() == "% of evaluation items"
    assert fig.legends and [t.get_text() for t in fig.legends[0].get_texts()] == ["current", "stale", "neither"]
    fig.canvas.draw()
    # without sd columns, and a chosen subset of methods
    no_sd = table[["method", "stage", "current", "stale", "neither"]]
    assert len(answer_source_figure(no_sd, methods=["ours"]).axes) == 1
    with pytest.raises(ValueError, match="not in the table"):
        answer_source_figure(no_sd, methods=["nope"])


def test_accuracy_matrix_heatmap_labels_annotations_and_blank_nan():
    R = np.array([[0.9, nan, nan], [0.6, 0.8, nan], [0.5, 0.7, 0.9]])
    sd = np.full_like(R, 0.012)
    labels = ["medicine", "law", "finance"]
    ax = accuracy_matrix_heatmap(R, labels, title="R", sd=sd)
    ax.figure.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert ax.get_xlabel() == "evaluated on: domain j's facts"
    assert ax.get_ylabel() == "after stage k"
    texts = sorted(t.get_text() for t in ax.texts)
    assert len(texts) == 6 and "90.0±1.2" in texts and "50.0±1.2" in texts   # six finite cells only
    assert ax.collections[0].colorbar.ax.get_ylabel() == "ACC (%)"
    _, given = plt.subplots()
    assert accuracy_matrix_heatmap(R, labels, ax=given) is given
    with pytest.raises(ValueError, match="one label per stage"):
        accuracy_matrix_heatmap(R, labels[:2])


def test_continual_difference_matches_the_accuracy_matrix_and_is_paired():
    import pandas as pd

    from mscl.core.metrics import accuracy_matrix, continual_summary
    from mscl.evaluation import claims

    rng = np.random.default_rng(0)
    stages, rows = [1, 2, 3], []
    for seed in (0, 1):
        for fact in range(30):
            origin = stages[fact % 3]
            for wording in range(2):
                row = {"seed": seed, "id": f"f{fact}#{wording}", "fact_id": f"f{fact}", "origin": origin}
                row.update({k: (float(rng.random() < 0.8 - 0.2 * (k - origin)) if k >= origin else np.nan)
                            for k in stages})
                rows.append(row)
    a = pd.DataFrame(rows).set_index(["seed", "id"])
    b = a.copy()
    b[stages] = b[stages].where(b[stages].isna(), 1.0)  # a method that never forgets
    pooled = {k: [(r.origin, bool(getattr(r, f"_{i + 3}"))) for r in a.itertuples() if r.origin <= k]
              for i, k in enumerate(stages)}
    summary = continual_summary(accuracy_matrix(pooled, stages))
    for measure in ("A", "BWT", "F"):
        point, lo, hi = claims.continual_difference(a, a.copy(), measure, n_resamples=200)
        assert (point, lo, hi) == (0.0, 0.0, 0.0)  # paired: the same rows give exactly no difference
        point, lo, hi = claims.continual_difference(a, b, measure, n_resamples=500)
        perfect = {"A": 1.0, "BWT": 0.0, "F": 0.0}[measure]
        assert point == pytest.approx(100 * (summary[measure] - perfect))
        assert lo <= point <= hi
