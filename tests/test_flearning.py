"""F-Learning on the tiny random model: old knowledge, exact subtraction, forgetting, saved chain."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from mscl.benchmark import Record
from mscl.common.io import read_json
from mscl.common.params import LoraParams, TrainParams, load_params
from mscl.engine.models import attach_lora
from mscl.engine.training import build_examples, pack_sequences, response_logps
from mscl.methods import StageContext, get_method
from mscl.methods.flearning import FORGETTING_ADAPTER, STATE_FILE, merge_scaled_lora, old_knowledge
from tests.conftest import make_record

LORA = LoraParams(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
TRAIN = TrainParams(epochs=2.0, batch_size=2, grad_accum=1, learning_rate=5e-3, warmup_ratio=0.0, weight_decay=0.0,
                    max_length=128, lora=LORA)
STAGE1 = [make_record(0, "What is the capital of France?", "Paris"),
          make_record(1, "Which currency does Japan use?", "JPY")]
STAGE2 = [make_record(0, "What is the capital of France?", "Lyon", previous_answer="Paris", edited=True),
          make_record(1, "Which currency does Japan use?", "KRW", previous_answer="JPY", edited=True),
          make_record(2, "What is the chemical symbol of iron?", "Fe")]


def _params(lam=1.0, epochs=2.0, lr=5e-3):
    params = load_params("smoke", "training")
    fl = dataclasses.replace(params.flearning, forgetting_lambda=lam, forgetting_epochs=epochs,
                             forgetting_learning_rate=lr)
    return dataclasses.replace(params, train=TRAIN, flearning=fl)


def _ctx(tok, params, folder, stage, records, previous=()):
    return StageContext(stream="domain_independent", stage=stage, stage_dir=folder / f"stage{stage}",
                        previous_dirs=list(previous), params=params, tokenizer=tok, sets={"train": records},
                        seed=stage)


def _logps(model, tok, records):
    seqs = [ex["sequences"][0] for ex in build_examples(tok, records, 128)]
    with torch.no_grad():
        return response_logps(model.eval(), pack_sequences(seqs, tok.pad_token_id))


def test_old_knowledge_restores_the_replaced_answers():
    assert [(r.id, r.answer) for r in old_knowledge(STAGE2)] == [("r0", "Paris"), ("r1", "JPY")]
    record = Record(id="s/2/train/f", fact_id="f", stream="domain_independent", stage=2, domain="finance",
                    split="train", question="Which currency does Japan use?", answer="KRW", previous_answer="JPY",
                    edited=True, shared_with=None, source="x")
    (old,) = old_knowledge([record])
    assert isinstance(old, Record) and old.answer == "JPY" and old.question == record.question
    assert old_knowledge(STAGE1) == []


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_subtraction_moves_weights_by_exactly_minus_lambda_delta(tiny, lam):
    model, _ = tiny
    torch.manual_seed(0)
    peft_model = attach_lora(copy.deepcopy(model), LORA)
    inner = peft_model.base_model.model
    expected = {}
    for name, module in inner.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.2)
            delta = module.lora_B["default"].weight @ module.lora_A["default"].weight * module.scaling["default"]
            expected[name] = module.base_layer.weight.detach().clone() - lam * delta.detach()
    assert len(expected) == 2 * model.config.num_hidden_layers
    subtracted = merge_scaled_lora(peft_model, -lam)
    for name, weight in expected.items():
        assert torch.allclose(subtracted.get_submodule(name).weight, weight, atol=1e-6), name
    # nothing else moved
    untouched = dict(model.named_parameters())
    for name, p in subtracted.named_parameters():
        if name.rsplit(".", 1)[0] not in expected:
            assert torch.equal(p, untouched[name]), name


def test_forgetting_lowers_the_old_answers_logp(tiny, tmp_path):
    """Subtracting the delta that raised the old answers' log-probability lowers it below where it
    started: a first-order argument, so the forgetting LoRA is kept small (a few steps at 5e-3)."""
    model, tok = tiny
    params = _params(lam=1.0, epochs=4.0)
    method = get_method("flearning", params)
    ctx = _ctx(tok, params, tmp_path, 2, STAGE2)
    old = old_knowledge(STAGE2)
    start = copy.deepcopy(model)
    before = _logps(start, tok, old)
    peft_model = method.train_forgetting(start, ctx, old)
    learned = _logps(peft_model, tok, old)
    assert (learned > before).all(), "the forgetting LoRA should first learn the old answers"
    after = _logps(merge_scaled_lora(peft_model, -1.0), tok, old)
    assert (after < before).all(), (before, learned, after)


def test_stage_chain_skips_forgetting_without_edits_and_round_trips(tiny, tmp_path):
    model, tok = tiny
    params = _params(lam=0.8)
    method = get_method("flearning", params)
    ctx1 = _ctx(tok, params, tmp_path, 1, STAGE1)
    method.train_stage(method.start_model(copy.deepcopy(model), ctx1), ctx1)
    assert read_json(ctx1.stage_dir / STATE_FILE) == {"lambda": 0.8, "old_records": 0, "forgetting_adapter": False}
    assert not (ctx1.stage_dir / FORGETTING_ADAPTER).exists()
    ctx2 = _ctx(tok, params, tmp_path, 2, STAGE2, [ctx1.stage_dir])
    trained = method.train_stage(method.start_model(copy.deepcopy(model), ctx2), ctx2)
    assert ctx2.info["flearning"] == {"lambda": 0.8, "old_records": 2, "forgetting_adapter": True}
    assert (ctx2.stage_dir / FORGETTING_ADAPTER / "adapter_config.json").is_file()
    assert (ctx2.stage_dir / "adapter" / "adapter_config.json").is_file()
    ctx3 = _ctx(tok, params, tmp_path, 3, [], [ctx1.stage_dir, ctx2.stage_dir])
    rebuilt = method.start_model(copy.deepcopy(model), ctx3)
    ours, theirs = trained.state_dict(), rebuilt.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-6) for k in ours)
