"""Batched generation: K sampled responses per question (PBL, augmentation) and greedy answers (evaluation).

Prompts are sorted by length before batching so a batch holds prompts of similar length (less
padding), then the results are put back in input order. Sampling is seeded per batch (its own
``torch.Generator``), so the same seed gives the same responses whatever else ran before.

A plain transformers causal LM is decoded by :func:`decode_batch`, a KV-cache loop written for
this workload, rather than by ``model.generate``:

- *Shared prefix.* Every prompt of a batch starts with the same chat template (and system prompt):
  that common prefix is run once, for one row, and its keys and values are copied to the batch.
- *Shared prompt.* The K samples of one question share its prompt: each prompt is run once and its
  cache repeated K times (``generate(num_return_sequences=K)`` runs it K times).
- *Finished rows leave.* A row that emits an end-of-sequence token (or, under the plain
  ``Question: ... Answer:`` format, finishes its first line, the only part kept) is dropped from
  the batch at once, so the remaining steps compute only the rows still generating.
- *Reserved cache.* After the prompt pass each layer's keys and values move into a buffer with
  room for every token still to come; a step writes its token in place (``DynamicLayer`` would
  copy the whole cache at every step to append one token).
- *Cheap nucleus.* The top-p nucleus is looked for among a row's 64, then 1024 most likely tokens
  (:func:`pick_tokens`); only the few rows with a wider nucleus sort the vocabulary.

With vLLM installed and the model on a GPU, the ``auto`` backend hands the prompts to vLLM instead
(:mod:`mscl.vllm_backend`; ``$MSCL_GENERATION_BACKEND`` forces a choice).

Greedy decoding gives ``model.generate``'s tokens (``tests/test_sampling.py`` compares them).
Sampling draws from exactly what the params say, temperature then nucleus/top-p
(:func:`pick_tokens`); unlike ``model.generate`` it does not add the model's
``generation_config`` extras (transformers' default ``top_k=50``, repetition penalties). Models
with their own ``generate`` (MoCL's routed modules, PEFT wrappers), ``backend="hf"``, and batches
long enough to reach a sliding attention window (:func:`sliding_window`; the pads between the
shared prefix and a prompt would count against the window) use ``model.generate``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformers.cache_utils import DynamicLayer

from mscl.models import format_prompt

BACKENDS = ("auto", "loop", "hf", "vllm")


def _clean(text: str, plain_prompt: bool) -> str:
    # A base model under the plain "Question: ... Answer:" format runs on into the next
    # question; its answer is the first line.
    text = text.strip()
    if plain_prompt:
        text = text.split("\n", 1)[0].strip()
    return text


def uses_own_loop(model) -> bool:
    """Whether :func:`decode_batch` can decode ``model``: a plain transformers causal LM whose
    ``generate`` is the library's own (not MoCL's or PEFT's)."""
    from transformers import GenerationMixin

    return (getattr(type(model), "generate", None) is GenerationMixin.generate
            and not getattr(model.config, "is_encoder_decoder", False))


def sliding_window(model) -> int | None:
    """The smallest sliding attention window of ``model``'s layers (Gemma 3, Mistral), or None."""
    config = model.config
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if not window or (types is not None and "sliding_attention" not in types):
        return None
    return int(window)


def stop_token_ids(model, tokenizer) -> list[int]:
    """End-of-sequence ids: the tokenizer's and the generation config's."""
    ids = set()
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return sorted(ids)


def _line_tables(tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per vocabulary id: has a newline; has non-space text before its first newline; has any
    non-space text. Built once per tokenizer (decoding each id alone)."""
    cached = getattr(tokenizer, "_mscl_line_tables", None)
    if cached is not None:
        return cached
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    newline = torch.tensor(["\n" in t for t in texts])
    before = torch.tensor([bool(t.split("\n", 1)[0].strip()) for t in texts])
    content = torch.tensor([bool(t.strip()) for t in texts])
    tokenizer._mscl_line_tables = (newline, before, content)
    return tokenizer._mscl_line_tables


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix every sequence shares."""
    first, n = sequences[0], min(len(s) for s in sequences)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in sequences):
            return i
    return n


