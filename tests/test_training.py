"""The stage trainer on the tiny random model: the preference bias moves log-ratios the right way."""
from __future__ import annotations

import copy

import pytest
import torch

from mscl.common.params import LoraParams, PBLParams, TrainParams
from mscl.core.losses import PreferenceObjective
from mscl.core.preference import build_preference_data, split_responses
from mscl.engine.models import attach_lora
from mscl.engine.training import (
    ContextLengthError,
    build_examples,
    encode_pair,
    pack_examples,
    pack_sequences,
    reference_logps,
    response_logps,
    train_lora,
)
from tests.conftest import make_record

LORA = LoraParams(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


def _pbl(**overrides) -> PBLParams:
    values = dict(k=2, temperature=1.0, top_p=1.0, max_new_tokens=4, alpha=1.0, beta=1.0, variant="sigmoid",
                  scale=1.0, clamp=0.0, reduction="mean", nll_weight=1.0, preference_weight=1.0,
                  grad_norms_every=0, resample="stage_start")
    values.update(overrides)
    return PBLParams(**values)


def _train(epochs=4.0, lr=5e-3) -> TrainParams:
    return TrainParams(epochs=epochs, batch_size=2, grad_accum=1, learning_rate=lr, warmup_ratio=0.0,
                       weight_decay=0.0, max_length=128, lora=LORA)


RECORDS = [make_record(0, "What is the capital of France?", "Paris"),
           make_record(1, "What is the chemical symbol of iron?", "Fe"),
           make_record(2, "Which currency does Japan use?", "JPY"),
           make_record(3, "Which city has the airport CDG?", "Paris")]
ROWS = [
    {"id": r.id, "question": r.question, "answer": r.answer,
     "responses": split_responses([f"It is {r.answer}.", "Berlin", "Madrid"], r.answer)}
    for r in RECORDS
]


def _logps_by_kind(model, tokenizer, examples):
    seqs = [s for ex in examples for s in ex["sequences"] if s["kind"] == "response"]
    batch = pack_sequences(seqs, tokenizer.pad_token_id)
    with torch.no_grad():
        logps = response_logps(model, batch)
    ratios = logps - batch["ref_logps"]
    return ratios[batch["aligned"]], ratios[~batch["aligned"]]


def test_packed_rows_score_each_response_as_if_alone(tiny):
    """One row per question (prompt once, every response after it) gives the same log-probs as
    scoring every prompt+response sequence in a row of its own."""
    model, tok = tiny
    examples = build_examples(tok, RECORDS, 128, ROWS)
    seqs = [s for ex in examples for s in ex["sequences"]]
    with torch.no_grad():
        packed = response_logps(model, pack_examples(examples, tok.pad_token_id))
        alone = response_logps(model, pack_sequences(seqs, tok.pad_token_id))
    assert packed.shape == (len(seqs),)
    assert torch.allclose(packed, alone, atol=1e-4)


def test_encode_pair_masks_prompt(tiny):
    _, tok = tiny
    enc = encode_pair(tok, "What is the capital of France?", "Paris", 128)
    n_resp = enc["response_len"]
    assert all(label == -100 for label in enc["labels"][:-n_resp])
    assert enc["labels"][-n_resp:] == enc["input_ids"][-n_resp:]
    assert tok.decode(enc["input_ids"][-n_resp:]).startswith("Paris")


def test_too_long_question_names_the_record(tiny):
    _, tok = tiny
    with pytest.raises(ContextLengthError, match="record r9.*max_length=16"):
        encode_pair(tok, "word " * 50, "x", 16, record_id="r9")


def test_split_marks_containment_and_merges_duplicates():
    split = split_responses(["Paris!", "paris", "Berlin", "Berlin", ""], "Paris")
    assert [(s["response"], s["aligned"], s["count"]) for s in split] == [
        ("Paris!", True, 1), ("paris", True, 1), ("Berlin", False, 2)]


def test_pbl_raises_aligned_and_lowers_conflicting_logratios(tiny):
    model, tok = tiny
    model = copy.deepcopy(model)
    examples = build_examples(tok, RECORDS, 128, ROWS)
    reference_logps(model, tok, examples, batch_size=8)
    torch.manual_seed(0)
    peft_model = attach_lora(model, LORA)
    history = train_lora(peft_model, tok, examples, _train(), "/tmp/mscl-test-trainer", seed=0,
                         objective=PreferenceObjective.from_params(_pbl()))
    aligned, conflict = _logps_by_kind(peft_model, tok, examples)
    assert aligned.mean() > 0.1, aligned
    assert conflict.mean() < -0.1, conflict
    logged = [h for h in history if "preference" in h]
    assert logged and all("nll" in h for h in logged)


def test_cit_lowers_gold_nll(tiny):
    model, tok = tiny
    model = copy.deepcopy(model)
    examples = build_examples(tok, RECORDS, 128)
    batch = pack_sequences([ex["sequences"][0] for ex in examples], tok.pad_token_id)
    with torch.no_grad():
        before = response_logps(model, batch).sum()
    peft_model = attach_lora(model, LORA)
    train_lora(peft_model, tok, examples, _train(), "/tmp/mscl-test-trainer", seed=0)
    with torch.no_grad():
        after = response_logps(peft_model, batch).sum()
    assert after > before + 1.0


def test_sampling_builds_a_split_for_every_record(tiny):
    model, tok = tiny
    rows = build_preference_data(model, tok, RECORDS, k=3, temperature=1.0, top_p=1.0, max_new_tokens=4,
                                 batch_size=8, seed=0)
    assert [r["id"] for r in rows] == [r.id for r in RECORDS]
    again = build_preference_data(model, tok, RECORDS, k=3, temperature=1.0, top_p=1.0, max_new_tokens=4,
                                  batch_size=8, seed=0)
    assert rows == again  # seeded sampling
    for row in rows:
        assert 1 <= sum(x["count"] for x in row["responses"]) <= 3


def test_length_grouped_sampler_groups_and_reshuffles():
    from mscl.engine.training import LengthGroupedSampler

    lengths = [40 + (i * 37) % 60 for i in range(22)]
    sampler = LengthGroupedSampler(lengths, batch_size=4, seed=0)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(22))  # every example once
        batches = [order[i : i + 4] for i in range(0, 22, 4)]
        assert len(batches[-1]) == 2  # the partial batch is last, whole
        # grouped: each full batch spans far less than the whole range of lengths
        spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches[:-1]]
        assert max(spans) < 0.5 * (max(lengths) - min(lengths))
        epochs.append(order)
    assert epochs[0] != epochs[1] != epochs[2]
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]  # (seed, epoch) fixes the order
    assert list(LengthGroupedSampler(lengths, 4, seed=1)) != epochs[0]


