"""Dynamic data selection: the mutual information reading, the LLM indication, random and dynamic selection."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from mscl.core.selection import (
    answer_overlap,
    dynamic_selection,
    keep_count,
    llm_indication,
    mi_threshold,
    mutual_information,
    random_selection,
    select_candidates,
    word_tokens,
)

X = "What is the chemical symbol of iron?"


def test_mi_of_a_text_with_itself_exceeds_mi_with_an_unrelated_text():
    paraphrase = "Which chemical symbol does iron have?"
    unrelated = "How many legs does a spider have?"
    assert mutual_information(X, X) > mutual_information(paraphrase, X) > mutual_information(unrelated, X)
    assert mutual_information("Which currency is used in Japan?", X) < mutual_information(paraphrase, X)


def test_mi_matches_a_hand_computed_example():
    # p'(the) = p'(cat) = 1/3, p(the) = p(cat) = 1/4; m = min = 1/4 for both shared words:
    # MI = 2 * 1/4 * log((1/4) / (1/3 * 1/4)) = (1/2) log 3
    assert mutual_information("the cat sat", "the cat ran away") == pytest.approx(0.5 * math.log(3))
    assert mutual_information("the cat ran away", "the cat sat") == pytest.approx(0.5 * math.log(3))  # symmetric
    # repeated words: x' = "a a b" (p' a 2/3, b 1/3), x = "a b b b" (p a 1/4, b 3/4)
    # a: m = 1/4, 1/4 log((1/4)/(2/3*1/4)) = 1/4 log(3/2); b: m = 1/3, 1/3 log((1/3)/(1/3*3/4)) = 1/3 log(4/3)
    expected = 0.25 * math.log(1.5) + (1 / 3) * math.log(4 / 3)
    assert mutual_information("A a, b.", "a b b b") == pytest.approx(expected)


def test_mi_limits():
    text = "to be or not to be"
    p = [2 / 6, 2 / 6, 1 / 6, 1 / 6]
    assert mutual_information(text, text) == pytest.approx(-sum(q * math.log(q) for q in p))  # H(x)
    assert mutual_information("alpha beta", "gamma delta") == 0.0
    assert mutual_information("", X) == 0.0 and mutual_information(X, "?!") == 0.0
    assert word_tokens("Sulfur-32's NUCLEUS?") == ["sulfur", "32", "s", "nucleus"]


def test_keep_count_rounds_to_nearest_with_halves_up():
    assert [keep_count(8, f) for f in (0.5, 0.25, 0.125)] == [4, 2, 1]
    assert keep_count(4, 0.125) == 1      # 0.5 rounds up
    assert keep_count(10, 0.25) == 3      # 2.5 rounds up (Python's round would give 2)
    assert keep_count(3, 0.125) == 0
    assert keep_count(7, 1.0) == 7 and keep_count(7, 0.0) == 0
    with pytest.raises(ValueError):
        keep_count(5, 1.5)


@pytest.mark.parametrize("fraction", [0.5, 0.25, 0.125])
def test_random_selection_keeps_exactly_the_fraction_and_is_seeded(fraction):
    for n in range(0, 41):
        items = [f"x{i}" for i in range(n)]
        kept = random_selection(items, fraction, seed=3)
        assert len(kept) == keep_count(n, fraction)
        assert kept == [x for x in items if x in set(kept)]  # a subset, in input order
    items = [f"x{i}" for i in range(40)]
    assert random_selection(items, fraction, seed=1) == random_selection(items, fraction, seed=1)
    assert random_selection(items, fraction, seed=1) != random_selection(items, fraction, seed=2)


def test_mi_threshold_and_dynamic_selection():
    scores = [0.1, 0.5, 1.0, 2.0, 3.0]
    assert mi_threshold(scores, 0.0, 0.0) == 0.0
    assert mi_threshold(scores, 0.25, 0.0) == pytest.approx(0.5)   # numpy's linear quantile
    assert mi_threshold(scores, 0.25, 0.8) == 0.8
    reasons = dynamic_selection(scores, [True, True, False, True, True], quantile=0.25, minimum=0.0)
    assert reasons == ["low_mi", None, "no_indication", None, None]
    assert dynamic_selection(scores, None, quantile=0.25, minimum=0.0) == ["low_mi", None, None, None, None]
    assert dynamic_selection(scores, [True] * 5, quantile=0.25, minimum=0.0) == reasons[:2] + [None, None, None]


def _candidates():
    out = []
    for strategy in ("bki", "pa"):
        for i in range(8):
            out.append(SimpleNamespace(strategy=strategy, round=1, reason="copy" if i == 0 else None,
                                       mi=float(i), indication=i % 3 != 0, selection=None, kept=False))
    return out


def test_select_candidates_modes():
    cands = _candidates()
    select_candidates(cands, "all", keep_fraction=1.0, quantile=0.0, minimum=0.0, use_indication=False, seed=0)
    assert [c.kept for c in cands] == [c.reason is None for c in cands]

    select_candidates(cands, "random", keep_fraction=0.5, quantile=0.0, minimum=0.0, use_indication=False, seed=0)
    for strategy in ("bki", "pa"):  # 7 usable per group: round(3.5) = 4 kept each
        group = [c for c in cands if c.strategy == strategy]
        assert sum(c.kept for c in group) == 4
        assert {c.selection for c in group if c.reason is None and not c.kept} == {"random"}
        assert not group[0].kept and group[0].selection is None  # degenerate: never selected

    select_candidates(cands, "dynamic", keep_fraction=1.0, quantile=0.5, minimum=0.0, use_indication=True, seed=0)
    first = [(c.kept, c.selection) for c in cands]
    # usable MI 1..7, median 4: 1-3 low_mi; 4..7 need the indication (i % 3 != 0: 6 fails)
    assert [c.kept for c in cands[:8]] == [False, False, False, False, True, True, False, True]
    assert cands[6].selection == "no_indication" and cands[2].selection == "low_mi"
    select_candidates(cands, "dynamic", keep_fraction=1.0, quantile=0.5, minimum=0.0, use_indication=True, seed=9)
    assert [(c.kept, c.selection) for c in cands] == first  # deterministic, whatever the seed
    with pytest.raises(ValueError, match="unknown selection mode"):
        select_candidates(cands, "best", keep_fraction=1.0, quantile=0.0, minimum=0.0, use_indication=False, seed=0)


def test_answer_overlap_is_token_f1():
    assert answer_overlap("The capital is Paris.", "the capital is paris") == 1.0
    # common {the, capital, is} = 3; P = 3/4, R = 3/5: F1 = 2 * 0.75 * 0.6 / 1.35
    assert answer_overlap("The capital is Paris", "The capital is Lyon today") == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert answer_overlap("", "Paris") == 0.0 and answer_overlap("Berlin", "Paris") == 0.0


def test_llm_indication_logic(monkeypatch):
    asked = []
    canned = {"x1": "The symbol of iron is Fe.", "x2": "It is Berlin.", "r1": "Iron's symbol is Fe!",
              "r2": "The symbol of iron is Ir.", "r3": "Something else entirely", "r4": "It is Berlin, yes."}

    def fake_answers(model, tokenizer, questions, **kwargs):
        asked.extend(questions)
        return [canned[q] for q in questions]

    monkeypatch.setattr("mscl.core.selection.answer_questions", fake_answers)
    out = llm_indication(None, None, ["r1", "r2", "r3", "r4"], ["x1", "x1", "x1", "x2"], ["Fe", "Fe", "Fe", "Paris"],
                         min_f1=0.5, max_new_tokens=8, batch_size=8)
    # r1: answered with y; r2: wrong but worded like the answer to x1 (F1 5/6); r3: neither;
    # r4: wrong, but the same result as x2 (F1 6/7)
    assert [o["indication"] for o in out] == [True, True, False, True]
    assert asked.count("x1") == 1  # each original answered once
    assert out[3] == {"indication": True, "rewrite_answer": "It is Berlin, yes.", "original_answer": "It is Berlin."}
    with pytest.raises(ValueError, match="lengths differ"):
        llm_indication(None, None, ["r1"], [], ["Fe"], min_f1=0.5, max_new_tokens=8, batch_size=8)


def test_llm_indication_on_the_tiny_model(tiny):
    model, tok = tiny
    out = llm_indication(model, tok, [X, "Which spider has legs?"], [X, X], ["Fe", "Fe"], min_f1=0.5,
                         max_new_tokens=6, batch_size=8)
    assert out[0]["rewrite_answer"] == out[0]["original_answer"] == out[1]["original_answer"]  # greedy
    # the random model's answers decode to nothing: an empty answer is no evidence, never an indication
    assert all(o["indication"] == (answer_overlap(o["rewrite_answer"], o["original_answer"]) >= 0.5) for o in out)
