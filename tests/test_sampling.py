"""The batched decoding loop (mscl.sampling.decode_batch) against transformers' generate, and its sampler."""
from __future__ import annotations

import copy

import pytest
import torch

from mscl.models import attach_lora, format_prompt
from mscl.params import LoraParams
from mscl.sampling import (answer_questions, common_prefix_length, decode_batch, generate, pick_tokens,
                           sample_responses, uses_own_loop)

QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?",
             "What is the chemical symbol of the element with atomic number 26, iron?", "2+2?",
             "Which river flows through Cairo?"]


@pytest.fixture(scope="module")
def varied(tiny):
    """The tiny model with larger random weights: its greedy continuations differ from prompt to
    prompt and from step to step (the tiny model's own repeat one newline)."""
    model, tok = tiny
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model, tok


def _ids(tok, questions):
    return tok([format_prompt(tok, q) for q in questions])["input_ids"]


def test_greedy_matches_transformers_generate(varied):
    model, tok = varied
    ours = answer_questions(model, tok, QUESTIONS, max_new_tokens=8, batch_size=3, backend="loop")
    # transformers, one prompt at a time (no padding at all)
    theirs = [answer_questions(model, tok, [q], max_new_tokens=8, batch_size=1, backend="hf")[0] for q in QUESTIONS]
    assert ours == theirs
    assert len(set(ours)) == len(QUESTIONS)


def test_auto_backend_picks_the_loop_for_plain_models_only(tiny):
    model, tok = tiny
    assert uses_own_loop(model)
    peft_model = attach_lora(copy.deepcopy(model), LoraParams(r=2, alpha=4, dropout=0.0, target_modules=["q_proj"]))
    assert not uses_own_loop(peft_model)  # PEFT's own generate: model.generate is used
    with pytest.raises(ValueError, match="unknown generation backend 'vllm2'"):
        generate(model, tok, ["x"], max_new_tokens=1, batch_size=1, backend="vllm2")


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4, 5], [1, 2]]) == 2
    assert common_prefix_length([[1, 2], [3]]) == 0
    assert common_prefix_length([[7, 8, 9]]) == 3


def test_k_samples_share_the_prompt(varied):
    model, tok = varied
    ids = _ids(tok, QUESTIONS[:3])
    one = decode_batch(model, ids, max_new_tokens=6, k=1, pad_token_id=tok.pad_token_id)
    three = decode_batch(model, ids, max_new_tokens=6, k=3, pad_token_id=tok.pad_token_id)
    assert three == [row for row in one for _ in range(3)]  # greedy: K identical rows, prompt-major


def test_finished_rows_leave_without_changing_the_others(varied):
    model, tok = varied
    ids = _ids(tok, QUESTIONS)
    full = decode_batch(model, ids, max_new_tokens=10, pad_token_id=tok.pad_token_id)
    stop = full[0][3]  # row 0 stops at its 4th token; other rows may stop wherever this token appears
    pruned = decode_batch(model, ids, max_new_tokens=10, stop_ids=[stop], pad_token_id=tok.pad_token_id)
    for before, after in zip(full, pruned):
        expected = before[: before.index(stop)] if stop in before else before
        assert after == expected
    assert len(pruned[0]) == 3


class _Scripted(torch.nn.Module):
    """The tiny model with the tokens of each generation step forced (for the stopping rules)."""

    def __init__(self, inner, script):
        super().__init__()
        self.inner, self.script, self.step = inner, script, 0

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        if "position_ids" in kwargs:  # the prompt's (suffix) pass and every generation step
            forced = torch.full_like(out.logits[:, -1:], -1e9)
            forced[..., self.script[self.step]] = 0.0
            out.logits = forced
            self.step += 1
        return out


def test_first_line_only_stops_after_the_first_non_empty_line(tiny):
    model, tok = tiny
    newline = tok("\n", add_special_tokens=False)["input_ids"][-1]
    word = tok("Paris", add_special_tokens=False)["input_ids"][0]
    script = [newline, word, newline, word, word]
    ids = _ids(tok, QUESTIONS[:1])
    out = decode_batch(_Scripted(model, script), ids, max_new_tokens=5, first_line_only=True, tokenizer=tok,
                       pad_token_id=tok.pad_token_id)
    assert out == [[newline, word, newline]]  # a leading newline does not end the answer; the next one does
    out = decode_batch(_Scripted(model, script), ids, max_new_tokens=5, pad_token_id=tok.pad_token_id)
    assert out == [script]


def test_sampling_is_seeded_and_varies_with_the_seed(varied):
    model, tok = varied
    kw = dict(k=3, temperature=1.0, top_p=0.9, max_new_tokens=5, batch_size=6)
    a = sample_responses(model, tok, QUESTIONS, seed=0, **kw)
    assert a == sample_responses(model, tok, QUESTIONS, seed=0, **kw)
    assert a != sample_responses(model, tok, QUESTIONS, seed=1, **kw)
    assert [len(x) for x in a] == [3] * len(QUESTIONS)


@pytest.mark.parametrize("vocab", [16, 4096])  # the nucleus inside the top 1024, and wider than it
def test_top_p_draws_from_the_nucleus_only(vocab):
    g = torch.Generator().manual_seed(0)
    if vocab == 16:
        probs = torch.tensor([0.5, 0.3, 0.15, 0.05] + [0.0] * 12)
        nucleus, top_p = {0: 0.5 / 0.8, 1: 0.3 / 0.8}, 0.8  # 0.5 + 0.3 reaches 0.8: tokens 0 and 1 only
    else:
        probs = torch.ones(vocab) / vocab  # flat: the nucleus is the first half of the sorted order
        top_p = 0.5
    logits = probs.clamp(min=1e-30).log().expand(4000, -1)
    drawn = pick_tokens(logits, do_sample=True, top_p=top_p, generator=g)
    if vocab == 16:
        counts = torch.bincount(drawn, minlength=vocab).float() / len(drawn)
        assert set(drawn.tolist()) == set(nucleus)
        for token, p in nucleus.items():
            assert abs(counts[token] - p) < 0.03
    else:
        assert len(set(drawn.tolist())) > 1000  # wider than the 1024 cap, drawn from the sorted path
        assert len(set(drawn.tolist())) <= vocab // 2
    assert torch.equal(pick_tokens(logits[:3], do_sample=False), logits[:3].argmax(-1))


def test_sliding_window_models_use_generate_once_the_window_is_reached(tiny, monkeypatch):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from mscl import sampling

    _, tok = tiny
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=8,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=256,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    assert sampling.sliding_window(model) == 8 and sampling.sliding_window(tiny[0]) is None
    theirs = answer_questions(model, tok, QUESTIONS, max_new_tokens=4, batch_size=5, backend="hf")

    def unused(*args, **kwargs):
        raise AssertionError("the own loop ran past an 8-token sliding window")

    monkeypatch.setattr(sampling, "decode_batch", unused)
    assert answer_questions(model, tok, QUESTIONS, max_new_tokens=4, batch_size=5) == theirs
