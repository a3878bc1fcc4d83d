"""The precision knob (train.dtype) on the tiny model: bf16 stages of every method run, LoRA weights
stay fp32, and stage-after-stage merges are computed in fp32 and cast once (measured against merging
in bf16)."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from mscl.common.params import load_params
from mscl.engine.models import attach_lora, merge_lora, to_compute_dtype


def _bf16(profile: str = "smoke"):
    params = load_params(profile, "training")
    return dataclasses.replace(params, train=dataclasses.replace(params.train, dtype="bfloat16"))


@pytest.mark.parametrize("method", ["cit", "pbl", "mocl", "flearning", "ours"])
def test_every_method_trains_a_bf16_stage(scratch, method):
    from mscl.pipeline.stages import run_stage

    manifest = run_stage("smoke", "domain_independent", method, 2, params=_bf16(), verbose=False)
    assert manifest["precision"] == "bfloat16"
    assert all(v == v for v in (manifest["metrics"]["eval"]["acc"],))  # evaluated, not NaN


def test_lora_weights_stay_fp32_on_a_bf16_model(tiny):
    model, _ = tiny
    model = to_compute_dtype(copy.deepcopy(model), torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    lora = load_params("smoke", "training").train.lora
    peft_model = attach_lora(model, lora)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert trainable and {p.dtype for p in trainable} == {torch.float32}
    frozen = {p.dtype for p in peft_model.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16}


def _small_adapter(model, seed: int, scale: float):
    torch.manual_seed(seed)
    peft_model = attach_lora(model, load_params("smoke", "training").train.lora)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * scale)
    return peft_model


def test_merges_in_fp32_then_one_cast_keep_the_deltas_bf16_merging_loses(tiny):
    """The measurement behind to_compute_dtype: four stages' small LoRA deltas merged (a) in fp32
    and cast to bf16 once, (b) into a bf16 model stage after stage; both against the fp32 merge, on
    the weights and on the logits of a batch of prompts (``pytest -s`` prints the figures)."""
    base, tok = tiny
    stages = range(4)

    def merged(dtype_during_merges):
        model = copy.deepcopy(base).to(dtype_during_merges)
        for seed in stages:
            model = merge_lora(_small_adapter(model, seed, scale=0.02))
        return model

    reference = merged(torch.float32)
    ours = to_compute_dtype(merged(torch.float32), torch.bfloat16)
    bf16_merges = merged(torch.bfloat16)
    base_weights = dict(base.named_parameters())

    def delta_error(model):
        errors = []
        with torch.no_grad():
            for name, w in model.named_parameters():
                delta = reference.get_parameter(name) - base_weights[name]
                if delta.norm() > 0:  # the layers the LoRA adapts
                    errors.append(((w.float() - base_weights[name]) - delta).norm() / delta.norm())
        return float(torch.stack(errors).mean())

    batch = tok(["What is the capital of France?", "Who wrote Hamlet?"], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref_logits = reference(**batch).logits
        err = {name: float((m(**batch).logits.float() - ref_logits).abs().max())
               for name, m in (("fp32 merges, one cast", ours), ("bf16 merges", bf16_merges))}
    deltas = {"fp32 merges, one cast": delta_error(ours), "bf16 merges": delta_error(bf16_merges)}
    print(f"\nrelative error of the merged deltas: {deltas}\nmax |logit - fp32 logit|: {err}")
    assert deltas["fp32 merges, one cast"] < deltas["bf16 merges"]
    assert err["fp32 merges, one cast"] <= err["bf16 merges"]
