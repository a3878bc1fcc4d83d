"""Batched generation: K sampled responses per question (PBL, augmentation) and greedy answers (evaluation).

Prompts are sorted by length before batching so a batch holds prompts of similar length (less
padding), then the results are put back in input order. Sampling is seeded per batch (its own
``torch.Generator``), so the same seed gives the same responses whatever else ran before.

:func:`generate` picks a backend (:func:`resolve`): a plain transformers causal LM is decoded by
:func:`mscl.engine.decoder.decode_batch`, a KV-cache loop written for this workload, rather than by
``model.generate``. With vLLM installed and the model on a GPU, the ``auto`` backend hands the
prompts to vLLM instead (:mod:`mscl.engine.vllm_backend`; ``$MSCL_GENERATION_BACKEND`` forces a
choice).

Greedy decoding gives ``model.generate``'s tokens (``tests/test_sampling.py`` compares them).
Sampling draws from exactly what the params say, temperature then nucleus/top-p
(:func:`~mscl.engine.decoder.pick_tokens`); unlike ``model.generate`` it does not add the model's
``generation_config`` extras (transformers' default ``top_k=50``, repetition penalties). Models
with their own ``generate`` (MoCL's routed modules, PEFT wrappers), ``backend="hf"``, and batches
long enough to reach a sliding attention window (:func:`sliding_window`; the pads between the
shared prefix and a prompt would count against the window) use ``model.generate``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from mscl.common import dist
from mscl.engine import decoder
from mscl.engine.models import DEFAULT_SYSTEM_PROMPT, encode_prompt_text, format_prompt

BACKENDS = ("auto", "loop", "hf", "vllm")


def _clean(text: str, plain_prompt: bool) -> str:
    # A base model under the plain "Question: ... Answer:" format runs on into the next
    # question; its answer is the first line.
    text = text.strip()
    if plain_prompt:
        text = text.split("\n", 1)[0].strip()
    return text


def uses_own_loop(model) -> bool:
    """Whether :func:`~mscl.engine.decoder.decode_batch` can decode ``model``: a plain transformers causal LM whose
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



def resolve(model, backend: str = "auto") -> str:
    """The backend :func:`generate` uses for ``model``: ``"vllm"``, ``"loop"``
    (:func:`~mscl.engine.decoder.decode_batch`) or ``"hf"`` (``model.generate``)."""
    from mscl.engine import vllm_backend

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


def _generate_vllm(model, tokenizer, prompts, *, max_new_tokens, num_return_sequences, sampling, seed,
                   plain) -> list[list[str]]:
    """The prompts through vLLM (:mod:`mscl.engine.vllm_backend`), cleaned as the other backends' are."""
    from mscl.engine import vllm_backend

    texts = vllm_backend.generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                  num_return_sequences=num_return_sequences, **sampling, seed=seed,
                                  stop_ids=stop_token_ids(model, tokenizer))
    return [[_clean(t, plain) for t in row] for row in texts]


