"""MoCL on the tiny random model: task matching, composition, frozen earlier modules, saved state."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from mscl.common.params import LoraParams, TrainParams, load_params
from mscl.engine.generation import answer_questions
from mscl.engine.models import attach_lora, format_prompt, merge_lora
from mscl.engine.training import build_examples, pack_sequences, response_logps, train_lora
from mscl.methods import StageContext, get_method
from mscl.methods.mocl import MoCLModel, prototype_key
from tests.conftest import make_record

LORA = LoraParams(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
TRAIN = TrainParams(epochs=2.0, batch_size=2, grad_accum=1, learning_rate=5e-3, warmup_ratio=0.0, weight_decay=0.0,
                    max_length=128, lora=LORA)
STAGE1 = [make_record(0, "What is the capital of France?", "Paris"),
          make_record(1, "What is the chemical symbol of iron?", "Fe"),
          make_record(2, "Which currency does Japan use?", "JPY")]
STAGE2 = [make_record(3, "Which city has the airport CDG?", "Paris"),
          make_record(4, "What is the ISO code of the euro?", "EUR")]


def _params():
    params = load_params("smoke", "training")
    return dataclasses.replace(params, train=TRAIN)


def _prompt_batch(tok, questions):
    enc = tok([format_prompt(tok, q) for q in questions], return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


def _logits(model, tok, questions):
    ids, mask = _prompt_batch(tok, questions)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits


def _ctx(tok, params, folder, stage, records, previous=()):
    return StageContext(stream="domain_independent", stage=stage, stage_dir=folder / f"stage{stage}",
                        previous_dirs=list(previous), params=params, tokenizer=tok, sets={"train": records},
                        seed=stage)


def test_weights_sum_to_one_and_favour_the_matching_key(tiny):
    model, tok = tiny
    mocl = MoCLModel(copy.deepcopy(model), LORA, temperature=0.125)
    questions = ["What is the capital of France?", "Which currency does Japan use?", "Name a prime number."]
    reps = mocl.prompt_representation(*_prompt_batch(tok, questions))
    for rep in reps:
        mocl.add_stage_module(rep)
    weights = mocl.composition_weights(reps)
    assert torch.allclose(weights.sum(-1), torch.ones(3))
    assert (weights > 0).all()
    assert weights.argmax(-1).tolist() == [0, 1, 2]   # key i equals input i's representation
    # a sharper temperature concentrates the same ranking
    mocl.temperature = 0.01
    assert (mocl.composition_weights(reps).diagonal() > weights.diagonal()).all()


def test_prototype_key_minimises_the_matching_loss():
    reps = torch.randn(16, 8) + 3.0
    key = prototype_key(reps)
    def loss(k):
        return (1 - torch.nn.functional.cosine_similarity(reps, k[None], dim=-1)).mean()
    assert all(loss(key) <= loss(key + 0.05 * torch.randn(8)) for _ in range(20))


def test_one_module_equals_the_merged_lora(tiny):
    model, tok = tiny
    torch.manual_seed(0)
    peft_model = attach_lora(copy.deepcopy(model), LORA)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)   # PEFT starts B at zero; a no-op adapter would prove nothing
    mocl = MoCLModel(copy.deepcopy(model), LORA, temperature=0.125)
    inner = peft_model.base_model.model
    pairs = {name: (inner.get_submodule(name).lora_A["default"].weight,
                    inner.get_submodule(name).lora_B["default"].weight)
             for name in mocl.lora_layers()}
    mocl.add_stage_module(torch.randn(model.config.hidden_size), pairs, trainable=False)
    merged = merge_lora(peft_model).eval()
    mocl.eval()
    questions = ["What is the capital of France?", "Which currency does Japan use?"]
    assert torch.allclose(_logits(mocl, tok, questions), _logits(merged, tok, questions), atol=1e-5)
    kwargs = dict(max_new_tokens=6, batch_size=2)
    assert answer_questions(mocl, tok, questions, **kwargs) == answer_questions(merged, tok, questions, **kwargs)


def test_generation_holds_the_prompt_weights(tiny):
    """Two modules: generating from one prompt equals generating with the backbone whose weights are
    W + sum_i alpha_i(prompt) * delta_i, alpha computed once from the prompt."""
    model, tok = tiny
    torch.manual_seed(1)
    mocl = MoCLModel(copy.deepcopy(model), LORA, temperature=0.125)
    for _ in range(2):
        mocl.add_stage_module(torch.randn(model.config.hidden_size))
        for layer in mocl.lora_layers().values():
            torch.nn.init.normal_(layer.lora_B[-1], std=0.3)
    mocl.eval()
    question = ["What is the capital of France?"]
    alpha = mocl.composition_weights(mocl.prompt_representation(*_prompt_batch(tok, question)))[0]
    assert 0.01 < alpha[0] < 0.99, "the check needs a genuine mixture"
    fixed = copy.deepcopy(model)
    with torch.no_grad():
        for name, layer in mocl.lora_layers().items():
            fixed.get_submodule(name).weight += sum(alpha[i] * layer.delta_weight(i) for i in range(2))
    kwargs = dict(max_new_tokens=8, batch_size=1)
    assert answer_questions(mocl, tok, question, **kwargs) == answer_questions(fixed.eval(), tok, question, **kwargs)


def test_a_stage_trains_only_its_own_module_and_key(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    params = _params()
    method = get_method("mocl", params)
    ctx1 = _ctx(tok, params, tmp_path, 1, STAGE1)
    stage1 = method.train_stage(method.start_model(copy.deepcopy(model), ctx1), ctx1)
    ctx2 = _ctx(tok, params, tmp_path, 2, STAGE2, [ctx1.stage_dir])
    before = {}

    def snapshot_then_train(model, *args, **kwargs):   # the stage's new module exists from here on
        before.update({n: p.detach().clone() for n, p in model.named_parameters()})
        return train_lora(model, *args, **kwargs)

    monkeypatch.setattr("mscl.methods.mocl.train_lora", snapshot_then_train)
    after_model = method.train_stage(method.start_model(copy.deepcopy(model), ctx2), ctx2)
    after = dict(after_model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    newest = {n for n in before if n.endswith((".lora_A.1", ".lora_B.1"))} | {"keys.1"}
    assert changed == newest, sorted(changed ^ newest)[:5]
    assert all(not p.requires_grad for p in after_model.parameters())   # frozen once the stage is over
    # the stage-1 module learned something (B left zero) and survives stage 2 unchanged
    first_b = [n for n in after if n.endswith(".lora_B.0")]
    assert all(torch.equal(after[n], dict(stage1.named_parameters())[n]) for n in first_b)
    assert any(after[n].abs().sum() > 0 for n in first_b)
    assert ctx2.info["mocl"]["modules"] == 2
    assert sum(ctx2.info["mocl"]["train_prompt_mean_weights"]) == pytest.approx(1.0)


def test_state_round_trips_through_start_model(tiny, tmp_path):
    model, tok = tiny
    params = _params()
    method = get_method("mocl", params)
    ctx1 = _ctx(tok, params, tmp_path, 1, STAGE1)
    method.train_stage(method.start_model(copy.deepcopy(model), ctx1), ctx1)
    ctx2 = _ctx(tok, params, tmp_path, 2, STAGE2, [ctx1.stage_dir])
    trained = method.train_stage(method.start_model(copy.deepcopy(model), ctx2), ctx2)
    ctx3 = _ctx(tok, params, tmp_path, 3, [], [ctx1.stage_dir, ctx2.stage_dir])
    rebuilt = method.start_model(copy.deepcopy(model), ctx3)
    assert rebuilt.n_modules == 2
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.keys, trained.keys))
    questions = [r.question for r in STAGE1 + STAGE2]
    assert torch.equal(_logits(rebuilt, tok, questions), _logits(trained, tok, questions))


def test_training_on_an_unregistered_sequence_is_an_error(tiny):
    model, tok = tiny
    mocl = MoCLModel(copy.deepcopy(model), LORA, temperature=0.125)
    mocl.add_stage_module(torch.randn(model.config.hidden_size))
    batch = pack_sequences(build_examples(tok, STAGE1, 128)[0]["sequences"], tok.pad_token_id)
    mocl.train()
    with pytest.raises(KeyError, match="not registered"):
        response_logps(mocl, batch)
    mocl.register_prompts(build_examples(tok, STAGE1, 128), tok, batch_size=4)
    assert torch.isfinite(response_logps(mocl, batch)).all()
