"""F-Learning: forgetting before learning, a baseline of the paper.

Reference: S. Ni, D. Chen, C. Li, X. Hu, R. Xu, M. Yang, "Forgetting before Learning: Utilizing
Parametric Arithmetic for Knowledge Updating in Large Language Models", arXiv 2311.08011 (2023;
ACL 2024). Their recipe, with theta the weights before the update:

1. fine-tune on the *old* knowledge that the update replaces: ``delta_old = theta_old_ft - theta``;
2. forget it by parametric arithmetic: ``theta' = theta - lambda * delta_old``;
3. fine-tune ``theta'`` on the new knowledge.

They report that subtracting a LoRA delta forgets about as well as subtracting a full fine-tuning
delta, so here every step is a LoRA (``params.train.lora``):

* the old knowledge of a stage is its training records with ``edited=True``, answered with their
  ``previous_answer`` (the answer the edit replaces);
* a forgetting LoRA is trained on them (``params.flearning.forgetting_epochs`` and
  ``forgetting_learning_rate``, otherwise ``params.train``) and merged with weight ``-lambda``:
  ``W <- W - lambda * (lora_alpha / r) * B A`` in every adapted layer (:func:`merge_scaled_lora`);
* then a new LoRA is trained on all the stage's training records (new answers) and merged, exactly
  as in CIT (:class:`mscl.methods.base.SequentialLoRA`).

A stage that edits nothing (stage 1 of every stream, and any stage without edits) has no old
knowledge to forget: the forgetting step is skipped and the stage is plain CIT.

State per stage: ``forgetting_adapter/`` (when there was a forgetting step), ``adapter/`` (the new
knowledge) and ``flearning.json`` (lambda and how many records were forgotten), so
:meth:`FLearning.start_model` replays the chain subtract-then-merge of every earlier stage exactly.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from transformers import set_seed

from mscl.common.io import read_json, write_json
from mscl.engine.models import attach_lora, load_adapter, merge_lora, save_adapter
from mscl.engine.training import build_examples, train_lora
from mscl.methods.base import TENSORBOARD, SequentialLoRA, StageContext

STATE_FILE = "flearning.json"
FORGETTING_ADAPTER = "forgetting_adapter"


def old_knowledge(records) -> list:
    """The edited records of a stage with their answer set back to the one the edit replaced."""
    old = []
    for r in records:
        if not getattr(r, "edited", False) or not getattr(r, "previous_answer", None):
            continue
        if dataclasses.is_dataclass(r):
            old.append(dataclasses.replace(r, answer=r.previous_answer))
        else:
            old.append(SimpleNamespace(**{**vars(r), "answer": r.previous_answer}))
    return old


def merge_scaled_lora(peft_model, weight: float):
    """Fold ``weight`` times the adapter's delta into the base weights and return the plain model.

    Every LoRA layer's scaling becomes ``weight * lora_alpha / r`` before the merge, so each adapted
    weight ends as ``W + weight * (lora_alpha / r) * B A``; F-Learning's subtraction is ``weight = -lambda``.
    """
    from peft.tuners.lora import LoraLayer

    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            for adapter in module.active_adapters:
                module.set_scale(adapter, weight)
    return merge_lora(peft_model)


class FLearning(SequentialLoRA):
    """Sequential LoRA that first subtracts a LoRA trained on the knowledge the stage replaces."""

    name = "flearning"
    param_sections = ("flearning",)

    def start_model(self, base_model, ctx: StageContext):
        model = base_model
        for folder in ctx.previous_dirs:
            state = read_json(folder / STATE_FILE)
            if state["forgetting_adapter"]:
                model = merge_scaled_lora(load_adapter(model, folder / FORGETTING_ADAPTER), -state["lambda"])
            model = merge_lora(load_adapter(model, folder / "adapter"))
        model.eval()
        return model

    def train_forgetting(self, model, ctx: StageContext, records: list):
        """Train a fresh LoRA on ``records`` (the old answers); returns the PEFT model, unmerged."""
        fl = self.params.flearning
        train = dataclasses.replace(self.params.train, epochs=fl.forgetting_epochs,
                                    learning_rate=fl.forgetting_learning_rate)
        examples = build_examples(ctx.tokenizer, records, train.max_length)
        set_seed(ctx.seed)
        peft_model = attach_lora(model, train.lora)
        history = train_lora(peft_model, ctx.tokenizer, examples, train, ctx.stage_dir / "forgetting_trainer", ctx.seed,
                             tensorboard_dir=ctx.stage_dir / TENSORBOARD / "forgetting")
        write_json(ctx.stage_dir / "forgetting_log.json", history)
        return peft_model

    def forget(self, model, ctx: StageContext):
        """Step 1-2: learn the stage's old knowledge as a LoRA, save it, subtract lambda times its delta.

        Writes ``flearning.json`` whether or not there was anything to forget; returns the model.
        """
        lam = self.params.flearning.forgetting_lambda
        records = old_knowledge(ctx.sets["train"])
        state = {"lambda": lam, "old_records": len(records), "forgetting_adapter": bool(records)}
        if records:
            peft_model = self.train_forgetting(model, ctx, records)
            save_adapter(peft_model, ctx.stage_dir / FORGETTING_ADAPTER)
            model = merge_scaled_lora(peft_model, -lam)
        write_json(ctx.stage_dir / STATE_FILE, state)
        ctx.info["flearning"] = state
        return model

    def train_stage(self, model, ctx: StageContext):
        return super().train_stage(self.forget(model, ctx), ctx)

