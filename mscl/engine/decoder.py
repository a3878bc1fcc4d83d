"""The KV-cache decoding loop behind :func:`mscl.engine.generation.generate` for plain causal LMs.

:func:`decode_batch` is written for this workload (K samples of many short prompts), rather than
``model.generate``:

- *Shared prefix.* Every prompt of a batch starts with the same chat template (and system prompt):
  that common prefix is run once, for one row, and its keys and values are copied to the batch
  (unless it saves fewer prompt tokens than one more pass costs, as for a single prompt).
- *Shared prompt.* The K samples of one question share its prompt: each prompt is run once
  (``generate(num_return_sequences=K)`` runs it K times) and its keys and values are stored once
  (:class:`_PromptStore`; caches with sliding-window layers take the repeat path below, K copies).
  With 16 rows or more, on the architectures whose attention is plain softmax attention (Llama,
  Mistral, Qwen 2/3, without sliding windows), every decoding step reads them once per prompt for
  all K samples (:func:`_shared_prompt_attention`); a step's attention otherwise reads the prompt
  K times, once per row. Other models, and fewer rows, decode from a K-fold copy with the model's
  own attention.
- *Length groups.* Prompts of similar length run their pass together, each group padded only to
  its own longest (:func:`length_groups` weighs the pads saved against one more pass).
- *Finished rows leave.* A row that emits an end-of-sequence token (or, under the plain
  ``Question: ... Answer:`` format, finishes its first line, the only part kept) is dropped from
  the batch at once, so the remaining steps compute only the rows still generating.
- *Reserved cache.* Each layer's keys and values live in buffers sized for the prompts
  (:class:`_PromptStore`) and for every token to come (:class:`_GeneratedLayer`,
  :class:`_ReservedLayer`); the prompt passes and every step write their tokens in place
  (``DynamicLayer`` would copy the whole cache at every step to append one token).
- *Cheap nucleus.* Top-p sampling sorts no vocabulary (short of a row failing 8 draws): a row's
  nucleus is looked for among its 64 most likely tokens, and a row with a wider one draws from the
  whole vocabulary until the draw lands in the nucleus (:func:`pick_tokens`).

Greedy decoding gives ``model.generate``'s tokens (``tests/test_sampling.py`` compares them).
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
from transformers import AttentionInterface
from transformers.cache_utils import DynamicCache, DynamicLayer


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


# A row's nucleus is looked for among its most likely tokens first; a row whose nucleus is wider
# draws from the whole vocabulary and keeps the draw if it falls inside the nucleus (rejection),
# redrawing at most _NUCLEUS_ROUNDS times before it sorts the vocabulary.
_NUCLEUS_CAP = 64
_NUCLEUS_ROUNDS = 8


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index drawn from each row of (unnormalized, non-negative) ``probs`` by the uniforms ``u`` in
    [0, 1): the first index whose cumulative mass exceeds ``u`` times the row's total."""
    cdf = probs.cumsum(-1)
    index = torch.searchsorted(cdf, (u.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    return index.clamp_(max=probs.shape[-1] - 1)


def pick_tokens(logits: torch.Tensor, *, do_sample: bool, temperature: float = 1.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token of each row: the argmax, or a draw from softmax(logits / temperature) restricted to
    the smallest set of most likely tokens whose probability reaches ``top_p`` (the nucleus).

    Nothing sorts the vocabulary (50k-260k probabilities a row) unless it must:

    - a row whose 64 most likely tokens reach ``top_p`` draws from their nucleus, which is then the
      nucleus over the whole vocabulary;
    - draws are by inverse CDF in float64, cumulative sums and uniforms both;
    - any other row draws from the whole vocabulary and keeps the token
      when the mass of the tokens strictly more likely than it is below ``top_p``, which is when it
      lies in the nucleus; else it draws again. A draw conditioned on landing in a set is a draw from
      that set in proportion to the probabilities, and the nucleus holds at least ``top_p`` of the
      mass, so at ``top_p`` = 0.95 at most one row in twenty draws twice. A row still without a token
      after 8 draws (a small ``top_p`` over a flat distribution) sorts its vocabulary.

    One difference from sorting, only for exact ties: a token tied in probability with the nucleus's
    last member is in the nucleus when drawn by the second rule (sorting would keep whichever of the
    tied tokens the sort put first).
    """
    if not do_sample:
        return logits.argmax(-1)
    if not top_p > 0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    scaled = logits.float()
    if temperature != 1.0:
        scaled = scaled / temperature
    probs = scaled.softmax(-1)
    n, vocab = probs.shape
    u = torch.rand(n, generator=generator, device=probs.device, dtype=torch.float64)
    if top_p >= 1.0:
        return _inverse_cdf(probs.double(), u)
    tokens = torch.empty(n, dtype=torch.long, device=probs.device)
    top_probs, top_ids = probs.topk(min(_NUCLEUS_CAP, vocab), dim=-1)
    inside = top_probs.cumsum(-1)[:, -1] >= top_p          # the cumsum _nucleus cuts at
    if bool(inside.any()):
        choice = _inverse_cdf(_nucleus(top_probs[inside], top_p).double(), u[inside])
        tokens[inside] = top_ids[inside].gather(-1, choice.unsqueeze(-1)).squeeze(-1)
    rows = (~inside).nonzero().squeeze(-1)
    u = u[rows]
    for _ in range(_NUCLEUS_ROUNDS):
        if not rows.numel():
            return tokens
        p = probs[rows]
        drawn = _inverse_cdf(p.double(), u)
        mass_before = torch.where(p > p.gather(-1, drawn.unsqueeze(-1)), p, 0.0).sum(-1)
        kept = mass_before < top_p
        tokens[rows[kept]] = drawn[kept]
        rows = rows[~kept]
        u = torch.rand(rows.numel(), generator=generator, device=probs.device, dtype=torch.float64)
    if rows.numel():
        sorted_probs, order = probs[rows].sort(-1, descending=True)
        choice = _inverse_cdf(_nucleus(sorted_probs, top_p).double(), u)
        tokens[rows] = order.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
    return tokens


class _ReservedLayer(DynamicLayer):
    """A layer's keys and values in buffers (``[rows, heads, capacity, dim]``) reserved for the whole
    decoding: each step writes its token in place and attention reads a view, instead of
    ``DynamicLayer`` concatenating (copying the whole cache) at every step. Only what
    :func:`decode_batch` needs is supported: appending within the reserved room, and repeating or
    selecting rows."""

    is_croppable = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self._keys, self._values, self.length = keys, values, length
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._views()

    @classmethod
    def holding(cls, layer: DynamicLayer, capacity: int) -> "_ReservedLayer":
        """The contents of ``layer`` moved into buffers with room for ``capacity`` tokens."""
        keys, values = layer.keys, layer.values
        length = keys.shape[-2]
        reserved = [t.new_empty((*t.shape[:-2], capacity, t.shape[-1])) for t in (keys, values)]
        reserved[0][..., :length, :] = keys
        reserved[1][..., :length, :] = values
        return cls(*reserved, length)

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
            layers[i] = _ReservedLayer.holding(layer, layer.keys.shape[-2] + extra)


class _PromptStore:
    """One layer's prompt keys and values for a whole decoding of ``n`` prompts, one copy per prompt
    however many samples continue it: ``[n, heads, width, dim]`` buffers, allocated at the first
    write. A group of prompts narrower than the widest never writes the slots between the shared
    prefix and its own start; attention masks them out, but a masked weight of 0 times a NaN left in
    fresh memory is NaN, so the buffers start as zeros."""

    def __init__(self, n: int, width: int):
        self.n, self.width = n, width
        self.keys = self.values = None

    def write(self, lo: int, hi: int, start: int, key_states: torch.Tensor, value_states: torch.Tensor) -> int:
        """Write the keys and values of prompts ``lo..hi`` (or of one row, for all of them) at
        positions ``start..``; return the end position."""
        if self.keys is None:
            self.keys, self.values = (t.new_zeros((self.n, t.shape[1], self.width, t.shape[-1]))
                                      for t in (key_states, value_states))
        end = start + key_states.shape[-2]
        self.keys[lo:hi, :, start:end] = key_states
        self.values[lo:hi, :, start:end] = value_states
        return end

    def expanded(self, k: int, extra: int) -> _ReservedLayer:
        """The prompts as one cache of ``n * k`` rows (prompt-major) with room for ``extra`` more
        tokens, for models decoded with their own attention."""
        n, heads, width, dim = self.keys.shape
        reserved = []
        for t in (self.keys, self.values):
            buffer = t.new_empty((n, k, heads, width + extra, dim))
            buffer[:, :, :, :width] = t.unsqueeze(1)
            reserved.append(buffer.view(n * k, heads, width + extra, dim))
        return _ReservedLayer(*reserved, width)


class _PromptLayer(DynamicLayer):
    """Prompts ``lo..hi`` of a store during their prompt pass, which starts at position ``start``:
    the pass's keys and values go straight into the store."""

    is_croppable = False

    def __init__(self, store: _PromptStore, lo: int, hi: int, start: int):
        super().__init__()
        self.store, self.lo, self.hi, self.start = store, lo, hi, start
        self.is_initialized = True

    def get_seq_length(self) -> int:
        return self.start

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.store.write(self.lo, self.hi, self.start, key_states, value_states)
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys = self.store.keys[self.lo : self.hi, :, :end]
        self.values = self.store.values[self.lo : self.hi, :, :end]
        return self.keys, self.values

    def _unsupported(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} supports only one prompt pass")

    crop = reorder_cache = offload = prefetch = reset = batch_repeat_interleave = batch_select_indices = _unsupported


class _SharedPrompt:
    """What :func:`_shared_prompt_attention` needs besides the step's own keys and values: each
    layer's prompt store, the additive mask over the prompt positions (``[n, 1, 1, width]``: 0, or
    -inf on pads), K, and the sample slot (``prompt * k + sample``) of each active row, ascending."""

    def __init__(self, stores: list[_PromptStore], prompt_mask: torch.Tensor, k: int):
        self.stores, self.k = stores, k
        self.bias = torch.zeros(prompt_mask.shape, dtype=stores[0].keys.dtype, device=prompt_mask.device)
        self.bias = self.bias.masked_fill(~prompt_mask.bool(), -math.inf)[:, None, None, :]
        self.slots = torch.arange(prompt_mask.shape[0] * k, device=prompt_mask.device)


class _GeneratedLayer(DynamicLayer):
    """A layer's keys and values of the generated tokens only (``[rows, heads, max_new, dim]``
    buffers, written in place); the prompt's are read from its :class:`_PromptStore` by
    :func:`_shared_prompt_attention`."""

    is_croppable = False

    def __init__(self, prompt_width: int, capacity: int):
        super().__init__()
        self.prompt_width, self.capacity, self.length = prompt_width, capacity, 0
        self._keys = self._values = None
        self.is_initialized = True

    def get_seq_length(self) -> int:
        return self.prompt_width + self.length

    def update(self, key_states, value_states, *args, **kwargs):
        if self._keys is None:
            self._keys, self._values = (t.new_empty((t.shape[0], t.shape[1], self.capacity, t.shape[-1]))
                                        for t in (key_states, value_states))
            self.dtype, self.device = key_states.dtype, key_states.device
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"reserved cache full: {end} tokens asked, room for {self.capacity}")
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self._keys is not None:
            self._keys, self._values = self._keys[indices], self._values[indices]

    def _unsupported(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} supports only decode_batch's appending and row changes")

    crop = reorder_cache = offload = prefetch = reset = batch_repeat_interleave = _unsupported


def _shared_prompt_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, *,
                             shared_prompt: _SharedPrompt, **kwargs):
    """Attention of one decoding step (a query token per row) over the row's prompt, read once per
    prompt for all its samples, and its own generated tokens (``key``, ``value``: ``[rows, kv_heads,
    t, dim]``): softmax over both together, as plain attention over the concatenation.

    The prompt's keys and values are the bulk of a step's attention reads; a cache of ``n * k``
    rows holds each prompt K times. Registered with transformers as ``"mscl_shared_prompt"``
    (:func:`decode_batch` switches the model to it for the decoding steps only); the mask argument
    is unused (the prompt's pads are in ``shared_prompt.bias``, and a row sees all its generated
    tokens). With K = 1 nothing is shared, but at many rows it is still no slower than ``torch``'s
    CPU attention over the cache (``README.md``, Generation) and skips building the mask.

    Precision: the query is scaled before the products and the softmax weights are cast back to
    the query's dtype, as transformers' eager attention does; in bf16 or fp16 that is less exact
    than fused kernels, so on a GPU in half precision the sampled tokens can differ from the model's
    own attention's (in fp32 they agree, ``tests/test_sampling.py``)."""
    store = shared_prompt.stores[module.layer_idx]
    prompt_keys, prompt_values = store.keys, store.values              # [n, kv_heads, width, dim]
    n, kv_heads, width, dim = prompt_keys.shape
    rows, heads, q_len, _ = query.shape
    if q_len != 1:
        raise ValueError(f"shared-prompt attention takes one query token a row, got {q_len}")
    if dropout:
        raise ValueError("shared-prompt attention is for inference: put the model in eval mode (dropout > 0)")
    k, g, slots = shared_prompt.k, heads // kv_heads, shared_prompt.slots
    full = rows == n * k                                               # no row has left yet
    q_rows = (query * scaling).reshape(rows, kv_heads, g, dim)
    q = q_rows if full else q_rows.new_zeros((n * k, kv_heads, g, dim)).index_copy_(0, slots, q_rows)
    # a prompt's K samples x g query heads against its keys, per kv head
    q = q.view(n, k, kv_heads, g, dim).transpose(1, 2).reshape(n, kv_heads, k * g, dim)
    scores = torch.matmul(q, prompt_keys.transpose(-1, -2)) + shared_prompt.bias   # [n, kv, k*g, width]
    scores = scores.view(n, kv_heads, k, g, width).transpose(1, 2).reshape(n * k, kv_heads, g, width)
    if not full:
        scores = scores.index_select(0, slots)
    own = torch.matmul(q_rows, key.transpose(-1, -2))                 # [rows, kv, g, t]
    weights = torch.cat([scores, own], dim=-1).softmax(-1, dtype=torch.float32).to(query.dtype)
    on_prompt = weights[..., :width]
    if not full:
        on_prompt = on_prompt.new_zeros((n * k, kv_heads, g, width)).index_copy_(0, slots, on_prompt)
    on_prompt = on_prompt.reshape(n, k, kv_heads, g, width).transpose(1, 2).reshape(n, kv_heads, k * g, width)
    out = torch.matmul(on_prompt, prompt_values)                       # [n, kv, k*g, dim]
    out = out.view(n, kv_heads, k, g, dim).transpose(1, 2).reshape(n * k, kv_heads, g, dim)
    if not full:
        out = out.index_select(0, slots)
    out = out + torch.matmul(weights[..., width:], value)
    return out.reshape(rows, 1, heads, dim), None


SHARED_PROMPT_ATTENTION = "mscl_shared_prompt"
AttentionInterface.register(SHARED_PROMPT_ATTENTION, _shared_prompt_attention)
# Architectures whose attention is plain softmax attention over the cache (no logit soft-capping,
# no sink logits) and calls the registered attention function: decoded with the shared prompt.
_SHARED_PROMPT_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def shares_prompt(model) -> bool:
    """Whether :func:`decode_batch` decodes ``model`` with :func:`_shared_prompt_attention`."""
    return getattr(model.config, "model_type", None) in _SHARED_PROMPT_MODEL_TYPES


@contextlib.contextmanager
def _attention_implementation(model, name: str):
    """``model`` computes attention with the registered function ``name`` inside the block."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


# About what one more forward pass costs, in prompt tokens: reading every weight once more (a
# one-row pass of 16 tokens takes as long as ~60 tokens' share of a many-row pass on the cpu profile).
_GROUP_OVERHEAD_TOKENS = 64
# Rows below which decoding reads the prompt from a K-fold copy with the model's own attention:
# a few rows read little, and the shared-prompt attention's extra small operations cost more.
_SHARED_PROMPT_MIN_ROWS = 16


def length_groups(widths: Sequence[int], overhead: int = _GROUP_OVERHEAD_TOKENS) -> list[tuple[int, int]]:
    """Split ascending ``widths`` into contiguous groups ``(lo, hi)``, each to be run padded to its
    widest, minimizing the padded tokens plus ``overhead`` per group (dynamic programming)."""
    n = len(widths)
    cost, cut = [0.0] + [math.inf] * n, [0] * (n + 1)
    for hi in range(1, n + 1):
        for lo in range(hi):
            c = cost[lo] + (hi - lo) * widths[hi - 1] + overhead
            if c < cost[hi]:
                cost[hi], cut[hi] = c, lo
    groups, hi = [], n
    while hi:
        groups.append((cut[hi], hi))
        hi = cut[hi]
    return groups[::-1]


def _plain_layers(model):
    """A fresh cache for ``model`` when every layer of it is a plain ``DynamicLayer``, else None."""
    cache = DynamicCache(config=model.config)
    layers = getattr(cache, "layers", None)
    return cache if layers and all(type(layer) is DynamicLayer for layer in layers) else None


def _prompt_batch(prompt_ids, c: int, width: int, pad_token_id: int, device):
    """Prompts after their shared prefix of ``c`` tokens, left-padded to ``width``: ids, positions
    (continuing the prefix's) and the attention mask over prefix + ``width``."""
    n = len(prompt_ids)
    ids = torch.full((n, width), pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros((n, c + width), dtype=torch.long, device=device)
    mask[:, :c] = 1
    positions = torch.full((n, width), c, dtype=torch.long, device=device)
    for i, p in enumerate(prompt_ids):
        s = len(p) - c
        ids[i, width - s :] = torch.tensor(list(p[c:]), device=device)
        mask[i, c + width - s :] = 1
        positions[i, width - s :] = torch.arange(c, c + s, device=device)
    return ids, positions, mask


def _prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """The leading tokens run once for all prompts: each keeps one of its own (whose position predicts the
    first generated token); none when the pass would cost more than the prefix tokens it saves."""
    shared = min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
    return 0 if shared * (len(prompts) - 1) < _GROUP_OVERHEAD_TOKENS else shared


def _prefill_groups(model, cache, prompts, prefix, ids, positions, mask, c: int,
                    width: int) -> tuple[list, torch.Tensor]:
    """Every layer is plain: prompts of similar length run together (less padding), each pass writing its
    keys and values straight into the prompt stores, one copy per prompt. Returns the stores and logits."""
    stores = [_PromptStore(len(prompts), c + width) for _ in cache.layers]
    if c > 0:
        for store, layer in zip(stores, prefix.layers):
            store.write(0, len(prompts), 0, layer.keys, layer.values)
    logits = []
    for lo, hi in length_groups([len(p) - c for p in prompts], _GROUP_OVERHEAD_TOKENS):
        w = len(prompts[hi - 1]) - c
        cache.layers = [_PromptLayer(store, lo, hi, c + width - w) for store in stores]
        out = model(input_ids=ids[lo:hi, width - w :], attention_mask=mask[lo:hi],
                    position_ids=positions[lo:hi, width - w :], past_key_values=cache, use_cache=True,
                    logits_to_keep=1)
        logits.append(out.logits[:, -1])
    return stores, torch.cat(logits)


def _prefill_repeated(model, prefix, ids, positions, mask, k: int, max_new_tokens: int):
    """Sliding-window layers: one pass, then the cache repeated K times and its plain layers reserved."""
    if prefix is not None:
        prefix.batch_repeat_interleave(len(ids))
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=prefix,
                use_cache=True, logits_to_keep=1)
    cache, logits = out.past_key_values, out.logits[:, -1]
    if k > 1:
        cache.batch_repeat_interleave(k)
    _reserve(cache, max_new_tokens)
    return cache, logits


def _prefill(model, prompts, *, k: int, max_new_tokens: int, pad_token_id: int, device):
    """Run the prompts (sorted by length) once each: returns the cache the decoding steps extend,
    each prompt's last logits, the attention mask over the prompts and, when the K samples read
    their prompt's keys and values from one copy, the :class:`_SharedPrompt` (else None)."""
    c = _prefix_length(prompts)
    width = max(len(p) for p in prompts) - c
    cache = _plain_layers(model)
    prefix = None
    if c > 0:
        prefix = model(input_ids=torch.tensor([list(prompts[0][:c])], device=device), use_cache=True,
                       logits_to_keep=1).past_key_values
    ids, positions, mask = _prompt_batch(prompts, c, width, pad_token_id, device)
    if cache is None:
        cache, logits = _prefill_repeated(model, prefix, ids, positions, mask, k, max_new_tokens)
        return cache, logits, mask, None
    stores, logits = _prefill_groups(model, cache, prompts, prefix, ids, positions, mask, c, width)
    if shares_prompt(model) and len(prompts) * k >= _SHARED_PROMPT_MIN_ROWS:
        cache.layers = [_GeneratedLayer(c + width, max_new_tokens) for _ in stores]
        return cache, logits, mask, _SharedPrompt(stores, mask, k)
    cache.layers = [store.expanded(k, max_new_tokens) for store in stores]
    return cache, logits, mask, None


class _FirstLine:
    """Which rows have ended their first non-empty line (``first_line_only``; :func:`_line_tables`)."""

    def __init__(self, tokenizer, rows: int, device):
        self.newline, self.before, self.content = (t.to(device) for t in _line_tables(tokenizer))
        self.seen = torch.zeros(rows, dtype=torch.bool, device=device)   # a row has written non-space text

    def ended(self, tokens: torch.Tensor) -> torch.Tensor:
        """Whether each row's new token ends its first non-empty line; records what it wrote."""
        safe = tokens.clamp(max=self.newline.numel() - 1)
        ended = self.newline[safe] & (self.seen | self.before[safe])
        self.seen |= self.content[safe]
        return ended

    def keep(self, rows: torch.Tensor) -> None:
        """Only ``rows`` go on generating."""
        self.seen = self.seen[rows]


def _decode_steps(model, cache, logits, mask, next_pos, rows, *, shared: _SharedPrompt | None, pick,
                  stops: torch.Tensor, first_line: _FirstLine | None, tokens_out: torch.Tensor) -> None:
    """The decoding steps: pick a token for every active row, write it to its output row of
    ``tokens_out``, drop the rows that finished, and run the model on the rest."""
    max_new_tokens = tokens_out.shape[1]
    with _attention_implementation(model, SHARED_PROMPT_ATTENTION) if shared else contextlib.nullcontext():
        for step in range(max_new_tokens):
            tokens = pick(logits)
            done = torch.isin(tokens, stops)
            tokens_out[rows[~done].cpu(), step] = tokens[~done].cpu()
            if first_line is not None:
                done |= first_line.ended(tokens)
            if step == max_new_tokens - 1 or bool(done.all()):
                return
            if bool(done.any()):  # finished rows leave the batch
                keep = (~done).nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                rows, mask, next_pos, tokens = rows[keep], mask[keep], next_pos[keep], tokens[keep]
                if shared:
                    shared.slots = shared.slots[keep]
                if first_line is not None:
                    first_line.keep(keep)
            if shared:  # the prompt's pads are in shared.bias; a row sees all its generated tokens
                step_kwargs = dict(shared_prompt=shared)
            else:
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                step_kwargs = dict(attention_mask=mask)
            out = model(input_ids=tokens.unsqueeze(-1), position_ids=next_pos.unsqueeze(-1), past_key_values=cache,
                        use_cache=True, **step_kwargs)
            cache, logits = out.past_key_values, out.logits[:, -1]
            next_pos = next_pos + 1


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
    order = sorted(range(n), key=lambda i: len(prompt_ids[i]))       # rows run shortest prompt first
    prompts = [prompt_ids[i] for i in order]
    cache, logits, mask, shared = _prefill(model, prompts, k=k, max_new_tokens=max_new_tokens,
                                           pad_token_id=pad_token_id, device=device)
    next_pos = torch.tensor([len(p) for p in prompts], device=device)
    if k > 1:  # the K samples of a prompt share its prompt
        logits, mask, next_pos = (t.repeat_interleave(k, dim=0) for t in (logits, mask, next_pos))
    # the output row of each active row
    rows = (torch.tensor(order, device=device).unsqueeze(-1) * k + torch.arange(k, device=device)).flatten()
    tokens_out = torch.full((n * k, max_new_tokens), -1, dtype=torch.long)

    def pick(step_logits: torch.Tensor) -> torch.Tensor:
        return pick_tokens(step_logits, do_sample=do_sample, temperature=temperature, top_p=top_p,
                           generator=generator)

    _decode_steps(model, cache, logits, mask, next_pos, rows, shared=shared, pick=pick,
                  stops=torch.tensor(list(stop_ids), dtype=torch.long, device=device),
                  first_line=_FirstLine(tokenizer, n * k, device) if first_line_only else None,
                  tokens_out=tokens_out)
    return [[t for t in row if t >= 0] for row in tokens_out.tolist()]
