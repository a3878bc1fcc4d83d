"""The claims' statistics: hierarchical bootstrap over seeds then facts, p-values, Holm's adjustment."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mscl.evaluation import claims as C


def _frame(seeds, n_facts, new, old=lambda s, f, q: False, questions=lambda f: 1):
    """Rows of (seed, question) like :func:`mscl.evaluation.claims.stage_predictions` returns, indexed by
    (seed, id), with ``fact_id``: ``n_facts`` facts of ``questions(f)`` questions each under every
    seed; ``new(s, f, q)`` and ``old(s, f, q)`` give the correctness of each row."""
    rows = [{"seed": s, "id": f"f{f}/q{q}", "fact_id": f"f{f}", "new_ok": bool(new(s, f, q)),
             "old_ok": bool(old(s, f, q))}
            for s in seeds for f in range(n_facts) for q in range(questions(f))]
    return pd.DataFrame(rows).set_index(["seed", "id"])


def _labels(frame):
    return frame.index.get_level_values("seed").to_numpy(), frame["fact_id"].to_numpy()


def test_weights_draw_whole_facts_and_s_seeds_worth_of_them():
    frame = _frame([0, 1, 2], 20, new=lambda s, f, q: True, questions=lambda f: 1 + f % 3)
    seeds, facts = _labels(frame)
    weights = C.resample_weights(seeds, facts, 300, np.random.default_rng(0))
    assert weights.shape == (300, len(frame)) and weights.dtype.kind == "i" and weights.min() >= 0
    clusters = frame.groupby(["seed", "fact_id"]).indices  # rows of each (seed, fact)
    per_cluster = np.stack([weights[:, rows[0]] for rows in clusters.values()], axis=1)
    for rows, column in zip(clusters.values(), per_cluster.T):
        assert (weights[:, rows] == column[:, None]).all()  # every question of a drawn fact comes along
    assert (per_cluster.sum(axis=1) == 3 * 20).all()  # S seeds' worth of facts in every resample
    seed_of_cluster = np.array([s for s, _ in clusters])
    for s in (0, 1, 2):  # each seed is drawn m times (0..3) and then contributes m * 20 facts
        drawn = per_cluster[:, seed_of_cluster == s].sum(axis=1)
        assert set(np.unique(drawn)) <= {0, 20, 40, 60}
    assert np.array_equal(weights, C.resample_weights(seeds, facts, 300, np.random.default_rng(0)))


def test_one_seed_one_row_per_fact_is_a_plain_row_bootstrap():
    n = 200
    frame = _frame([7], n, new=lambda s, f, q: f % 4 != 0)  # ACC 75%
    weights = C.resample_weights(*_labels(frame), 4000, np.random.default_rng(1))
    assert (weights.sum(axis=1) == n).all()  # Multinomial(n, uniform): n rows drawn with replacement
    # a row's weight is Binomial(n, 1/n): mean 1, variance 1 - 1/n
    assert weights.mean() == pytest.approx(1.0)
    assert weights.var() == pytest.approx(1 - 1 / n, rel=0.05)
    acc = C.weighted_acc(weights, frame["new_ok"].to_numpy(), frame["old_ok"].to_numpy())
    assert acc.mean() == pytest.approx(0.75, abs=0.005)
    assert acc.std() == pytest.approx(np.sqrt(0.75 * 0.25 / n), rel=0.1)


def test_point_estimates_pool_seeds_and_rows():
    # 10 facts of 1, 2 or 3 questions (19 rows a seed): seed 0 answers all 19, seed 1 only the first
    # question of each fact (10): 29 of 38 rows
    frame = _frame([0, 1], 10, new=lambda s, f, q: s == 0 or q == 0, questions=lambda f: 1 + f % 3)
    wrong = _frame([0, 1], 10, new=lambda s, f, q: False, questions=lambda f: 1 + f % 3)
    assert len(frame) == 38
    point, lo, hi = C.paired_difference(frame, wrong, "ACC", n_resamples=200)
    assert point == pytest.approx(100 * 29 / 38)
    assert lo <= point <= hi
    kgr, _, _ = C.paired_difference(frame, wrong, "KGR", n_resamples=50)
    assert kgr == pytest.approx(point)  # every old answer is wrong: KGR is ACC


def test_paired_difference_of_a_frame_with_itself_is_exactly_zero():
    frame = _frame([0, 1, 2], 30, new=lambda s, f, q: (s + f + q) % 3 == 0, questions=lambda f: 1 + f % 3)
    for metric in ("ACC", "KGR"):
        assert C.paired_difference(frame, frame.copy(), metric, n_resamples=300) == (0.0, 0.0, 0.0)
        with_p = C.paired_difference(frame, frame.copy(), metric, n_resamples=300, with_p=True)
        assert with_p[:4] == (0.0, 0.0, 0.0, 1.0)
    assert C.krr_difference(frame, frame, frame.copy(), n_resamples=300, with_p=True)[:4] == (0.0, 0.0, 0.0, 1.0)
    # unpaired: the two sides are drawn independently, so the interval is not [0, 0]
    point, lo, hi = C.unpaired_difference(frame, frame.copy(), "ACC", n_resamples=300)
    assert point == 0.0 and lo < 0 < hi


def test_an_obvious_difference_is_significant():
    right = _frame([0, 1, 2], 50, new=lambda s, f, q: True)
    wrong = _frame([0, 1, 2], 50, new=lambda s, f, q: False)
    for diff in (C.paired_difference(right, wrong, "ACC", n_resamples=1000, with_p=True),
                 C.unpaired_difference(right, wrong, "ACC", n_resamples=1000, with_p=True),
                 C.krr_difference(right, right, wrong, n_resamples=1000, with_p=True)):
        assert isinstance(diff, C.Difference)
        assert diff.point == 100.0 and diff.lo > 0 and diff.p < 0.01
        assert diff.p == pytest.approx(2 / 1001)  # the +1 correction: never 0
    reverse = C.paired_difference(wrong, right, "ACC", n_resamples=1000, with_p=True)
    assert reverse.hi < 0 and reverse.p < 0.01


def test_seed_to_seed_variation_widens_the_interval():
    wrong = _frame([0, 1, 2], 60, new=lambda s, f, q: False)
    agree = _frame([0, 1, 2], 60, new=lambda s, f, q: f % 2 == 0)  # 50% under every seed
    rates = {0: 0.9, 1: 0.1, 2: 0.5}  # 90%, 10% and 50%: pooled 50% too
    disagree = _frame([0, 1, 2], 60, new=lambda s, f, q: f < rates[s] * 60)
    (p_agree, lo_agree, hi_agree), (p_disagree, lo_disagree, hi_disagree) = (
        C.paired_difference(frame, wrong, "ACC", n_resamples=1000) for frame in (agree, disagree))
    assert p_agree == p_disagree == pytest.approx(50.0)
    assert hi_disagree - lo_disagree > 2 * (hi_agree - lo_agree)


def test_bootstrap_p_counts_both_tails_with_the_plus_one_correction():
    assert C.bootstrap_p(np.array([1.0, 2.0, 3.0, -1.0])) == pytest.approx(2 * 2 / 5)
    assert C.bootstrap_p(np.arange(1.0, 10.0)) == pytest.approx(2 * 1 / 10)
    assert C.bootstrap_p(np.zeros(9)) == 1.0


def test_holm_adjust_hand_example():
    np.testing.assert_allclose(C.holm_adjust([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(C.holm_adjust([0.5, 0.6]), [1.0, 1.0])  # capped at 1, monotone in rank
    assert C.holm_adjust([]).shape == (0,)
    with pytest.raises(ValueError):
        C.holm_adjust([0.5, 1.5])


def test_claims_table_adds_holm_columns():
    claims = [C.Claim("s", "a", "paper", +1, 5.0, 1.0, 9.0, 0.01),
              C.Claim("s", "b", "paper", +1, 4.0, 0.5, 8.0, 0.04),
              C.Claim("s", "c", "paper", -1, 3.0, 0.5, 6.0, 0.03),
              C.Claim("s", "d", "paper", +1, 6.0, 2.0, 10.0, 0.005),
              C.Claim("s", "e", "paper", +1, 0.0, -1.0, 1.0)]  # no p: outside the family
    table = C.claims_table(claims)
    assert list(table.columns) == ["section", "claim", "paper", "ours (points, 95% CI)", "verdict", "p",
                                   "p (Holm)", "ours (points, Holm CI)", "verdict (Holm)"]
    assert list(table["verdict"]) == ["agrees", "agrees", "disagrees", "agrees", "no difference"]
    assert list(table["p"]) == ["0.010", "0.040", "0.030", "0.005", "—"]
    assert list(table["p (Holm)"]) == ["0.030", "0.060", "0.060", "0.020", "—"]
    assert list(table["verdict (Holm)"]) == ["agrees", "same direction, not significant",
                                             "opposite, not significant", "agrees", "—"]


def test_claims_bootstrap_leaves_room_for_holm_over_the_whole_family():
    # the smallest bootstrap p-value, times the family size, must be far below 0.05
    assert C.HOLM_FAMILY_MAX * 2 / (C.CLAIMS_BOOTSTRAP + 1) < 0.005


def test_holm_intervals_agree_with_the_holm_verdicts():
    """Each claim's Holm interval excludes 0 exactly when its adjusted p is below 0.05 (up to one
    draw), and a claim Holm does not reject has an interval at least as wide as its raw one."""
    rng = np.random.default_rng(0)
    claims = []
    for k, shift in enumerate([0.4, 1.0, 1.6, 2.0, 2.4, 3.0, 3.5, 5.0]):
        draws = rng.normal(shift, 1.0, 40_000)
        lo, hi = np.quantile(draws, [0.025, 0.975])
        claims.append(C.Claim("s", f"claim {k}", "paper", +1, float(shift), float(lo), float(hi),
                              C.bootstrap_p(draws), draws))
    table = C.claims_table(claims)
    adjusted = C.holm_adjust([c.p for c in claims])
    for c, p_holm, (_, row) in zip(claims, adjusted, table.iterrows()):
        lo, hi = (float(v) for v in row["ours (points, Holm CI)"].split("[")[1].rstrip("]").split(","))
        assert (row["verdict (Holm)"] == "agrees") == (lo > 0 or hi < 0)
        if abs(p_holm - 0.05) > 0.002:  # away from the edge the two definitions coincide
            assert (p_holm < 0.05) == (row["verdict (Holm)"] == "agrees"), (c.claim, p_holm, row)
        assert hi - lo >= (c.hi - c.lo) - 0.2
    assert set(table["verdict (Holm)"]) == {"agrees", "same direction, not significant"}
