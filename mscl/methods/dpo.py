"""DPO on revisions: the preference baseline that needs no sampling.

For every revised fact of a stage, the pair (chosen = its new answer, rejected = the answer the
revision replaced) trains with TRL's DPO loss (``loss_type="sigmoid"``; :func:`mscl.core.losses.dpo_loss`,
checked against ``trl.DPOTrainer`` in the tests) against the frozen stage-start model, and every
training pair, revised or not, trains with the gold NLL, as Ours's objective does:

    L = nll_weight * NLL(gold) + preference_weight * L_DPO(new > old).

It answers the question PBL's K samples raise: does sampling add anything over the one stale
answer the benchmark already knows? Nothing is sampled here. ``dpo.beta`` defaults to TRL's
``DPOConfig`` default (0.1). The pairs, with their reference log-probs, are cached in the stage
folder (``dpo_pairs.jsonl``).
"""
from __future__ import annotations

from mscl.common.io import read_jsonl, write_jsonl
from mscl.common.timing import timed
from mscl.core.losses import DPOObjective
from mscl.engine.training import build_examples, reference_logps
from mscl.methods.base import SequentialLoRA, StageContext, phases

PAIRS_FILE = "dpo_pairs.jsonl"


def revision_pairs(records) -> list[dict]:
    """One row per revised training record: its new answer (chosen, ``aligned``) then the answer it
    replaced (rejected), as :func:`mscl.engine.training.build_examples` takes responses."""
    return [{"id": r.id, "responses": [{"response": r.answer, "aligned": True},
                                       {"response": r.previous_answer, "aligned": False}]}
            for r in records if r.edited and r.previous_answer and r.previous_answer != r.answer]


class DPO(SequentialLoRA):
    """Sequential LoRA with TRL's DPO loss on (new answer > replaced answer) plus the gold NLL."""

    name = "dpo"
    param_sections = ("dpo",)

    def pairs(self, model, ctx: StageContext) -> list[dict]:
        """The stage's revision pairs scored by ``model`` (the stage-start model, the reference)."""
        path = ctx.stage_dir / PAIRS_FILE
        if path.is_file():
            return read_jsonl(path)
        rows = revision_pairs(ctx.sets["train"])
        by_id = {r.id: r for r in ctx.sets["train"]}
        examples = build_examples(ctx.tokenizer, [by_id[row["id"]] for row in rows],
                                  self.params.train.max_length, rows)
        with timed(phases(ctx), "reference"):
            reference_logps(model, ctx.tokenizer, examples, self.params.eval.batch_size)
        for row, example in zip(rows, examples):
            for response, sequence in zip(row["responses"], example["sequences"][1:]):
                response["ref_logp"] = sequence["ref_logp"]
        write_jsonl(path, rows)
        return rows

    def examples(self, model, ctx: StageContext) -> list[dict]:
        rows = self.pairs(model, ctx)
        ctx.info["dpo"] = {"pairs": len(rows), "beta": self.params.dpo.beta}
        return build_examples(ctx.tokenizer, ctx.sets["train"], self.params.train.max_length, rows)

    def objective(self):
        dpo = self.params.dpo
        return DPOObjective(beta=dpo.beta, nll_weight=dpo.nll_weight, preference_weight=dpo.preference_weight)
