"""Batched generation: K sampled responses per question (PBL, augmentation) and greedy answers (evaluation).

Prompts are sorted by length before batching so a batch holds prompts of similar length (less
padding), then the results are put back in input order. Sampling is seeded per batch, so the same
seed gives the same responses whatever else ran before.
"""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from mscl.models import format_prompt


def _clean(text: str, plain_prompt: bool) -> str:
    # A base model under the plain "Question: ... Answer:" format runs on into the next
    # question; its answer is the first line.
    text = text.strip()
    if plain_prompt:
        text = text.split("\n", 1)[0].strip()
    return text


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
) -> list[list[str]]:
    """Generate ``num_return_sequences`` continuations for each already-formatted prompt.

    Returns one list per prompt, in input order. ``batch_size`` counts prompts per forward pass
    (each expands to ``num_return_sequences`` rows).
    """
    if not prompts:
        return []
    plain = not getattr(tokenizer, "chat_template", None)
    was_training = model.training
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[list[str] | None] = [None] * len(prompts)
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for b, idx in enumerate(tqdm(batches, desc=desc or "generate", leave=False, disable=desc is None)):
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
        kwargs = dict(
            max_new_tokens=max_new_tokens,
            num_return_sequences=num_return_sequences,
            pad_token_id=tokenizer.pad_token_id,
            do_sample=do_sample,
        )
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(seed * 100_003 + b)
            out = model.generate(**enc, **kwargs)
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for j, i in enumerate(idx):
            chunk = texts[j * num_return_sequences : (j + 1) * num_return_sequences]
            results[i] = [_clean(t, plain) for t in chunk]
    if was_training:
        model.train()
    return results  # type: ignore[return-value]


def answer_questions(model, tokenizer, questions: Sequence[str], *, max_new_tokens: int, batch_size: int,
                     desc: str | None = None) -> list[str]:
    """Greedy answers, one per question (the evaluation decoding; deterministic)."""
    prompts = [format_prompt(tokenizer, q) for q in questions]
    out = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, desc=desc)
    return [o[0] for o in out]


def sample_responses(model, tokenizer, questions: Sequence[str], *, k: int, temperature: float, top_p: float,
                     max_new_tokens: int, batch_size: int, seed: int, desc: str | None = None) -> list[list[str]]:
    """K sampled responses per question (temperature/top-p sampling), for the preference split."""
    prompts = [format_prompt(tokenizer, q) for q in questions]
    per_batch = max(1, batch_size // max(k, 1))
    return generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=per_batch,
                    num_return_sequences=k, do_sample=True, temperature=temperature, top_p=top_p,
                    seed=seed, desc=desc)
