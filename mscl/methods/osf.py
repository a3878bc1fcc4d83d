"""OSF: PEFT's orthogonal-subspace fine-tuning, stage after stage (peft#2685).

Nayak et al., "Sculpting Subspaces: Constrained Full Fine-Tuning in LLMs for Continual Learning"
(2025), as PEFT ships it (``peft.OSFConfig``): every target weight W = U S V^T is split at
``effective_rank`` into its top singular directions (frozen) and the rest (trainable); the
gradients of the trainable factors are projected orthogonal to the frozen ones
(``peft.tuners.osf.utils.project_gradient_to_orthogonal_space``, done by hooks in its layers).
After a stage the update is merged, and the next stage decomposes the merged weights again with a
larger frozen share, as PEFT's continual-learning example does (0.3, 0.5, 0.7 over its three
tasks): here ``osf.effective_rank + k * osf.rank_step`` at the k-th stage after the shared ones,
capped at ``osf.max_effective_rank``.

OSF trains the weights themselves, not a small adapter, so it gets its own learning rate
(``osf.learning_rate``; LoRA's would wreck the singular vectors) and the LoRA target modules.
State per stage: ``osf_delta.safetensors``, the merged change of every target weight, so that a
later stage's start model is rebuilt exactly (a re-run SVD could flip singular vectors' signs).
"""
from __future__ import annotations

import dataclasses

import torch
from transformers import set_seed

from mscl.common.timing import timed
from mscl.engine import packed_linear
from mscl.engine.training import build_examples, train_lora
from mscl.methods.base import TENSORBOARD, Method, StageContext, phases

DELTA_FILE = "osf_delta.safetensors"
STATE_FILE = "osf.json"


def attach_osf(model, target_modules, effective_rank: float):
    """Wrap ``model`` with a fresh PEFT OSF adapter freezing ``effective_rank`` (a fraction of each
    target weight's smaller dimension) of its top singular directions."""
    from peft import OSFConfig, get_peft_model

    config = OSFConfig(target_modules=list(target_modules), effective_rank=effective_rank, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def osf_layers(peft_model) -> dict[str, torch.nn.Module]:
    """Every OSF layer of ``peft_model``, by the name of the weight it changes (in the plain model)."""
    from peft.tuners.osf.layer import OSFLayer

    prefix = "base_model.model."
    return {name.removeprefix(prefix) + ".weight": module for name, module in peft_model.named_modules()
            if isinstance(module, OSFLayer)}


def osf_deltas(peft_model) -> dict[str, torch.Tensor]:
    """The change OSF made to each target weight (PEFT's ``get_delta_weight``), in fp32."""
    with torch.no_grad():
        return {name: layer.get_delta_weight(layer.active_adapters[0]).float().contiguous()
                for name, layer in osf_layers(peft_model).items()}


def add_deltas(model, deltas: dict[str, torch.Tensor]):
    """``model`` with each named weight increased by its delta, in place; returns the model."""
    weights = dict(model.named_parameters())
    missing = sorted(set(deltas) - set(weights))
    if missing:
        raise KeyError(f"OSF deltas for weights the model does not have: {', '.join(missing[:3])}")
    with torch.no_grad():
        for name, delta in deltas.items():
            weights[name].add_(delta.to(weights[name].dtype))
    packed_linear.refresh(model)
    return model


class OSF(Method):
    """Orthogonal-subspace full fine-tuning, its frozen share growing stage by stage."""

    name = "osf"
    param_sections = ("osf",)

    def start_model(self, base_model, ctx: StageContext):
        from safetensors.torch import load_file

        model = base_model
        for folder in ctx.previous_dirs:
            model = add_deltas(model, load_file(folder / DELTA_FILE))
        model.eval()
        return model

    def effective_rank(self, ctx: StageContext) -> float:
        """The frozen share of this stage: one ``rank_step`` more for every OSF stage before it."""
        osf = self.params.osf
        return min(osf.effective_rank + osf.rank_step * len(ctx.previous_dirs), osf.max_effective_rank)

    def train_stage(self, model, ctx: StageContext):
        from safetensors.torch import save_file

        from mscl.common.io import write_json

        osf = self.params.osf
        examples = build_examples(ctx.tokenizer, ctx.sets["train"], self.params.train.max_length)
        train = dataclasses.replace(self.params.train, learning_rate=osf.learning_rate)
        share = self.effective_rank(ctx)
        set_seed(ctx.seed)
        peft_model = attach_osf(model, self.params.train.lora.target_modules, share)
        with timed(phases(ctx), "gradient_steps"):
            ctx.info["log_history"] = train_lora(peft_model, ctx.tokenizer, examples, train, ctx.stage_dir / "trainer",
                                                 ctx.seed, tensorboard_dir=ctx.stage_dir / TENSORBOARD)
        deltas = osf_deltas(peft_model)
        save_file(deltas, str(ctx.stage_dir / DELTA_FILE))
        ctx.info["osf"] = {"effective_rank": share, "learning_rate": osf.learning_rate, "weights": len(deltas)}
        write_json(ctx.stage_dir / STATE_FILE, ctx.info["osf"])
        return add_deltas(peft_model.unload(), deltas)
