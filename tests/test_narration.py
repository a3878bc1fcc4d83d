"""Narrated comparisons agree with the numbers they cite (mscl.evaluation.narration): the direction
word is computed, recorded beside the numbers, and re-checked here, with this file's own table of
words, on every executed notebook in reports/notebooks/."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mscl.evaluation import narration

REPORTS = Path(__file__).resolve().parents[1] / "reports" / "notebooks"
# the sign each word states, written out again here rather than read from the module
SIGN = {"higher": 1, "above": 1, "beats": 1, "rises": 1, "more": 1, "gains": 1,
        "lower": -1, "below": -1, "trails": -1, "falls": -1, "fewer": -1, "loses": -1,
        "level with": 0, "not comparable with": None}


def disagreements(records: list[dict]) -> list[str]:
    """Each recorded comparison whose word does not state the sign of its two numbers."""
    wrong = []
    for r in records:
        if r["word"] not in SIGN:
            wrong.append(f"unknown word {r['word']!r} in {r}")
            continue
        sign = SIGN[r["word"]]
        if sign is None:
            continue
        difference = r["value"] - r["other_value"]
        tolerance = r.get("tolerance", 0.0)
        if ((sign > 0 and not difference > tolerance) or (sign < 0 and not difference < -tolerance)
                or (sign == 0 and abs(difference) > tolerance)):
            wrong.append(f"{r['subject']} {r['value']} {r['word']} {r['other']} {r['other_value']}")
    return wrong


@pytest.mark.parametrize("value,other,words,expected", [
    (59.0, 49.4, "higher", "higher"), (49.4, 59.0, "higher", "lower"), (20.4, 57.3, "rises", "falls"),
    (3.0, 3.0, "beats", narration.SAME), (3.05, 3.0, "higher", narration.SAME)])
def test_the_direction_word_follows_the_numbers(value, other, words, expected):
    tolerance = 0.1 if expected == narration.SAME else 0.0
    c = narration.compare("A", value, "B", other, words=words, tolerance=tolerance, unit="%")
    assert c.word == expected
    assert f"{value:.1f}%" in str(c) and f"{other:.1f}%" in str(c)


def test_unknown_words_and_missing_numbers():
    with pytest.raises(ValueError, match="unknown direction words"):
        narration.direction(1.0, 2.0, words="bigger")
    assert narration.direction(float("nan"), 2.0) == "not comparable with"


def test_the_checker_catches_a_typed_direction():
    good = narration.compare("Ours", 49.4, "cit+matched", 59.0)
    typed = {**good.__dict__, "word": "higher"}   # what a sentence typed before the run could say
    level = {**good.__dict__, "word": "level with"}
    notebook = {"cells": [{"outputs": [{"metadata": {narration.METADATA_KEY: [good.__dict__, typed, level]}}]}]}
    assert disagreements(narration.recorded(notebook)) == ["Ours 49.4 higher cit+matched 59.0",
                                                           "Ours 49.4 level with cit+matched 59.0"]


def test_say_records_its_comparisons(capsys):
    pytest.importorskip("IPython")
    c = narration.compare("CIT at stage 2", 20.4, "CIT at stage 1", 57.3, words="rises")
    text = narration.say("{c}.", c=c)
    assert text == "CIT at stage 2 (20.4) falls from CIT at stage 1 (57.3)."
    assert str(narration.compare("Ours", 49.4, "cit+matched", 59.0)) == "Ours (49.4) is lower than cit+matched (59.0)"


def test_every_narrated_comparison_in_the_executed_notebooks_agrees_with_its_numbers():
    records = []
    for path in sorted(REPORTS.glob("*.ipynb")):
        records += [{**r, "notebook": path.name} for r in narration.recorded(json.loads(path.read_text()))]
    assert disagreements(records) == []


def _record(fact, stage, answer, edited=True):
    return SimpleNamespace(id=f"s/{stage}/train/{fact}", fact_id=fact, stage=stage, answer=answer, edited=edited)


def test_the_walkthrough_question_is_a_real_conflict_with_an_aligned_sample_first():
    records = [_record("f:a", 2, "Lyon"), _record("f:b", 2, "Nice"), _record("f:c", 2, "Metz"),
               _record("f:d", 2, "Paris", edited=False)]
    earlier = {("f:a", 2): ["Paris"], ("f:b", 2): ["Brest"], ("f:c", 2): ["Tours"], ("f:d", 2): []}
    rows = [{"id": records[0].id, "responses": [{"response": "Paris", "aligned": False}]},       # conflict only
            {"id": records[1].id, "responses": [{"response": "Brest", "aligned": False},
                                                {"response": "Nice", "aligned": True}]},        # both
            {"id": records[2].id, "responses": [{"response": "Rome", "aligned": False}]},        # neither
            {"id": records[3].id, "responses": [{"response": "Paris", "aligned": True}]}]        # not revised
    chosen, counts = narration.walkthrough_question(records, rows, earlier)
    assert chosen == records[1].id
    assert counts == {"revised": 3, "with_conflict_sample": 2, "with_conflict_and_aligned_samples": 1}
    chosen, _ = narration.walkthrough_question(records, rows[:1] + rows[2:], earlier)
    assert chosen == records[0].id   # no aligned sample anywhere: the first real conflict
    assert narration.walkthrough_question(records[2:], rows[2:], earlier)[0] is None
