"""The batched decoding loop (mscl.engine.decoder.decode_batch) against transformers' generate, and its sampler."""
from __future__ import annotations

import copy

import pytest
import torch

from mscl.common.params import LoraParams
from mscl.engine.decoder import common_prefix_length, decode_batch, pick_tokens
from mscl.engine.generation import answer_questions, generate, sample_responses, uses_own_loop
from mscl.engine.models import attach_lora, format_prompt

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


@pytest.fixture
def shared_attention_calls():
    """Counts the calls of the registered shared-prompt attention during a test."""
    from transformers import AttentionInterface

    from mscl.engine import decoder

    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return decoder._shared_prompt_attention(*args, **kwargs)

    AttentionInterface.register(decoder.SHARED_PROMPT_ATTENTION, counting)
    yield calls
    AttentionInterface.register(decoder.SHARED_PROMPT_ATTENTION, decoder._shared_prompt_attention)


@pytest.fixture(params=["shared prompt", "k-fold copy"])
def decoding(request, monkeypatch, shared_attention_calls):
    """Decode every batch with the shared-prompt attention, or every batch from a K-fold copy of the
    prompts with the model's own attention (and check that the test used the one it names)."""
    from mscl.engine import decoder

    shared = request.param == "shared prompt"
    monkeypatch.setattr(decoder, "_SHARED_PROMPT_MIN_ROWS", 1 if shared else 10**9)
    yield request.param
    assert bool(shared_attention_calls) == shared


def test_greedy_matches_transformers_generate(varied, decoding):
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


def test_length_groups_trade_padding_against_passes():
    from mscl.engine.decoder import length_groups

    assert length_groups([3, 3, 3, 20], overhead=0) == [(0, 3), (3, 4)]
    assert length_groups([3, 3, 3, 20], overhead=100) == [(0, 4)]      # 51 pads cost less than a pass
    assert length_groups([1, 2, 3], overhead=0) == [(0, 1), (1, 2), (2, 3)]
    assert length_groups([5], overhead=64) == [(0, 1)]


def test_grouped_prompt_passes_and_the_one_pass_path_give_the_same_tokens(varied, monkeypatch):
    """Prompts given longest first (decode_batch sorts them) run as one pass per length, as one pass,
    and through the path for caches with sliding layers, decoded with the shared prompt or from a
    K-fold copy: the same greedy tokens, in input order."""
    from mscl.engine import decoder

    model, tok = varied
    ids = sorted(_ids(tok, QUESTIONS), key=len, reverse=True)
    assert len({len(i) for i in ids}) >= 3
    kw = dict(max_new_tokens=6, k=2, pad_token_id=tok.pad_token_id)
    default = decode_batch(model, ids, **kw)
    monkeypatch.setattr(decoder, "_SHARED_PROMPT_MIN_ROWS", 1)
    assert decode_batch(model, ids, **kw) == default
    monkeypatch.setattr(decoder, "_GROUP_OVERHEAD_TOKENS", 1)           # the prefix pass, then the shared prompt
    assert common_prefix_length(ids) > 0
    assert decode_batch(model, ids, **kw) == default
    monkeypatch.setattr(decoder, "_GROUP_OVERHEAD_TOKENS", 0)           # a pass for every prompt length
    assert decode_batch(model, ids, **kw) == default
    monkeypatch.setattr(decoder, "_GROUP_OVERHEAD_TOKENS", 10_000)      # one pass (and no prefix pass)
    assert decode_batch(model, ids, **kw) == default
    monkeypatch.setattr(decoder, "_plain_layers", lambda model: None)   # repeat-and-reserve path
    assert decode_batch(model, ids, **kw) == default
    alone = [decode_batch(model, [i], max_new_tokens=6, pad_token_id=tok.pad_token_id)[0] for i in ids]
    assert default == [row for row in alone for _ in range(2)]


