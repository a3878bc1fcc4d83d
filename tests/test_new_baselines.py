"""The baselines beyond the paper on the tiny random model: replay, DPO on revisions, PEFT's OSF."""
from __future__ import annotations

import copy
import dataclasses
import types

import pytest
import torch

from mscl.benchmark import Record
from mscl.common.params import LoraParams, TrainParams, load_params
from mscl.core.losses import DPOObjective, dpo_loss
from mscl.methods import StageContext, get_method
from mscl.methods.dpo import revision_pairs
from mscl.methods.osf import DELTA_FILE, attach_osf, osf_layers
from mscl.methods.replay import draw_replay, replay_pool

LORA = LoraParams(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
TRAIN = TrainParams(epochs=2.0, batch_size=2, grad_accum=1, learning_rate=5e-3, warmup_ratio=0.0, weight_decay=0.0,
                    max_length=128, lora=LORA)


def record(stage: int, fact: str, question: str, answer: str, previous: str | None = None,
           split: str = "train") -> Record:
    return Record(id=f"s/{stage}/{split}/{fact}", fact_id=fact, stream="domain_independent", stage=stage,
                  domain="finance", split=split, question=question, answer=answer, previous_answer=previous,
                  edited=previous is not None, shared_with=None, source="test")


STAGE1 = [record(1, "france", "What is the capital of France?", "Paris"),
          record(1, "japan", "Which currency does Japan use?", "JPY"),
          record(1, "iron", "What is the chemical symbol of iron?", "Fe"),
          record(1, "kept", "What is the capital of Peru?", "Lima")]
STAGE2 = [record(2, "france", "What is the capital of France?", "Lyon", previous="Paris"),
          record(2, "japan", "Which currency does Japan use?", "JPY")]
HELDOUT = [record(1, "kept", "Name the capital of Peru.", "Lima", split="heldout")]


def _params(**sections):
    params = load_params("smoke", "training")
    changed = {name: dataclasses.replace(getattr(params, name), **values) for name, values in sections.items()}
    return dataclasses.replace(params, train=TRAIN, **changed)


def _ctx(tok, params, folder, stage, train, previous=(), earlier=(), heldout=()):
    return StageContext(stream="domain_independent", stage=stage, stage_dir=folder / f"stage{stage}",
                        previous_dirs=list(previous), params=params, tokenizer=tok,
                        sets={"train": list(train), "heldout": list(heldout)}, seed=stage,
                        earlier_train=list(earlier))


# --------------------------------------------------------------------------- replay
def test_replay_pool_holds_earlier_facts_with_their_current_answers():
    pool = replay_pool(STAGE1, STAGE2, excluded_facts={"kept"})
    assert [(r.fact_id, r.answer, r.stage) for r in pool] == [("france", "Lyon", 1), ("japan", "JPY", 1),
                                                              ("iron", "Fe", 1)]
    assert all(r.answer != "Paris" for r in pool), "a replayed pair never teaches a replaced answer"


def test_replay_draw_is_seeded_and_sized_by_the_share():
    pool = replay_pool(STAGE1, STAGE2, excluded_facts=set())
    assert len(draw_replay(pool, 0.5, seed=0, stage=2)) == 2
    assert draw_replay(pool, 0.5, seed=0, stage=2) == draw_replay(pool, 0.5, seed=0, stage=2)
    assert draw_replay(pool, 0.0, seed=0, stage=2) == []
    assert sorted(r.fact_id for r in draw_replay(pool, 1.0, seed=3, stage=2)) == sorted(r.fact_id for r in pool)


def test_replay_mixes_only_earlier_pairs_and_never_the_heldout_facts(tiny, tmp_path):
    _, tok = tiny
    method = get_method("replay", _params(replay={"share": 1.0}))
    ctx = _ctx(tok, method.params, tmp_path, 2, STAGE2, earlier=STAGE1, heldout=HELDOUT)
    examples = method.examples(None, ctx)
    replayed = ctx.info["replay"]
    assert replayed["pool"] == 3 and replayed["replayed"] == 3
    assert all(i.startswith("s/1/train/") for i in replayed["ids"]) and "s/1/train/kept" not in replayed["ids"]
    assert len(examples) == len(STAGE2) + 3
    first = get_method("replay", _params(replay={"share": 1.0}))
    stage1 = _ctx(tok, first.params, tmp_path, 1, STAGE1)
    assert len(first.examples(None, stage1)) == len(STAGE1) and stage1.info["replay"]["replayed"] == 0


# --------------------------------------------------------------------------- DPO
def _trl_dpo_loss(tiny, tmp_path, per_token, completion, ref_chosen, ref_rejected, beta):
    """``trl.DPOTrainer``'s own loss (``_compute_loss``) on a batch whose model output is given."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model, tok = tiny
    data = Dataset.from_dict({"prompt": ["a", "b"], "chosen": [" x", " y"], "rejected": [" z", " w"]})
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), beta=beta, loss_type=["sigmoid"], report_to="none",
                     use_cpu=True, precompute_ref_log_probs=True)
    trainer = DPOTrainer(model=copy.deepcopy(model), args=args, train_dataset=data, processing_class=tok)
    output = types.SimpleNamespace(log_probs=per_token, entropy=torch.zeros_like(per_token),
                                   mean_logits=torch.zeros_like(per_token), is_top1=torch.zeros_like(per_token).bool())

    def stub(**_):
        return output

    stub.training = True
    rows = per_token.shape[0]
    inputs = {"input_ids": torch.ones(rows, completion.shape[1], dtype=torch.long),
              "attention_mask": torch.ones_like(completion), "completion_mask": completion,
              "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    return trainer._compute_loss(stub, inputs, return_outputs=False)


def test_dpo_loss_equals_trls_on_the_same_logprobs(tiny, tmp_path):
    generator = torch.Generator().manual_seed(0)
    pairs, length, beta = 3, 5, 0.1
    completion = torch.zeros(2 * pairs, length, dtype=torch.long)
    completion[:, 2:] = 1
    per_token = -torch.rand(2 * pairs, length - 1, generator=generator) * 3 * completion[:, 1:]
    ref_chosen, ref_rejected = (-torch.rand(pairs, generator=generator) * 4 for _ in range(2))
    theirs = _trl_dpo_loss(tiny, tmp_path, per_token, completion, ref_chosen, ref_rejected, beta)
    logps = per_token.sum(1)
    ours = dpo_loss(logps[:pairs], logps[pairs:], ref_chosen, ref_rejected, beta)
    assert torch.allclose(ours, theirs, atol=1e-6), (ours, theirs)
    # the objective pairs the i-th chosen with the i-th rejected of a batch laid out as the trainer packs it
    interleaved = torch.stack([logps[:pairs], logps[pairs:]], 1).flatten()
    refs = torch.stack([ref_chosen, ref_rejected], 1).flatten()
    aligned = torch.tensor([True, False] * pairs)
    term, zero = DPOObjective(beta=beta).terms(interleaved, refs, aligned)
    assert torch.allclose(term, theirs, atol=1e-6) and float(zero) == 0.0


@pytest.mark.trains
def test_dpo_pairs_are_the_revisions_only_and_train(tiny, tmp_path):
    model, tok = tiny
    assert revision_pairs(STAGE2) == [{"id": "s/2/train/france", "responses": [
        {"response": "Lyon", "aligned": True}, {"response": "Paris", "aligned": False}]}]
    method = get_method("dpo", _params())
    ctx = _ctx(tok, method.params, tmp_path, 2, STAGE2)
    ctx.stage_dir.mkdir(parents=True)
    trained = method.train_stage(copy.deepcopy(model), ctx)
    assert ctx.info["dpo"]["pairs"] == 1
    history = [h for h in ctx.info["log_history"] if "preference" in h]
    assert history and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert trained is not None and (ctx.stage_dir / "adapter").is_dir()


# --------------------------------------------------------------------------- OSF
def test_osf_gradient_is_orthogonal_to_the_frozen_subspace(tiny):
    """PEFT's definition: the trainable factors' gradients have no component along the frozen top
    singular directions (U_high^T dU_low = 0, dV_low V_high^T = 0)."""
    from peft.tuners.osf.utils import decompose_weight_matrix

    model, tok = tiny
    peft_model = attach_osf(copy.deepcopy(model), ["q_proj", "v_proj"], 0.5)
    batch = tok(["The capital of France is Paris."], return_tensors="pt")
    peft_model(**batch, labels=batch["input_ids"]).loss.backward()
    layers = osf_layers(peft_model)
    assert len(layers) == 2 * model.config.num_hidden_layers
    for name, layer in layers.items():
        adapter = layer.active_adapters[0]
        frozen = decompose_weight_matrix(layer.get_base_layer().weight.detach(), layer.effective_rank[adapter])
        params = layer.osf_svd_params[adapter]
        assert params["U_low"].grad.abs().sum() > 0, name
        assert (frozen["U_high"].T @ params["U_low"].grad).abs().max() < 1e-5, name
        assert (params["V_low"].grad @ frozen["V_high"].T).abs().max() < 1e-5, name


@pytest.mark.trains
def test_osf_stage_chain_rebuilds_the_trained_model(tiny, tmp_path):
    model, tok = tiny
    params = _params(osf={"learning_rate": 1e-3})
    params = dataclasses.replace(params, train=dataclasses.replace(TRAIN, lora=LORA))
    method = get_method("osf", params)
    ctx2 = _ctx(tok, params, tmp_path, 2, STAGE1)
    ctx2.stage_dir.mkdir(parents=True)
    start = method.start_model(copy.deepcopy(model), ctx2)
    before = {k: v.clone() for k, v in start.state_dict().items()}
    trained = method.train_stage(start, ctx2)
    assert ctx2.info["osf"]["effective_rank"] == params.osf.effective_rank
    assert (ctx2.stage_dir / DELTA_FILE).is_file()
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)
    ctx3 = _ctx(tok, params, tmp_path, 3, STAGE2, previous=[ctx2.stage_dir])
    assert method.effective_rank(ctx3) == pytest.approx(params.osf.effective_rank + params.osf.rank_step)
    rebuilt = method.start_model(copy.deepcopy(model), ctx3)
    ours, theirs = trained.state_dict(), rebuilt.state_dict()
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-6) for k in ours)