def test_pbl_at_preference_weight_0_has_cits_loss_and_gradients(tiny):
    """With ``preference_weight: 0`` the PBL objective on a batch with sampled responses gives CIT's
    loss on the same gold pairs, and the same gradient on every LoRA weight: the responses ride
    along in the packed rows but add nothing."""
    from collections import defaultdict
    from types import SimpleNamespace

    from mscl.engine.training import StageTrainer

    model, tok = tiny
    rows = [{"id": r.id, "responses": [{"response": text, "aligned": j == 0, "ref_logp": -3.0 - j, "count": 1}
                                       for j, text in enumerate(["Paris", "Lyon", "Berlin"])]} for r in RECORDS]

    def loss_and_grads(objective, with_responses: bool):
        torch.manual_seed(0)
        peft_model = attach_lora(copy.deepcopy(model), LORA)
        for name, weight in peft_model.named_parameters():  # lora_B starts at 0: make every gradient non-zero
            if "lora_B" in name:
                torch.nn.init.normal_(weight, std=0.02)
        trainer = object.__new__(StageTrainer)  # compute_loss needs only these attributes
        trainer.bias, trainer._metrics, trainer.state = objective, defaultdict(list), SimpleNamespace(global_step=0)
        trainer._tokens, trainer._since = 0, 0.0
        examples = build_examples(tok, RECORDS, 128, rows if with_responses else None)
        loss = trainer.compute_loss(peft_model, pack_examples(examples, tok.pad_token_id))
        loss.backward()
        return loss.item(), {n: w.grad.clone() for n, w in peft_model.named_parameters() if w.requires_grad}

    cit_loss, cit_grads = loss_and_grads(None, with_responses=False)
    pbl_loss, pbl_grads = loss_and_grads(PreferenceObjective.from_params(_pbl(preference_weight=0.0)), True)
    assert pbl_loss == pytest.approx(cit_loss, rel=1e-5)
    assert cit_grads.keys() == pbl_grads.keys() and cit_grads
    for name, grad in cit_grads.items():
        torch.testing.assert_close(pbl_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # and the test can fail: at weight 1 the responses change both
    one_loss, one_grads = loss_and_grads(PreferenceObjective.from_params(_pbl(preference_weight=1.0)), True)
    assert one_loss != pytest.approx(cit_loss, rel=1e-3)
    assert any(not torch.allclose(one_grads[n], g, rtol=1e-3, atol=1e-6) for n, g in cit_grads.items())


def test_each_terms_gradient_norm_is_logged_without_changing_the_step(tiny):
    """``grad_norms_every`` logs the NLL's, L_PP's and L_NP's gradient norms; the trained weights are
    those of a run that logs none."""
    examples = build_examples(tiny[1], RECORDS, 128, ROWS)
    reference_logps(tiny[0], tiny[1], examples, batch_size=8)
    runs = {}
    for every in (0, 1):
        torch.manual_seed(0)
        peft_model = attach_lora(copy.deepcopy(tiny[0]), LORA)
        history = train_lora(peft_model, tiny[1], examples, _train(epochs=1), "/tmp/mscl-test-norms", seed=0,
                             objective=PreferenceObjective.from_params(_pbl(grad_norms_every=every)))
        runs[every] = (history, {n: w.detach().clone() for n, w in peft_model.named_parameters() if "lora_" in n})
    logged = [h for h in runs[1][0] if "grad_norm_nll" in h]
    assert logged and all(h["grad_norm_nll"] > 0 and h["grad_norm_conflict"] > 0 for h in logged)
    assert not any("grad_norm_nll" in h for h in runs[0][0])
    for name, weight in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][name], weight, rtol=0, atol=0, msg=name)