def test_prompts_without_a_shared_prefix_group_and_leave_like_single_prompts(varied, monkeypatch, decoding):
    """No common prefix (c = 0), a pass for every prompt length, K = 2, and rows leaving at a stop
    token: each prompt's rows are what it gives decoded alone."""
    from mscl.engine import decoder

    model, tok = varied
    ids = [[5, 9, 14, 3], [7, 2], [11, 4, 8], [6, 10, 12, 13, 1]]
    assert common_prefix_length(ids) == 0
    monkeypatch.setattr(decoder, "_GROUP_OVERHEAD_TOKENS", 0)
    kw = dict(max_new_tokens=8, pad_token_id=tok.pad_token_id)
    under_test = decoder._SHARED_PROMPT_MIN_ROWS
    monkeypatch.setattr(decoder, "_SHARED_PROMPT_MIN_ROWS", 10**9)      # the references: the model's own attention
    alone = [decode_batch(model, [i], **kw)[0] for i in ids]
    stop = alone[0][2]
    kw["stop_ids"] = [stop]
    alone = [decode_batch(model, [i], **kw)[0] for i in ids]
    monkeypatch.setattr(decoder, "_SHARED_PROMPT_MIN_ROWS", under_test)
    assert decode_batch(model, ids, k=2, **kw) == [row for row in alone for _ in range(2)]
    assert len(alone[0]) == 2 and {len(a) for a in alone} != {8}     # rows left at different steps


def test_finished_rows_leave_without_changing_the_others(varied, decoding):
    model, tok = varied
    ids = _ids(tok, QUESTIONS)
    full = decode_batch(model, ids, max_new_tokens=10, pad_token_id=tok.pad_token_id)
    stop = full[0][3]  # row 0 stops at its 4th token; other rows may stop wherever this token appears
    pruned = decode_batch(model, ids, max_new_tokens=10, stop_ids=[stop], pad_token_id=tok.pad_token_id)
    for before, after in zip(full, pruned):
        expected = before[: before.index(stop)] if stop in before else before
        assert after == expected
    assert len(pruned[0]) == 3