def _generate_batch(model, tokenizer, ids: list[list[int]], *, own_loop: bool, max_new_tokens: int, k: int,
                    sampling: dict, seed: int, stops: list[int], plain: bool) -> list[str]:
    """The ``k`` continuations of each prompt of one batch (token ids), prompt-major: by
    :func:`~mscl.engine.decoder.decode_batch` with ``own_loop``, else by ``model.generate``."""
    device = next(model.parameters()).device
    if own_loop:
        generator = torch.Generator(device=device).manual_seed(seed)
        out = decoder.decode_batch(model, ids, max_new_tokens=max_new_tokens, k=k, **sampling, generator=generator,
                                   stop_ids=stops, pad_token_id=tokenizer.pad_token_id, first_line_only=plain,
                                   tokenizer=tokenizer)
        return tokenizer.batch_decode(out, skip_special_tokens=True)
    enc = tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(device)
    return _generate_hf(model, tokenizer, enc, max_new_tokens=max_new_tokens, num_return_sequences=k, **sampling,
                        seed=seed)


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
    :func:`resolve` says (vLLM on a GPU when installed, else :func:`~mscl.engine.decoder.decode_batch` for a plain
    transformers model, else ``model.generate``); ``"loop"``, ``"hf"`` and ``"vllm"`` force one.
    """
    backend = resolve(model, backend)
    if not prompts:
        return []
    plain = not getattr(tokenizer, "chat_template", None)
    sampling = dict(do_sample=do_sample, temperature=temperature, top_p=top_p)
    k = num_return_sequences
    if backend == "vllm":
        return _generate_vllm(model, tokenizer, prompts, max_new_tokens=max_new_tokens, num_return_sequences=k,
                              sampling=sampling, seed=seed, plain=plain)
    window = sliding_window(model) if backend == "loop" else None
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    encoded = [encode_prompt_text(tokenizer, p) for p in prompts]  # the ids training scores under
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[list[str] | None] = [None] * len(prompts)
    stops = stop_token_ids(model, tokenizer)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for b, idx in enumerate(tqdm(batches, desc=desc or "generate", leave=False, disable=desc is None)):
        longest = max(len(encoded[i]) for i in idx)
        # the own loop, unless the batch would reach a sliding window (its pads would count against it)
        own_loop = backend == "loop" and (window is None or longest + max_new_tokens <= window)
        texts = _generate_batch(model, tokenizer, [encoded[i] for i in idx], own_loop=own_loop,
                                max_new_tokens=max_new_tokens, k=k, sampling=sampling, seed=seed * 100_003 + b,
                                stops=stops, plain=plain)
        for j, i in enumerate(idx):
            results[i] = [_clean(t, plain) for t in texts[j * k : (j + 1) * k]]
    if was_training:
        model.train()
    return results  # type: ignore[return-value]


def answer_questions(model, tokenizer, questions: Sequence[str], *, max_new_tokens: int, batch_size: int,
                     desc: str | None = None, backend: str = "auto",
                     system: str | None = DEFAULT_SYSTEM_PROMPT) -> list[str]:
    """Greedy answers, one per question (the evaluation decoding; deterministic)."""
    prompts = [format_prompt(tokenizer, q, system) for q in questions]
    out = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, desc=desc,
                   backend=backend)
    return [o[0] for o in out]


def sample_responses(model, tokenizer, questions: Sequence[str], *, k: int, temperature: float, top_p: float,
                     max_new_tokens: int, batch_size: int, seed: int, desc: str | None = None,
                     backend: str = "auto", system: str | None = DEFAULT_SYSTEM_PROMPT) -> list[list[str]]:
    """K sampled responses per question (temperature/top-p sampling), for the preference split;
    ``system=None`` asks a bare user turn."""
    prompts = [format_prompt(tokenizer, q, system) for q in questions]
    per_batch = max(1, batch_size // max(k, 1))
    return generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=per_batch,
                    num_return_sequences=k, do_sample=True, temperature=temperature, top_p=top_p,
                    seed=seed, desc=desc, backend=backend)


# The authors' released evaluation script (eval.mode "authors"): one answer sampled at temperature
# 0.8 and top-p 0.95, up to 256 new tokens, from a bare user turn (no system prompt).
AUTHORS_EVAL = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256}


def evaluation_answers(model, tokenizer, questions: list[str], evaluation, desc: str, mode: str | None = None,
                       seed: int = 0) -> list[str]:
    """One answer per question, as ``evaluation`` (``params.eval``) asks: greedy under the system
    prompt (``mode: greedy``), or sampled as the authors' script does (``authors``,
    :data:`AUTHORS_EVAL`, seeded). ``mode`` overrides ``evaluation.mode``."""
    if (mode or evaluation.mode) == "authors":
        return [o[0] for o in sample_responses(model, tokenizer, questions, k=1, **AUTHORS_EVAL,
                                               batch_size=evaluation.batch_size, seed=seed, desc=desc, system=None)]
    return answer_questions(model, tokenizer, questions, max_new_tokens=evaluation.max_new_tokens,
                            batch_size=evaluation.batch_size, desc=desc)


def evaluation_answer_sets(model, tokenizer, sets: dict[str, list], names: list[str], evaluation, desc: str,
                           seed: int = 0) -> dict[str, list[str]]:
    """Answers to the questions of each named set of records (:func:`evaluation_answers`), every
    distinct question asked once (the edited and retention sets are parts of the evaluation set).
    Under a launcher greedy answers are split across the processes and gathered on each
    (:func:`mscl.common.dist.shard`); sampled ones are seeded by batch, so every process asks all."""
    questions = list(dict.fromkeys(r.question for name in names for r in sets[name]))
    if evaluation.mode == "greedy":
        answered = dist.gather_shards(questions, evaluation_answers(model, tokenizer, dist.shard(questions),
                                                                    evaluation, desc))
    else:
        answered = evaluation_answers(model, tokenizer, questions, evaluation, desc, seed=seed)
    answers = dict(zip(questions, answered))
    return {name: [answers[r.question] for r in sets[name]] for name in names}
