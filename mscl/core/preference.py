"""The Y_align / Y_conflict split of the preference-based learning bias.

For a training pair (x, y) the model at the start of the stage samples K responses; each is scored
against the gold answer y and falls into Y_align (compatible with y) or Y_conflict. Compatibility
is the evaluation metric's own test (the gold answer, normalised, is contained in the response), so
"aligned" means exactly "the evaluation would count this answer correct".

The split is kept with the data (``preference.jsonl`` in the stage's folder) so it can be inspected.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from mscl.core.metrics import is_correct
from mscl.engine.generation import sample_responses

SCORERS = ("containment",)


def is_aligned(response: str, answer: str, scorer: str = "containment") -> bool:
    """Whether ``response`` is compatible with the gold ``answer`` (it belongs to Y_align)."""
    if scorer != "containment":
        raise ValueError(f"unknown scorer {scorer!r}; known: {', '.join(SCORERS)}")
    return is_correct(response, answer)


def split_responses(responses: Sequence[str], answer: str, scorer: str = "containment") -> list[dict]:
    """Distinct non-empty responses with their alignment and how often each was sampled.

    Identical samples are merged (``count``) so the loss does not pay for a forward pass twice;
    the count is kept so a weighted sum reproduces the per-sample sum exactly.
    """
    counts = Counter(r for r in responses if r.strip())
    return [{"response": r, "aligned": is_aligned(r, answer, scorer), "count": c} for r, c in counts.items()]


def build_preference_data(model, tokenizer, records, *, k: int, temperature: float, top_p: float,
                          max_new_tokens: int, batch_size: int, seed: int) -> list[dict]:
    """Sample K responses per training record and split them; one row per record.

    Row: ``{"id", "question", "answer", "responses": [{"response", "aligned", "count"}, ...]}``.
    """
    questions = [r.question for r in records]
    sampled = sample_responses(model, tokenizer, questions, k=k, temperature=temperature, top_p=top_p,
                               max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                               desc="sample K responses")
    return [
        {"id": r.id, "question": r.question, "answer": r.answer, "responses": split_responses(s, r.answer)}
        for r, s in zip(records, sampled)
    ]


def split_summary(rows: list[dict]) -> dict:
    """Counts of distinct aligned and conflicting responses, and questions with none of one kind."""
    aligned = sum(x["aligned"] for row in rows for x in row["responses"])
    total = sum(len(row["responses"]) for row in rows)
    return {
        "questions": len(rows),
        "responses": total,
        "aligned": aligned,
        "conflict": total - aligned,
        "questions_without_aligned": sum(not any(x["aligned"] for x in row["responses"]) for row in rows),
        "questions_without_conflict": sum(all(x["aligned"] for x in row["responses"]) for row in rows),
    }


def split_table(manifests: list[dict]):
    """The preference split as it happened (each stage manifest's ``method_info.preference_split``,
    :func:`split_summary`), mean over training seeds: one row per (method, stage) with the distinct
    aligned and conflicting responses and the share of questions with no aligned response at all."""
    import pandas as pd

    rows = [{"method": m["method"], "stage": m["stage"], "seed": m["run_seed"], **m["method_info"]["preference_split"]}
            for m in manifests if "preference_split" in (m.get("method_info") or {})]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["questions without aligned %"] = 100 * frame["questions_without_aligned"] / frame["questions"]
    frame["questions without conflict %"] = 100 * frame["questions_without_conflict"] / frame["questions"]
    return frame.drop(columns="seed").groupby(["method", "stage"], sort=False).mean().reset_index()