def test_shared_prompt_attention_is_attention_over_each_rows_prompt_and_own_tokens():
    """The shared-prompt attention of one step, with rows gone from the middle of a prompt's samples
    and pads in the prompts, against scaled dot-product attention over each row's own whole cache."""
    from types import SimpleNamespace

    from mscl.engine.decoder import _PromptStore, _shared_prompt_attention, _SharedPrompt

    g = torch.Generator().manual_seed(0)
    n, k, kv_heads, heads, width, t, dim = 3, 3, 2, 6, 5, 4, 8
    store = _PromptStore(n, width)
    store.write(0, n, 0, torch.randn(n, kv_heads, width, dim, generator=g),
                torch.randn(n, kv_heads, width, dim, generator=g))
    prompt_mask = torch.ones(n, width, dtype=torch.long)
    prompt_mask[1, 1:3] = 0                        # pads between a shared prefix and the prompt
    prompt_mask[2, 1] = 0
    shared = _SharedPrompt([store], prompt_mask, k)
    for slots in (torch.arange(n * k), torch.tensor([0, 2, 3, 4, 5, 8])):   # every row, then some left
        shared.slots = slots
        rows = len(slots)
        query = torch.randn(rows, heads, 1, dim, generator=g)
        key, value = (torch.randn(rows, kv_heads, t, dim, generator=g) for _ in range(2))
        out, _ = _shared_prompt_attention(SimpleNamespace(layer_idx=0), query, key, value, None, scaling=0.3,
                                          shared_prompt=shared)
        assert out.shape == (rows, 1, heads, dim)
        for r, slot in enumerate(slots.tolist()):
            p = slot // k
            seen = prompt_mask[p].bool()
            keys = torch.cat([store.keys[p][:, seen], key[r]], dim=1).repeat_interleave(heads // kv_heads, 0)
            values = torch.cat([store.values[p][:, seen], value[r]], dim=1).repeat_interleave(heads // kv_heads, 0)
            expected = torch.nn.functional.scaled_dot_product_attention(query[r], keys, values, scale=0.3)
            torch.testing.assert_close(out[r, 0], expected[:, 0], atol=1e-5, rtol=1e-5)


def test_sampled_rows_leave_one_by_one_alike_with_and_without_the_shared_prompt(varied, monkeypatch,
                                                                                shared_attention_calls):
    """Sampled K = 3 continuations whose rows stop at different steps, some of a prompt's samples
    before the others: the same tokens with the shared prompt as from a K-fold copy."""
    from mscl.engine import decoder

    model, tok = varied
    ids = _ids(tok, QUESTIONS)
    kw = dict(max_new_tokens=8, k=3, do_sample=True, temperature=1.5, pad_token_id=tok.pad_token_id)
    probe = decode_batch(model, ids, generator=torch.Generator().manual_seed(3), **kw)
    stop = max(set(sum(probe, [])), key=sum(probe, []).count)        # the most frequent sampled token
    runs = {}
    for min_rows in (1, 10**9):
        monkeypatch.setattr(decoder, "_SHARED_PROMPT_MIN_ROWS", min_rows)
        runs[min_rows] = decode_batch(model, ids, generator=torch.Generator().manual_seed(3), stop_ids=[stop], **kw)
    assert runs[1] == runs[10**9]
    assert shared_attention_calls
    lengths = [[len(runs[1][i * 3 + j]) for j in range(3)] for i in range(len(ids))]
    assert any(len(set(row)) > 1 for row in lengths)                  # a prompt's samples left apart
    assert any(0 < min(row) for row in lengths) and any(min(row) < 8 for row in lengths)


def test_a_single_prompt_runs_in_one_pass(varied):
    """One prompt has no prefix to share: its prompt is one forward pass, not a prefix pass and a
    one-token pass."""
    model, tok = varied

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config, self.widths = inner, inner.config, []

        def forward(self, **kwargs):
            self.widths.append(kwargs["input_ids"].shape[1])
            return self.inner(**kwargs)

    ids = _ids(tok, QUESTIONS[:1])
    counting = Counting(model)
    out = decode_batch(counting, ids, max_new_tokens=4, k=2, pad_token_id=tok.pad_token_id)
    assert counting.widths == [len(ids[0])] + [1] * (len(out[0]) - 1)


class _Scripted(torch.nn.Module):
    """The tiny model with the tokens of each generation step forced (for the stopping rules)."""

    def __init__(self, inner, script):
        super().__init__()
        self.inner, self.script, self.step = inner, script, 0
        self.config = inner.config

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        # one prompt only: its prompt pass and every generation step
        if "position_ids" in kwargs:
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


def _sorted_nucleus(probs: torch.Tensor, top_p: float) -> set[int]:
    """The reference nucleus: the smallest prefix of the sorted vocabulary whose mass reaches top_p."""
    sorted_probs, order = probs.sort(descending=True)
    keep = (sorted_probs.cumsum(-1) - sorted_probs) < top_p
    return set(order[keep].tolist())


def _ranked(vocab: int, weights: torch.Tensor, seed: int) -> torch.Tensor:
    """Probabilities ``weights / sum`` given to tokens in a shuffled order (so ids are not ranks)."""
    probs = torch.zeros(vocab)
    order = torch.randperm(vocab, generator=torch.Generator().manual_seed(seed))
    probs[order[: len(weights)]] = weights / weights.sum()
    return probs


def _first_half_share(probs: torch.Tensor, nucleus: set[int]) -> float:
    """The nucleus-renormalized probability of its more likely half."""
    ranked = sorted(nucleus, key=lambda t: -float(probs[t]))
    return float(probs[ranked[: len(ranked) // 2]].sum() / probs[ranked].sum())


@pytest.mark.parametrize("rounds", [8, 0])   # wide rows by rejection; by sorting the vocabulary
def test_top_p_draws_from_the_nucleus_only(rounds, monkeypatch):
    """One batch mixes rows whose nucleus lies in the top 64 and wider ones (277 and 2266 tokens); every
    row draws from its own nucleus only, in proportion to its probabilities."""
    from mscl.engine import decoder

    monkeypatch.setattr(decoder, "_NUCLEUS_ROUNDS", rounds)
    vocab, top_p, n = 4096, 0.8, 3000
    narrow = torch.zeros(vocab)
    narrow[[7, 300, 2000, 5]] = torch.tensor([0.5, 0.3, 0.15, 0.05])        # nucleus {7, 300}
    medium = _ranked(vocab, torch.arange(500, 0, -1).float(), seed=1)      # nucleus: 277 tokens
    wide = _ranked(vocab, torch.arange(vocab, 0, -1).float(), seed=2)      # nucleus: 2266 tokens
    kinds = [narrow, medium, wide]
    which = torch.arange(3 * n) % 3                                         # rows interleaved: 0, 1, 2, 0, ...
    logits = torch.stack(kinds).clamp(min=1e-30).log()[which]
    drawn = pick_tokens(logits, do_sample=True, top_p=top_p, generator=torch.Generator().manual_seed(0))
    for kind, probs in enumerate(kinds):
        got = drawn[which == kind]
        nucleus = _sorted_nucleus(probs, top_p)
        assert set(got.tolist()) <= nucleus
        if kind == 0:
            assert set(got.tolist()) == {7, 300}
            assert abs(float((got == 7).float().mean()) - 0.5 / 0.8) < 0.03
        else:  # the likelier half of the nucleus is drawn as often as its probability says (not uniformly)
            ranked = sorted(nucleus, key=lambda t: -float(probs[t]))
            share = float(torch.isin(got, torch.tensor(ranked[: len(ranked) // 2])).float().mean())
            assert abs(share - _first_half_share(probs, nucleus)) < 0.03
            assert abs(_first_half_share(probs, nucleus) - 0.5) > 0.08      # the test can tell uniform apart
    assert 64 < len(_sorted_nucleus(medium, top_p)) < 1024 < len(_sorted_nucleus(wide, top_p))
    assert torch.equal(pick_tokens(logits[:3], do_sample=False), logits[:3].argmax(-1))


@pytest.mark.parametrize("vocab", [16, 4096])   # smaller than the 64-token cap, and larger
def test_top_p_on_a_small_vocabulary_and_on_rows_all_in_the_first_cap(vocab):
    probs = torch.zeros(vocab)
    probs[[3, 1, 9, 0]] = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.clamp(min=1e-30).log().expand(4000, -1)
    drawn = pick_tokens(logits, do_sample=True, top_p=0.8, generator=torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {3, 1}
    assert abs(float((drawn == 3).float().mean()) - 0.5 / 0.8) < 0.03
    with pytest.raises(ValueError, match="top_p"):
        pick_tokens(logits, do_sample=True, top_p=0.0)


def test_the_sampler_is_seeded():
    logits = torch.randn(8, 2000)
    def draw(seed):
        return pick_tokens(logits, do_sample=True, top_p=0.9, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_reserved_cache_layer_behaves_as_the_dynamic_layer():
    from transformers.cache_utils import DynamicLayer

    from mscl.engine.decoder import _ReservedLayer

    g = torch.Generator().manual_seed(0)
    k, v = torch.randn(3, 2, 5, 4, generator=g), torch.randn(3, 2, 5, 4, generator=g)
    plain = DynamicLayer()
    plain.update(k, v)
    reserved = _ReservedLayer.holding(plain, capacity=9)
    for layer in (plain, reserved):
        layer.batch_repeat_interleave(2)
    for step in range(3):
        nk, nv = torch.randn(6, 2, 1, 4, generator=g), torch.randn(6, 2, 1, 4, generator=g)
        a, b = plain.update(nk, nv), reserved.update(nk, nv)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    keep = torch.tensor([0, 3, 5])
    plain.batch_select_indices(keep)
    reserved.batch_select_indices(keep)
    nk, nv = torch.randn(3, 2, 1, 4, generator=g), torch.randn(3, 2, 1, 4, generator=g)
    a, b = plain.update(nk, nv), reserved.update(nk, nv)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert plain.get_seq_length() == reserved.get_seq_length() == 9
    with pytest.raises(RuntimeError, match="reserved cache full"):
        reserved.update(nk, nv)
    with pytest.raises(NotImplementedError):
        reserved.crop(-1)


def test_sliding_window_models_use_generate_once_the_window_is_reached(tiny, monkeypatch):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from mscl.engine import decoder, generation

    _, tok = tiny
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=8,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=256,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    assert generation.sliding_window(model) == 8 and generation.sliding_window(tiny[0]) is None
    theirs = answer_questions(model, tok, QUESTIONS, max_new_tokens=4, batch_size=5, backend="hf")

    def unused(*args, **kwargs):
        raise AssertionError("the own loop ran past an 8-token sliding window")

    monkeypatch.setattr(decoder, "decode_batch", unused)
    assert answer_questions(model, tok, QUESTIONS, max_new_tokens=4, batch_size=5) == theirs
