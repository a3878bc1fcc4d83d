"""Replay: sequential LoRA that rehearses a share of earlier stages' training pairs.

The continual-learning baseline the field reaches for first (experience replay; asked of TRL in
trl#2428 and declined there). Each stage trains on its own pairs plus ``replay.share`` of the
distinct facts that earlier stages trained, drawn with the seed, each asked as it was trained and
answered with its *current* answer: the answer of this stage when the fact is trained again now,
else the answer of the last stage that trained it. A replayed pair never teaches an answer a
revision has replaced.

Held-out retention facts (the stream's ``heldout`` split: trained at stage 1, never again) are
never replayed: their KRR measures what survives without rehearsal, for every method alike.

What that rehearses depends on the stream. The domain-independent and real-revision streams
train every base fact again at every stage, with its current answer, so there the pool is the
stage's own facts and Replay is a second pass over ``share`` of them: more gradient steps on the
same knowledge (about 1.14x a CIT stage's cost, ``make bench``), not rehearsal of something a stage
dropped. On the cross-domain stream, where a domain's facts leave the stream after their stage, it
is rehearsal proper.
``replay.share`` is chosen on the validation split (``params/<profile>/06_ablations.yaml``,
``choices.replay_share``).
"""
from __future__ import annotations

import dataclasses
import random

from mscl.engine.training import build_examples
from mscl.methods.base import SequentialLoRA, StageContext


def replay_pool(earlier_train: list, current_train: list, excluded_facts: set[str]) -> list:
    """One pair per fact that earlier stages trained (its last training record), in first-trained
    order, answered with its current answer (this stage's when ``current_train`` has the fact);
    ``excluded_facts`` are left out."""
    latest = {}
    for record in earlier_train:
        if record.fact_id not in excluded_facts:
            latest[record.fact_id] = record
    now = {record.fact_id: record for record in current_train}
    pool = []
    for fact_id, record in latest.items():
        if fact_id in now and now[fact_id].answer != record.answer:
            record = dataclasses.replace(record, answer=now[fact_id].answer,
                                         previous_answer=now[fact_id].previous_answer, edited=now[fact_id].edited)
        pool.append(record)
    return pool


def draw_replay(pool: list, share: float, seed: int, stage: int) -> list:
    """``round(share * len(pool))`` pairs of ``pool``, drawn without replacement with ``(seed, stage)``."""
    count = round(share * len(pool))
    return random.Random(f"replay/{seed}/{stage}").sample(pool, count)


class Replay(SequentialLoRA):
    """Sequential LoRA on the stage's pairs plus a replayed share of earlier stages' pairs."""

    name = "replay"
    param_sections = ("replay",)

    def replayed(self, ctx: StageContext) -> list:
        """The earlier pairs this stage rehearses (none at the first stage)."""
        heldout_facts = {record.fact_id for record in ctx.sets.get("heldout", [])}
        pool = replay_pool(ctx.earlier_train, ctx.sets["train"], heldout_facts)
        chosen = draw_replay(pool, self.params.replay.share, ctx.seed, ctx.stage)
        ctx.info["replay"] = {"share": self.params.replay.share, "pool": len(pool), "replayed": len(chosen),
                              "ids": [record.id for record in chosen]}
        return chosen

    def examples(self, model, ctx: StageContext) -> list[dict]:
        records = list(ctx.sets["train"]) + self.replayed(ctx)
        return build_examples(ctx.tokenizer, records, self.params.train.max_length)
