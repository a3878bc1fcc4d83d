"""Compute accounting (mscl/engine/compute.py): every pass through the backbone is counted once."""
from __future__ import annotations

import copy

import torch

from mscl.engine.compute import counting
from mscl.engine.generation import answer_questions
from mscl.engine.models import attach_lora
from mscl.pipeline.stages import run_stage
from tests.test_training import LORA


def test_passes_are_counted_by_tokens_and_by_whether_they_train(tiny):
    model, tok = tiny
    model = attach_lora(copy.deepcopy(model), LORA)
    ids = torch.randint(5, 50, (2, 7))
    with counting(model) as count:
        with torch.no_grad():
            model(input_ids=ids)
        model(input_ids=ids).logits.sum().backward()
    assert (count.forward, count.trained, count.forward_equivalent) == (14, 14, 14 + 3 * 14)
    with counting(model) as count:  # decoding: the prompts once, then one token a sequence a step
        answer_questions(model, tok, ["What is the capital of France?"], max_new_tokens=4, batch_size=1)
    assert count.trained == 0 and count.forward > 4 + 5  # four new tokens after a prompt of more than five
    with torch.no_grad():
        model(input_ids=ids)  # outside the block: not counted
    assert count.forward > 4 and count.trained == 0


def test_a_stage_records_its_methods_compute(scratch):
    cit = run_stage("smoke", "domain_independent", "cit", 2, verbose=False)["compute"]
    pbl = run_stage("smoke", "domain_independent", "pbl", 2, verbose=False)["compute"]
    assert cit["forward_tokens"] == 0 and cit["trained_tokens"] > 0   # CIT only trains
    assert pbl["forward_tokens"] > 0 and pbl["trained_tokens"] > cit["trained_tokens"]  # samples, responses
    assert pbl["flops"] == 2 * pbl["parameters"] * pbl["forward_equivalent_tokens"]


def test_an_ours_stage_records_the_time_of_each_phase(scratch):
    """The phase table's source: every part of an Ours stage timed by name in its manifest."""
    manifest = run_stage("smoke", "domain_independent", "ours", 2, verbose=False)
    phases = manifest["method_info"]["phases_s"]
    # (the indication is asked only of usable rewrites; the tiny random model writes none)
    expected = {"sample", "reference", "gradient_steps", "mi", "rewrite_bki", "rewrite_lce", "rewrite_pa"}
    assert expected <= set(phases) and all(seconds >= 0 for seconds in phases.values()), phases
    assert sum(phases.values()) <= manifest["timings_s"]["train"] + 1e-6  # parts of the method's time
