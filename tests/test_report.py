"""Shared stages, the reproduce plan and the claim statistics of the report (notebook 08)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mscl import claims as C
from mscl.params import load_params
from mscl.reproduce import stage_jobs


def _frame(new, old=None):
    new = np.asarray(new, bool)
    old = np.zeros_like(new) if old is None else np.asarray(old, bool)
    return pd.DataFrame({"new_ok": new, "old_ok": old}, index=[f"q{i}" for i in range(len(new))])


def test_paired_difference_matches_hand_values_and_is_seeded():
    a = _frame([1, 1, 1, 0], old=[1, 0, 0, 0])
    b = _frame([1, 0, 0, 0], old=[1, 0, 0, 0])
    point, lo, hi = C.paired_difference(a, b, "ACC", n_resamples=500, seed=3)
    assert point == pytest.approx(50.0)
    assert lo <= point <= hi
    assert (point, lo, hi) == C.paired_difference(a, b, "ACC", n_resamples=500, seed=3)
    # KGR: a gains 2 of its 3 old-wrong items, b none of 3
    kgr, _, _ = C.paired_difference(a, b, "KGR", n_resamples=50)
    assert kgr == pytest.approx(100 * 2 / 3)


def test_paired_difference_of_identical_sides_is_exactly_zero():
    a = _frame([1, 0, 1, 1, 0, 1])
    assert C.paired_difference(a, a.copy(), "ACC", n_resamples=200) == (0.0, 0.0, 0.0)


def test_paired_difference_needs_the_same_items():
    with pytest.raises(ValueError, match="same items"):
        C.paired_difference(_frame([1, 0]), _frame([1, 0, 1]), "ACC")


def test_krr_difference_counts_only_items_right_after_stage_one():
    first = _frame([1, 1, 0, 0])
    a, b = _frame([1, 1, 1, 1]), _frame([1, 0, 1, 1])
    point, _, _ = C.krr_difference(first, a, b, n_resamples=100)
    assert point == pytest.approx(50.0)  # 2/2 kept against 1/2


@pytest.mark.parametrize("sign, point, lo, hi, expected", [
    (+1, 5.0, 1.0, 9.0, "agrees"),
    (+1, 5.0, -1.0, 9.0, "same direction, not significant"),
    (+1, -5.0, -9.0, 1.0, "opposite, not significant"),
    (+1, -5.0, -9.0, -1.0, "disagrees"),
    (-1, -5.0, -9.0, -1.0, "agrees"),
    (+1, 0.0, 0.0, 0.0, "no difference"),
])
def test_verdicts(sign, point, lo, hi, expected):
    assert C.verdict(sign, point, lo, hi) == expected


def test_paper_deltas_read_the_transcribed_tables():
    paper = C.paper_results()
    # Llama3-8B stage 2: Ours ACC 83.90 vs CIT 49.90 (the slides' table)
    text = C.paper_main_delta(paper["main"], "ACC", ("Ours", 2), ("CIT", 2))
    assert text.startswith("+ in 4/4 backbones")
    assert "+34.0" in text
    assert C.paper_ablation_delta(paper["ablations"], "pbl", "ACC", "PBL (Ours)", "CIT").startswith("+10.2")
    assert C.paper_ablation_delta(paper["ablations"], "pbl", "ACC", "nope", "CIT") == "not in the paper's table"


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_reproduce_plan_trains_every_stage_the_notebooks_read(profile):
    shared, own = stage_jobs(profile, None)
    training = load_params(profile, "training")
    assert {(j.stream, j.method, j.stage) for j in shared} == {("domain_independent", "cit", 1),
                                                              ("cross_domain", "cit", 1)}
    planned = {(j.stream, j.method): j.stage for j in own}
    for name in ("04_domain_independent", "05_cross_domain", "07_retention"):
        nb = load_params(profile, name)
        for method in nb.methods:
            assert planned[(nb.stream, method)] >= 5, (name, method)
    ablations = load_params(profile, "06_ablations")
    for methods in ablations.tables.values():
        for method in methods:
            assert planned[(ablations.stream, method)] >= ablations.stage
    backbones = {training.backbone, *load_params(profile, "04_domain_independent").backbones}
    assert {j.backbone for j in shared + own} <= backbones
    assert len(set(own)) == len(own)


def test_a_shared_stage_is_cits_and_every_method_starts_from_it(scratch):
    from mscl.stages import run_stage

    params = load_params("smoke", "training")
    assert params.shared_stages == 1
    cit = run_stage("smoke", "domain_independent", "cit", 2, params=params, verbose=False)
    pbl_first = run_stage("smoke", "domain_independent", "pbl", 1, params=params, verbose=False)
    assert pbl_first["trained_by"] == "cit" and pbl_first["method"] == "pbl"
    assert pbl_first["config_hash"] == run_stage("smoke", "domain_independent", "cit", 1, params=params,
                                                 verbose=False)["config_hash"]
    assert not (scratch / "runs" / "smoke" / "tiny-random" / "domain_independent" / "pbl" / "stage1").exists()
    run_stage("smoke", "domain_independent", "pbl", 2, params=params, verbose=False)
    # both stage-2 runs start from the same model: the old model's answers are the same
    old_cit = C.stage_predictions("smoke", "tiny-random", "domain_independent", "cit", 2)["old_prediction"]
    old_pbl = C.stage_predictions("smoke", "tiny-random", "domain_independent", "pbl", 2)["old_prediction"]
    assert old_cit.equals(old_pbl)
    assert cit["metrics"]["eval"]["acc_old"] is not None
