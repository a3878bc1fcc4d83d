"""Narration formatted from the numbers it cites, and checkable afterwards.

A notebook states a comparison with :func:`compare`: the direction word ("higher", "falls", ...) is
chosen from the two numbers, never typed, and the sentence carries a record of what it compared.
:func:`say` shows the sentence as Markdown and puts those records in the output's metadata
(``mscl_narration``), so ``tests/test_narration.py`` re-reads the executed copies in
``reports/notebooks/`` and checks every narrated direction against the numbers it cites, with its own
table of words.

:func:`walkthrough_question` is the walkthrough's rule for choosing the one question it follows
through a stage, stated before the run is read.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

METADATA_KEY = "mscl_narration"

# word pairs a comparison may use: (first above the second, first below it)
WORDS = {
    "higher": ("higher", "lower"), "above": ("above", "below"), "beats": ("beats", "trails"),
    "rises": ("rises", "falls"), "more": ("more", "fewer"), "gains": ("gains", "loses"),
}
SAME = "level with"   # the word for two numbers within ``tolerance`` of each other
# how a word reads between the two sides of a sentence
PHRASES = {"higher": "is higher than", "lower": "is lower than", "above": "is above", "below": "is below",
           "rises": "rises from", "falls": "falls from", "more": "is more than", "fewer": "is fewer than",
           "gains": "gains over", "loses": "loses to", SAME: "is level with",
           "not comparable with": "is not comparable with"}


@dataclass(frozen=True)
class Comparison:
    """``subject`` (``value``) against ``other`` (``other_value``), in ``unit``; ``word`` the
    direction the narration states."""
    subject: str
    value: float
    other: str
    other_value: float
    word: str
    unit: str = ""
    decimals: int = 1
    tolerance: float = 0.0   # how far apart the two may be and still read "level with"

    def number(self, x: float) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{self.decimals}f}{self.unit}"

    def __str__(self) -> str:
        return (f"{self.subject} ({self.number(self.value)}) {PHRASES.get(self.word, self.word)} {self.other} "
                f"({self.number(self.other_value)})")


def direction(value: float, other: float, words: str = "higher", tolerance: float = 0.0) -> str:
    """The word for ``value`` against ``other``: the pair ``words`` of :data:`WORDS`, or :data:`SAME`
    when they differ by at most ``tolerance``."""
    if words not in WORDS:
        raise ValueError(f"unknown direction words {words!r}; known: {', '.join(WORDS)}")
    if any(x is None or math.isnan(x) for x in (value, other)):
        return "not comparable with"
    if abs(value - other) <= tolerance:
        return SAME
    up, down = WORDS[words]
    return up if value > other else down


def compare(subject: str, value: float, other: str, other_value: float, *, words: str = "higher",
            tolerance: float = 0.0, unit: str = "", decimals: int = 1) -> Comparison:
    """``subject``'s ``value`` against ``other``'s ``other_value``, its direction word computed."""
    value, other_value = float(value), float(other_value)
    return Comparison(subject, value, other, other_value, direction(value, other_value, words, tolerance), unit,
                      decimals, tolerance)


def say(template: str, **comparisons: Comparison):
    """Show ``template`` as Markdown with each ``{name}`` replaced by its comparison, and record the
    comparisons in the output's metadata (what the narration test reads). Returns the text."""
    from IPython.display import Markdown, display

    text = template.format(**{name: str(c) for name, c in comparisons.items()})
    display(Markdown(text), metadata={METADATA_KEY: [asdict(c) for c in comparisons.values()]})
    return text


def recorded(notebook: Mapping) -> list[dict]:
    """Every comparison :func:`say` recorded in an executed notebook (a parsed ``.ipynb``)."""
    return [record for cell in notebook.get("cells", []) for output in cell.get("outputs", [])
            for record in output.get("metadata", {}).get(METADATA_KEY, [])]


# ----------------------------------------------------------------------------- the walkthrough's question
RULE = ("among the stage's training questions whose fact was revised at this stage, those with a conflict "
        "sample (one of the K samples from the stage-start model gives a replaced answer: the model still "
        "held the old one); of these, those with at least one aligned sample first; then the first by fact id")


def walkthrough_question(records: Sequence, preference_rows: Iterable[Mapping],
                         earlier: Mapping[tuple[str, int], Sequence[str]]) -> tuple[str | None, dict]:
    """The question the walkthrough follows, by :data:`RULE`: its record id (None when no question
    qualifies) and how many questions passed each step of the rule.

    ``records``: the stage's training records; ``preference_rows``: its PBL samples
    (``preference.jsonl``); ``earlier``: (fact id, stage) -> the answers revisions replaced
    (:func:`mscl.benchmark.earlier_answers`).
    """
    from mscl.common.answers import answer_source

    rows = {row["id"]: row for row in preference_rows}
    revised = [r for r in records if r.edited and r.id in rows]
    conflict, with_aligned = [], []
    for r in sorted(revised, key=lambda r: (r.fact_id, r.id)):
        replaced = list(earlier.get((r.fact_id, r.stage), []))
        responses = rows[r.id]["responses"]
        if any(answer_source(x["response"], r.answer, replaced) == "stale" for x in responses):
            conflict.append(r.id)
            if any(x["aligned"] for x in responses):
                with_aligned.append(r.id)
    counts = {"revised": len(revised), "with_conflict_sample": len(conflict),
              "with_conflict_and_aligned_samples": len(with_aligned)}
    chosen = (with_aligned or conflict or [None])[0]
    return chosen, counts
