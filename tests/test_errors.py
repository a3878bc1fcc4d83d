"""Bad input and numerical trouble give clear errors, and nothing computed before is lost."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from mscl.common.params import load_params
from mscl.common.paths import run_dir
from mscl.core.losses import PreferenceObjective, preference_bias_loss
from mscl.engine import training
from mscl.engine.models import BackboneError, attach_lora
from mscl.methods import UnknownMethodError, get_method
from mscl.pipeline.stages import StaleRunError, run_stage
from tests.test_training import LORA, RECORDS, _pbl, _train


def test_unknown_method_lists_the_known_ones():
    known = r"known methods: .*cit.*dpo.*flearning.*mocl.*osf.*ours.*replay"
    with pytest.raises(UnknownMethodError, match=rf"unknown method 'sgd'; {known}"):
        get_method("sgd", load_params("smoke", "training"))


def test_unknown_stream_and_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("MSCL_ARTIFACTS", str(tmp_path))
    with pytest.raises(ValueError, match="unknown stream 'nope'; known: general, domain_independent, cross_domain"):
        run_stage("smoke", "nope", "cit", 1, runs_root=tmp_path / "runs")
    with pytest.raises(ValueError,
                       match=r"stream 'domain_independent' of profile 'smoke' has stages \[1, 2, 3, 4, 5\], not 9"):
        run_stage("smoke", "domain_independent", "cit", 9, runs_root=tmp_path / "runs")


def test_every_sample_aligned_or_every_one_conflicting_is_finite():
    policy = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    ref = torch.tensor([-1.5, -2.5, -2.0])
    for aligned in (torch.ones(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)):
        for variant in ("paper", "sigmoid"):
            loss = preference_bias_loss(policy, ref, aligned, alpha=1.0, beta=1.0, variant=variant)
            loss.backward()
            assert math.isfinite(loss.item()) and torch.isfinite(policy.grad).all()


def test_non_finite_loss_stops_with_the_step_number(tiny, monkeypatch, tmp_path):
    model, tok = tiny
    peft_model = attach_lora(copy.deepcopy(model), LORA)
    examples = training.build_examples(tok, RECORDS, 128)
    real = training.response_logps
    monkeypatch.setattr(training, "response_logps", lambda m, b: real(m, b) * float("nan"))
    with pytest.raises(training.NonFiniteLossError, match="non-finite loss .* at step 0"):
        training.train_lora(peft_model, tok, examples, _train(epochs=1), tmp_path, seed=0,
                            objective=PreferenceObjective.from_params(_pbl()))



def test_max_length_beyond_the_backbones_context(scratch):
    import dataclasses

    params = load_params("smoke", "training")
    long = dataclasses.replace(params, train=dataclasses.replace(params.train, max_length=100_000))
    with pytest.raises(training.ContextLengthError,
                       match="max_length=100000 exceeds the context of backbone 'tiny-random' \\(512"):
        run_stage("smoke", "domain_independent", "cit", 1, params=long, verbose=False)


def test_changed_params_are_not_silently_reused(scratch):
    import dataclasses

    run_stage("smoke", "domain_independent", "cit", 1, verbose=False)
    params = load_params("smoke", "training")
    other = dataclasses.replace(params, train=dataclasses.replace(params.train, learning_rate=0.5))
    advice = "python -m mscl clean --profile smoke --stream domain_independent --method cit --stage 1"
    with pytest.raises(StaleRunError, match=f"other parameters.*{advice}"):
        run_stage("smoke", "domain_independent", "cit", 1, params=other, verbose=False)


def test_a_stage_from_another_backbone_is_refused(scratch):
    manifest = run_stage("smoke", "domain_independent", "cit", 1, verbose=False)
    path = run_dir("smoke", "tiny-random", "domain_independent", "cit", 1, seed=0) / "manifest.json"
    data = json.loads(path.read_text())
    data["backbone"] = "gemma3-270m"
    data["config_hash"] = manifest["config_hash"]
    path.write_text(json.dumps(data))
    with pytest.raises(BackboneError, match="trained on backbone 'gemma3-270m', not 'tiny-random'"):
        run_stage("smoke", "domain_independent", "cit", 2, verbose=False)