def _nucleus(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Probabilities sorted in descending order, zeroed past the smallest prefix whose mass reaches
    ``top_p`` (the first, most likely, token is always kept)."""
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    return sorted_probs.masked_fill(mass_before >= top_p, 0.0)


# Nucleus search widths: most rows' nucleus lies in their 64 most likely tokens, most of the rest in
# 1024; only the few wider rows sort the whole vocabulary.
_NUCLEUS_CAPS = (64, 1024)


def pick_tokens(logits: torch.Tensor, *, do_sample: bool, temperature: float = 1.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token of each row: the argmax, or a draw from softmax(logits / temperature) restricted to
    the smallest set of most likely tokens whose probability reaches ``top_p``.

    A row's nucleus is looked for among its 64 most likely tokens first, then its 1024: when their
    mass reaches ``top_p`` the nucleus lies inside them and the draw is the same distribution as over
    the sorted vocabulary, without sorting 50k-260k probabilities; only the rows wider than that
    sort everything.
    """
    if not do_sample:
        return logits.argmax(-1)
    if not top_p > 0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    scaled = logits.float()
    if temperature != 1.0:
        scaled = scaled / temperature
    probs = scaled.softmax(-1)
    if top_p >= 1.0:
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    tokens = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
    rows = None                                    # None: every row is still looking
    for cap in (*_NUCLEUS_CAPS, None):
        p = probs if rows is None else probs[rows]
        if cap is None or cap >= p.shape[-1]:
            top_probs, top_ids = p.sort(-1, descending=True)
            inside = torch.ones(p.shape[0], dtype=torch.bool, device=p.device)
        else:
            top_probs, top_ids = p.topk(cap, dim=-1)
            inside = top_probs.cumsum(-1)[:, -1] >= top_p   # the cumsum _nucleus cuts at
        if bool(inside.any()):
            choice = torch.multinomial(_nucleus(top_probs[inside], top_p), 1, generator=generator)
            picked = top_ids[inside].gather(-1, choice).squeeze(-1)
            if rows is None:
                tokens[inside] = picked
            else:
                tokens[rows[inside]] = picked
        left = (~inside).nonzero().squeeze(-1)
        if not left.numel():
            break
        rows = left if rows is None else rows[left]
    return tokens


class _ReservedLayer(DynamicLayer):
    """A layer's keys and values in a buffer reserved for the whole decoding: each step writes its
    token in place and attention reads a view, instead of ``DynamicLayer`` concatenating (copying
    the whole cache) at every step. Only what :func:`decode_batch` needs is supported: appending
    within the reserved room, and repeating or selecting rows."""

    is_croppable = False

    def __init__(self, layer: DynamicLayer, capacity: int):
        super().__init__()
        keys, values = layer.keys, layer.values
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self.length = keys.shape[-2]
        shape = (*keys.shape[:-2], capacity, keys.shape[-1])
        self._keys, self._values = keys.new_empty(shape), values.new_empty(shape[:-1] + values.shape[-1:])
        self._keys[..., : self.length, :] = keys
        self._values[..., : self.length, :] = values
        self._views()

    def _views(self) -> None:
        self.keys = self._keys[..., : self.length, :]
        self.values = self._values[..., : self.length, :]

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self._keys.shape[-2]:  # a slice past the buffer would silently take nothing
            raise RuntimeError(f"reserved cache full: {end} tokens asked, room for {self._keys.shape[-2]}")
        self._keys[..., self.length : end, :] = key_states
        self._values[..., self.length : end, :] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._keys = self._keys.repeat_interleave(repeats, dim=0)
        self._values = self._values.repeat_interleave(repeats, dim=0)
        self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._keys, self._values = self._keys[indices], self._values[indices]
        self._views()

    def _unsupported(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} supports only decode_batch's appending and row changes")

    crop = reorder_cache = offload = prefetch = reset = _unsupported


def _reserve(cache, extra: int) -> None:
    """Give every plain layer of ``cache`` room for ``extra`` more tokens (:class:`_ReservedLayer`);
    other layer kinds (sliding windows) keep their own update."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        return
    for i, layer in enumerate(layers):
        if type(layer) is DynamicLayer and layer.is_initialized:
            layers[i] = _ReservedLayer(layer, layer.keys.shape[-2] + extra)


@torch.no_grad()
def decode_batch(model, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int, k: int = 1,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None, stop_ids: Sequence[int] = (), pad_token_id: int = 0,
                 first_line_only: bool = False, tokenizer=None) -> list[list[int]]:
    """Generated token ids (stop token excluded) for ``k`` continuations of each prompt, prompt-major
    (rows ``i*k .. i*k+k-1`` continue prompt ``i``). See the module docstring for the design.

    ``first_line_only``: a row also stops after the token that ends its first non-empty line (needs
    ``tokenizer``); the caller keeps only that line.
    """
    device = next(model.parameters()).device
    n = len(prompt_ids)
    lengths = torch.tensor([len(p) for p in prompt_ids], device=device)
    # the shared prefix, run once; every prompt keeps at least one token of its own, whose
    # position predicts the first generated token
    c = min(common_prefix_length(prompt_ids), int(lengths.min()) - 1)
    cache = None
    if c > 0:
        out = model(input_ids=torch.tensor([list(prompt_ids[0][:c])], device=device), use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
    # the rest of each prompt, left-padded after the prefix (pads masked out, positions continue)
    width = int(lengths.max()) - c
    ids = torch.full((n, width), pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros((n, c + width), dtype=torch.long, device=device)
    mask[:, :c] = 1
    positions = torch.full((n, width), c, dtype=torch.long, device=device)
    for i, p in enumerate(prompt_ids):
        s = len(p) - c
        ids[i, width - s :] = torch.tensor(list(p[c:]), device=device)
        mask[i, c + width - s :] = 1
        positions[i, width - s :] = torch.arange(c, c + s, device=device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                logits_to_keep=1)
    cache, logits = out.past_key_values, out.logits[:, -1]
    next_pos = lengths.clone()
    if k > 1:  # the K samples of a prompt share its cache
        cache.batch_repeat_interleave(k)
        logits, mask, next_pos = (t.repeat_interleave(k, dim=0) for t in (logits, mask, next_pos))
    _reserve(cache, max_new_tokens)
    rows = torch.arange(n * k, device=device)          # the output row of each active row
    tokens_out = torch.full((n * k, max_new_tokens), -1, dtype=torch.long)
    stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    if first_line_only:
        newline, before, content = (t.to(device) for t in _line_tables(tokenizer))
        seen = torch.zeros(n * k, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        tokens = pick_tokens(logits, do_sample=do_sample, temperature=temperature, top_p=top_p, generator=generator)
        done = torch.isin(tokens, stops)
        tokens_out[rows[~done].cpu(), step] = tokens[~done].cpu()
        if first_line_only:
            safe = tokens.clamp(max=newline.numel() - 1)
            done |= newline[safe] & (seen | before[safe])
            seen |= content[safe]
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        if bool(done.any()):  # finished rows leave the batch
            keep = (~done).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            rows, mask, next_pos, tokens = rows[keep], mask[keep], next_pos[keep], tokens[keep]
            if first_line_only:
                seen = seen[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        out = model(input_ids=tokens.unsqueeze(-1), attention_mask=mask, position_ids=next_pos.unsqueeze(-1),
                    past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
        next_pos = next_pos + 1
    return [[t for t in row if t >= 0] for row in tokens_out.tolist()]


def resolve(model, backend: str = "auto") -> str:
    """The backend :func:`generate` uses for ``model``: ``"vllm"``, ``"loop"`` (:func:`decode_batch`)
    or ``"hf"`` (``model.generate``)."""
    from mscl import vllm_backend

    if backend not in BACKENDS:
        raise ValueError(f"unknown generation backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if vllm_backend.resolve_backend(model, uses_own_loop(model)) == "vllm":
        return "vllm"
    return "loop" if uses_own_loop(model) else "hf"


def _generate_hf(model, tokenizer, enc, *, max_new_tokens, num_return_sequences, do_sample, temperature, top_p,
                 seed):
    kwargs = dict(max_new_tokens=max_new_tokens, num_return_sequences=num_return_sequences,
                  pad_token_id=tokenizer.pad_token_id, do_sample=do_sample)
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    device = enc["input_ids"].device
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        out = model.generate(**enc, **kwargs)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    num_return_sequences: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    desc: str | None = None,
    backend: str = "auto",
) -> list[list[str]]:
    """Generate ``num_return_sequences`` continuations for each already-formatted prompt.

    Returns one list per prompt, in input order. ``batch_size`` counts prompts per forward pass
    (each expands to ``num_return_sequences`` rows). ``backend``: ``"auto"`` resolves as
    :func:`resolve` says (vLLM on a GPU when installed, else :func:`decode_batch` for a plain
    transformers model, else ``model.generate``); ``"loop"``, ``"hf"`` and ``"vllm"`` force one.
    """
    backend = resolve(model, backend)
    if not prompts:
        return []
    plain = not getattr(tokenizer, "chat_template", None)
    if backend == "vllm":
        from mscl import vllm_backend

        texts = vllm_backend.generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                      num_return_sequences=num_return_sequences, do_sample=do_sample,
                                      temperature=temperature, top_p=top_p, seed=seed,
                                      stop_ids=stop_token_ids(model, tokenizer))
        return [[_clean(t, plain) for t in row] for row in texts]
    window = sliding_window(model) if backend == "loop" else None
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    encoded = tokenizer(list(prompts))["input_ids"]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[list[str] | None] = [None] * len(prompts)
    stops = stop_token_ids(model, tokenizer)
    k = num_return_sequences
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for b, idx in enumerate(tqdm(batches, desc=desc or "generate", leave=False, disable=desc is None)):
        batch_seed = seed * 100_003 + b
        longest = max(len(encoded[i]) for i in idx)
        if backend == "loop" and (window is None or longest + max_new_tokens <= window):
            generator = torch.Generator(device=device).manual_seed(batch_seed)
            out = decode_batch(model, [encoded[i] for i in idx], max_new_tokens=max_new_tokens, k=k,
                               do_sample=do_sample, temperature=temperature, top_p=top_p, generator=generator,
                               stop_ids=stops, pad_token_id=tokenizer.pad_token_id, first_line_only=plain,
                               tokenizer=tokenizer)
            texts = tokenizer.batch_decode(out, skip_special_tokens=True)
        else:
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
            texts = _generate_hf(model, tokenizer, enc, max_new_tokens=max_new_tokens, num_return_sequences=k,
                                 do_sample=do_sample, temperature=temperature, top_p=top_p, seed=batch_seed)
        for j, i in enumerate(idx):
            results[i] = [_clean(t, plain) for t in texts[j * k : (j + 1) * k]]
    if was_training:
        model.train()
    return results  # type: ignore[return-value]


def answer_questions(model, tokenizer, questions: Sequence[str], *, max_new_tokens: int, batch_size: int,
                     desc: str | None = None, backend: str = "auto") -> list[str]:
    """Greedy answers, one per question (the evaluation decoding; deterministic)."""
    prompts = [format_prompt(tokenizer, q) for q in questions]
    out = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, desc=desc,
                   backend=backend)
    return [o[0] for o in out]


def sample_responses(model, tokenizer, questions: Sequence[str], *, k: int, temperature: float, top_p: float,
                     max_new_tokens: int, batch_size: int, seed: int, desc: str | None = None,
                     backend: str = "auto") -> list[list[str]]:
    """K sampled responses per question (temperature/top-p sampling), for the preference split."""
    prompts = [format_prompt(tokenizer, q) for q in questions]
    per_batch = max(1, batch_size // max(k, 1))
    return generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=per_batch,
                    num_return_sequences=k, do_sample=True, temperature=temperature, top_p=top_p,
                    seed=seed, desc=desc, backend=backend)
