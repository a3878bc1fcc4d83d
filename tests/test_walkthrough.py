"""The teaching walkthrough (notebooks/walkthrough/pbl_by_hand.ipynb) as committed: no outputs, the glossary
and the stage-loop picture linked from its first cell, its three exercises each with a knob in a code cell,
its question chosen by the stated rule, and every quotation marked as the slides' words with its slide."""
from __future__ import annotations

import json
import re

from mscl.common.paths import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "walkthrough" / "pbl_by_hand.ipynb"
# the slide summary of the paper, beside the checkout where the project keeps it (not part of the repository)
SLIDES = REPO_ROOT.parent / "shared" / "paper" / "paper-slides.md"


def _cells() -> list[dict]:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _quotes(markdown: str) -> list[list[str]]:
    """Each block quote of a markdown cell, as its lines without the leading '>'."""
    blocks, block = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith(">"):
            block.append(line[1:].strip())
        elif block:
            blocks.append(block)
            block = []
    return blocks


def test_the_walkthrough_is_committed_without_outputs():
    for i, cell in enumerate(_cells()):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"cell {i} has outputs"


def test_its_first_cell_links_the_glossary_and_shows_the_stage_loop():
    first = _source(_cells()[0])
    assert "](../../docs/glossary.md)" in first
    assert re.search(r"!\[[^\]]+\]\(\.\./\.\./docs/stage_loop\.svg\)", first)
    assert (REPO_ROOT / "docs" / "glossary.md").exists() and (REPO_ROOT / "docs" / "stage_loop.svg").exists()


def test_its_parameters_and_its_exercise_knobs():
    cells = _cells()
    (parameters,) = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    namespace: dict = {}
    exec(_source(parameters), namespace)
    assert {"profile", "backbone", "seed"} <= set(namespace)
    code = [_source(c) for c in cells if c["cell_type"] == "code"]
    for exercise, knob in (("(a)", 'variant, reduction, clamp = "paper", "sum", 0.0'), ("(b)", "question_id = None"),
                           ("(c)", "exercise_ids = ")):
        assert any(f"Exercise {exercise}" in c and knob in c for c in code), f"exercise {exercise} has no knob {knob!r}"
    assert any("narration.walkthrough_question(" in c for c in code) and any("narration.RULE" in c for c in code)


def test_every_quotation_is_the_slides_words_with_its_slide():
    """A block quote holds quoted lines and typeset equations, then its slide's title; where the slide summary is at
    hand, each of them must be in it, word for word (whitespace aside)."""
    markdown = [_source(c) for c in _cells() if c["cell_type"] == "markdown"]
    text = SLIDES.read_text(encoding="utf-8") if SLIDES.exists() else None
    slides = " ".join(text.split()) if text else None
    quoted = 0
    for block in (b for cell in markdown for b in _quotes(cell)):
        title = re.fullmatch(r'\(slide "([^"]+)"\)', block[-1])
        assert title, f"a block quote that does not end with its slide's title: {block}"
        assert text is None or f"# {title.group(1)}\n" in text, f"no slide titled {title.group(1)!r}"
        for line in filter(None, block[:-1]):
            quotation = re.fullmatch(r'"(.*)"', line) or re.fullmatch(r"(\$\$.*\$\$)", line)
            assert quotation, f"a quoted block's line that is neither a quotation nor an equation: {line!r}"
            assert slides is None or " ".join(quotation.group(1).split()) in slides, f"not the slides' words: {line!r}"
            quoted += 1
    assert quoted >= 10
