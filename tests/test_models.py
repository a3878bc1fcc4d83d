"""Backbones: every name resolves, the embedded SmolLM2 answers, the safetensors cache is reused."""
from __future__ import annotations

import time

import pytest
import torch

from mscl.common.params import LoraParams
from mscl.engine.generation import answer_questions
from mscl.engine.models import (
    BackboneError,
    attach_lora,
    cached_backbone_dir,
    format_prompt,
    load_backbone,
    merge_lora,
    tiny_random_model,
)

LORA = LoraParams(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])


def test_tiny_random_loads_and_generates(tiny):
    model, tok = tiny
    out = answer_questions(model, tok, ["What is the capital of France?"], max_new_tokens=4, batch_size=1)
    assert len(out) == 1 and isinstance(out[0], str)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000


def test_tiny_random_is_seeded(tiny):
    _, tok = tiny
    a, b, c = (tiny_random_model(tok, seed) for seed in (0, 0, 1))
    assert torch.equal(a.model.layers[0].mlp.up_proj.weight, b.model.layers[0].mlp.up_proj.weight)
    assert not torch.equal(a.model.layers[0].mlp.up_proj.weight, c.model.layers[0].mlp.up_proj.weight)


@pytest.mark.slow
def test_smollm2_answers_paris_and_reuses_its_cache():
    model, tok = load_backbone("smollm2-135m")
    answer = answer_questions(model, tok, ["What is the capital of France?"], max_new_tokens=24, batch_size=1)[0]
    assert "paris" in answer.lower(), answer
    weights = cached_backbone_dir("smollm2-135m") / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    tic = time.perf_counter()
    load_backbone("smollm2-135m")
    seconds = time.perf_counter() - tic
    print(f"second load of smollm2-135m: {seconds:.2f}s")
    assert weights.stat().st_mtime_ns == stamp, "the safetensors cache was rewritten instead of reused"
    assert seconds < 5.0


@pytest.mark.slow
def test_gemma3_resolves_from_its_chunk_packages():
    model, tok = load_backbone("gemma3-270m")
    assert model.config.model_type.startswith("gemma3")
    assert not tok.chat_template  # a base model: the plain Question/Answer format is used
    assert format_prompt(tok, "What is 2+2?") == "Question: What is 2+2?\nAnswer:"
    out = answer_questions(model, tok, ["What is the capital of France?"], max_new_tokens=6, batch_size=1)
    assert "\n" not in out[0]


def test_local_directory_backbone(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, _ = load_backbone(str(tmp_path))
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(BackboneError, match="unknown backbone 'llama-9000'.*smollm2-135m.*tiny-random"):
        load_backbone("llama-9000")


def test_chat_template_prompt(tiny):
    _, tok = tiny
    prompt = format_prompt(tok, "What is 2+2?")
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_lora_starts_as_identity_and_merges_exactly(tiny):
    import copy

    model, tok = tiny
    model = copy.deepcopy(model)
    ids = tok(["What is the capital of France?"], return_tensors="pt")
    with torch.no_grad():
        base = model(**ids).logits
        peft_model = attach_lora(model, LORA)
        assert torch.allclose(peft_model(**ids).logits, base)
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.01)
        adapted = peft_model(**ids).logits
        merged = merge_lora(peft_model)(**ids).logits
    assert not torch.allclose(adapted, base)
    assert torch.allclose(merged, adapted, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["smollm2-135m", "gemma3-270m"])
def test_own_decoding_loop_answers_as_transformers_generate(backbone):
    """Greedy answers of mscl.engine.generation's own loop (batched, shared prefix, rows leaving) against
    model.generate one question at a time, on the real embedded backbones."""
    model, tok = load_backbone(backbone)
    questions = ["What is the capital of France?", "Who wrote Hamlet?", "What is the chemical symbol of iron?",
                 "Which river flows through Cairo?", "What is the ISO 3166-1 alpha-3 code of China?",
                 "On which continent is Russia?", "What is the atomic number of silicon?", "2+2?"]
    ours = answer_questions(model, tok, questions, max_new_tokens=12, batch_size=8, backend="loop")
    theirs = [answer_questions(model, tok, [q], max_new_tokens=12, batch_size=1, backend="hf")[0] for q in questions]
    assert ours == theirs


def test_a_hub_id_that_cannot_be_fetched_says_what_to_do(monkeypatch):
    from mscl.engine.models import BackboneError, load_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match=r"huggingface-cli download mscl-test/not-a-model.*HF_HUB_OFFLINE=0"):
        load_backbone("mscl-test/not-a-model")