def test_a_stage_writes_tensorboard_logs_that_tensorboards_reader_loads(scratch):
    """Each stage's logged values (each loss term, learning rate, gradient norms, tokens/s) are in
    TensorBoard event files beside its manifest, and the notebooks read them back from there."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mscl.common.paths import run_dir
    from mscl.evaluation.report import tensorboard_history
    from mscl.pipeline.stages import run_stage

    manifest = run_stage("smoke", "domain_independent", "pbl", 2, verbose=False)
    folder = run_dir("smoke", "tiny-random", "domain_independent", "pbl", 2, seed=0)
    (events,) = (folder / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/nll", "train/preference", "train/learning_rate", "train/grad_norm",
            "train/grad_norm_nll", "train/grad_norm_conflict", "train/tokens_per_s"} <= tags, tags
    from mscl.common.io import read_json

    history = [(h["step"], h["loss"]) for h in tensorboard_history(folder) if "loss" in h]
    logged = [(h["step"], h["loss"]) for h in read_json(folder / "train_log.json") if "loss" in h]
    assert history and [s for s, _ in history] == [s for s, _ in logged]  # the same steps as the Trainer's log
    assert [v for _, v in history] == pytest.approx([v for _, v in logged], rel=1e-6)  # stored as float32
    assert any(name.startswith("tensorboard/") for name in manifest["files"])  # recorded with the stage


def test_on_policy_samples_are_redrawn_before_every_later_epoch(scratch):
    """``pbl.resample: every_epoch`` draws the K samples again from the model being trained before
    epoch 2, scored by the stage-start reference; ``stage_start`` draws them once."""
    import dataclasses

    from mscl.common.params import load_params
    from mscl.pipeline.stages import run_stage

    params = load_params("smoke", "training")
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, epochs=2.0),
                                 pbl=dataclasses.replace(params.pbl, resample="every_epoch"))
    manifest = run_stage("smoke", "domain_independent", "pbl", 2, params=params, verbose=False)
    by_epoch = manifest["method_info"]["preference_split_by_epoch"]
    assert len(by_epoch) == 2 and by_epoch[0] == manifest["method_info"]["preference_split"]
    assert all(split["questions"] == by_epoch[0]["questions"] for split in by_epoch)
    assert manifest["method_info"]["phases_s"]["sample"] > 0
    at_start = dataclasses.replace(params, pbl=dataclasses.replace(params.pbl, resample="stage_start"))
    once = run_stage("smoke", "domain_independent", "pbl", 2, params=at_start, runs_root=scratch / "once",
                     verbose=False)
    assert "preference_split_by_epoch" not in once["method_info"]
    assert once["config_hash"] != manifest["config_hash"]  # a setting of the stage's identity
