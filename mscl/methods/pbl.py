"""PBL: the preference-based learning bias (the paper's first component).

Before training a stage, the model at the stage's start samples K responses to every training
question; they are split into Y_align and Y_conflict against the gold answer
(:mod:`mscl.preference`) and scored once by that same frozen model (the reference). Training then
minimises ``nll_weight * NLL(gold) + preference_weight * (alpha * L_PP + beta * L_NP)``
(:mod:`mscl.training`, :func:`mscl.losses.preference_bias_loss`).
"""
from __future__ import annotations

from mscl.io import read_jsonl, write_jsonl
from mscl.methods.base import SequentialLoRA, StageContext
from mscl.preference import build_preference_data, split_summary
from mscl.training import build_examples, reference_logps


class PBL(SequentialLoRA):
    """Sequential LoRA with the preference-based learning bias added to the gold NLL."""

    name = "pbl"

    def preference_rows(self, model, ctx: StageContext) -> list[dict]:
        """Sampled, split and reference-scored responses; cached in ``preference.jsonl`` so a
        restarted stage does not sample again (the file is written atomically, whole or not at all)."""
        path = ctx.stage_dir / "preference.jsonl"
        if path.is_file():
            return read_jsonl(path)
        pbl = self.params.pbl
        rows = build_preference_data(model, ctx.tokenizer, ctx.sets["train"], k=pbl.k,
                                     temperature=pbl.temperature, top_p=pbl.top_p,
                                     max_new_tokens=pbl.max_new_tokens,
                                     batch_size=self.params.eval.batch_size, seed=ctx.seed)
        examples = build_examples(ctx.tokenizer, ctx.sets["train"], self.params.train.max_length, rows)
        reference_logps(model, ctx.tokenizer, examples, self.params.eval.batch_size)
        for row, ex in zip(rows, examples):
            for resp, seq in zip(row["responses"], ex["sequences"][1:]):
                resp["ref_logp"] = seq["ref_logp"]
        write_jsonl(path, rows)
        return rows

    def examples(self, model, ctx: StageContext) -> list[dict]:
        rows = self.preference_rows(model, ctx)
        ctx.info["preference_split"] = split_summary(rows)
        return build_examples(ctx.tokenizer, ctx.sets["train"], self.params.train.max_length, rows)

    def bias_params(self):
        return self.params.pbl
