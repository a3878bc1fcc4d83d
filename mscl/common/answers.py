"""How an answer is judged: the one containment test behind ACC, the preference split and selection.

Correctness follows the authors' released evaluation script exactly: an answer is correct when the
gold answer, lower-cased and stripped, is a substring of the generated answer, lower-cased and
stripped.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["ANSWER_SOURCES", "answer_source", "is_correct", "normalize"]


def normalize(text: str) -> str:
    """Lower-case and strip, as the authors' evaluation does before matching."""
    return text.lower().strip()


def is_correct(prediction: str, answer: str) -> bool:
    """True when ``normalize(answer)`` is a substring of ``normalize(prediction)``.

    An empty gold answer would be a substring of everything, so it is a ValueError rather than a
    silent "correct".
    """
    gold = normalize(answer)
    if not gold:
        raise ValueError(f"empty gold answer {answer!r}: it would match every prediction")
    return gold in normalize(prediction)


ANSWER_SOURCES = ("current", "stale", "neither")


def answer_source(prediction: str, answer: str, earlier: Sequence[str] = ()) -> str:
    """Where an answer comes from, the picture of knowledge conflict:

    - ``"current"``: the gold answer of this stage is in it (:func:`is_correct`);
    - ``"stale"``: otherwise, an earlier answer of the same fact (an answer an edit replaced) is;
    - ``"neither"``: none of the fact's answers is.

    A fact's answers never contain one another (the benchmark guarantees it), so a prediction
    naming only one of them falls in exactly one class.
    """
    if is_correct(prediction, answer):
        return "current"
    if any(is_correct(prediction, e) for e in earlier):
        return "stale"
    return "neither"
