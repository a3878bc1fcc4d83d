import time

import numpy as np
import pytest

from mscl.core.metrics import (
    accuracy,
    accuracy_ci,
    bootstrap_ci,
    correctness,
    is_correct,
    knowledge_gain_ratio,
    knowledge_gain_ratio_ci,
    knowledge_retention_rate,
    knowledge_retention_rate_ci,
    normalize,
    summarize,
)


def test_normalize():
    assert normalize("  Paris\n") == "paris"


def test_is_correct_case_whitespace_and_substring():
    assert is_correct("The capital is PARIS.", "  paris ")
    assert is_correct("paris", "Paris")
    assert is_correct("  answer: 42 \n", "42")
    assert not is_correct("Lyon", "Paris")
    assert not is_correct("par is", "paris")
    # substring semantics, as in the authors' script: "4" is inside "42"
    assert is_correct("42", "4")
    with pytest.raises(ValueError):
        is_correct("anything", "   ")
    with pytest.raises(ValueError):
        is_correct("anything", "")


def test_accuracy():
    preds = ["Paris", "berlin is it", "no idea", "ROME"]
    answers = ["paris", "Berlin", "Madrid", "rome"]
    assert accuracy(preds, answers) == 0.75
    assert correctness(preds, answers).tolist() == [True, True, False, True]


def test_length_mismatch_and_empty_raise():
    with pytest.raises(ValueError, match="3.*2|2.*3"):
        accuracy(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError):
        accuracy([], [])
    with pytest.raises(ValueError, match="4"):
        knowledge_gain_ratio(["a"] * 4, ["a"] * 3, ["a"] * 4)
    with pytest.raises(ValueError):
        knowledge_retention_rate([True, False], [True])
    with pytest.raises(ValueError):
        accuracy_ci(["a", "b"], ["a"])


def test_knowledge_gain_ratio_hand_case():
    answers = ["a", "b", "c", "d", "e"]
    old = ["a", "x", "x", "x", "e"]            # wrong on b, c, d
    new = ["x", "b", "c", "x", "e"]            # of those, right on b, c
    assert knowledge_gain_ratio(old, new, answers) == pytest.approx(2 / 3)


def test_knowledge_gain_ratio_zero_when_old_got_nothing_wrong():
    answers = ["a", "b"]
    assert knowledge_gain_ratio(["a", "b"], ["x", "b"], answers) == 0.0


def test_knowledge_retention_rate():
    first = [True, True, True, False, True]
    now = [True, False, True, True, False]
    assert knowledge_retention_rate(first, now) == pytest.approx(2 / 4)
    assert knowledge_retention_rate([False, False], [True, True]) == 0.0
    assert knowledge_retention_rate(np.array([True]), np.array([True])) == 1.0
    with pytest.raises(ValueError):
        knowledge_retention_rate([1, 0], [1, 1])   # flags must be booleans


def _fake_eval(n, p_old, p_new, seed):
    rng = np.random.default_rng(seed)
    answers = [f"answer {i}" for i in range(n)]
    old = [a if rng.random() < p_old else "wrong" for a in answers]
    new = [a if rng.random() < p_new else "wrong" for a in answers]
    return old, new, answers


def test_bootstrap_ci_contains_estimate_deterministic_and_narrows():
    old, new, answers = _fake_eval(2000, 0.4, 0.7, seed=1)
    acc = accuracy(new, answers)
    lo, hi = accuracy_ci(new, answers, n_resamples=500, seed=3)
    assert 0.0 <= lo <= acc <= hi <= 1.0
    assert accuracy_ci(new, answers, n_resamples=500, seed=3) == (lo, hi)
    assert accuracy_ci(new, answers, n_resamples=500, seed=4) != (lo, hi)

    kgr = knowledge_gain_ratio(old, new, answers)
    klo, khi = knowledge_gain_ratio_ci(old, new, answers, n_resamples=500, seed=3)
    assert klo <= kgr <= khi

    small_lo, small_hi = accuracy_ci(new[:100], answers[:100], n_resamples=500, seed=3)
    assert (hi - lo) < (small_hi - small_lo)


def test_knowledge_retention_rate_ci():
    rng = np.random.default_rng(0)
    first = rng.random(1000) < 0.8
    now = first & (rng.random(1000) < 0.6)
    krr = knowledge_retention_rate(first, now)
    lo, hi = knowledge_retention_rate_ci(first, now, n_resamples=300, seed=0)
    assert lo <= krr <= hi
    assert 0.55 < krr < 0.65


def test_bootstrap_ci_generic_and_confidence():
    values = np.arange(100, dtype=float)
    wide = bootstrap_ci(lambda x: x.mean(axis=-1), values, n_resamples=400, confidence=0.99)
    narrow = bootstrap_ci(lambda x: x.mean(axis=-1), values, n_resamples=400, confidence=0.5)
    assert wide[0] < narrow[0] < 49.5 < narrow[1] < wide[1]
    with pytest.raises(ValueError):
        bootstrap_ci(lambda x: x.mean(axis=-1), values, confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci(lambda x: x.mean(), values)    # not vectorised over resamples


def test_summarize_keys_and_speed():
    old, new, answers = _fake_eval(6000, 0.3, 0.6, seed=2)
    start = time.perf_counter()
    result = summarize(old, new, answers, n_resamples=1000, seed=0)
    assert time.perf_counter() - start < 1.0
    assert set(result) == {"acc", "acc_lo", "acc_hi", "kgr", "kgr_lo", "kgr_hi", "n"}
    assert result["n"] == 6000
    assert result["acc"] == accuracy(new, answers)
    assert result["kgr"] == knowledge_gain_ratio(old, new, answers)
    assert result["acc_lo"] <= result["acc"] <= result["acc_hi"]
    assert result["kgr_lo"] <= result["kgr"] <= result["kgr_hi"]
    assert summarize(old, new, answers, n_resamples=1000, seed=0) == result


def test_cluster_bootstrap_keeps_a_questions_rows_together():
    from mscl.core.metrics import resample_indices

    rng = np.random.default_rng(0)
    labels = np.array(["q1", "q2", "q3"] * 2)  # 3 questions x 2 seeds, seed-major as the claims have them
    idx = resample_indices(rng, 6, 200, labels)
    assert idx.shape == (200, 6)
    for row in idx:
        drawn = labels[row]
        for q in ("q1", "q2", "q3"):  # a drawn question comes with both its seeds' rows
            assert (drawn == q).sum() % 2 == 0
    with pytest.raises(ValueError, match="one size"):
        resample_indices(rng, 3, 10, ["a", "a", "b"])
