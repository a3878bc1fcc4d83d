"""Optional vLLM backend for sampling and evaluation (the authors evaluate with vLLM).

Used by :func:`mscl.engine.generation.generate` when the backend resolves to ``"vllm"``
(:func:`resolve_backend`): with ``MSCL_GENERATION_BACKEND=vllm``, or with ``auto`` (the default)
when ``vllm`` is importable, a GPU is present and the model is a plain transformers causal LM on
it. Everything else (no vLLM, no GPU, MoCL's routed modules, a PEFT wrapper) takes the transformers
path, which stays the default and the fallback.

The stage loop changes the weights between calls (merged adapters, the rewriter's interpolated
weights), so the engine is built from the model as it is now: its weights and tokenizer are saved
to a scratch folder (safetensors) and a ``vllm.LLM`` loads them, in the model's own dtype. The
engine is kept while the weights are unchanged (:func:`fingerprint`: every parameter's sum and
norm) and rebuilt when they change: at least once a stage, which pays off only for the paper-scale
evaluation sets (thousands of questions). Not run in CI (no GPU, no vLLM); the plumbing is tested
against a stand-in module (``tests/test_vllm_backend.py``). vLLM is known to free GPU memory
incompletely when an engine is dropped; the old engine is shut down explicitly before a new one.
Greedy decoding is ``temperature=0``; sampling passes temperature, top-p, ``n = K`` and a per-call
seed, so the same seed gives the same samples on one machine.
"""
from __future__ import annotations

import gc
import importlib.util
import os
import shutil
import tempfile
from typing import Sequence

import torch

ENV = "MSCL_GENERATION_BACKEND"
CHOICES = ("auto", "transformers", "vllm")


def installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(model, uses_own_loop: bool) -> str:
    """``"vllm"`` or ``"transformers"`` for ``model`` under ``$MSCL_GENERATION_BACKEND``.

    Models vLLM cannot serve (MoCL's routed modules, PEFT wrappers) and runs under a launcher
    (several processes: one in-process engine each would fight over the GPU and the process group)
    always take the transformers path; ``vllm`` forced without vLLM or without a GPU is an error.
    """
    from mscl.common import dist

    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"${ENV}={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "transformers" or not uses_own_loop or dist.world_size() > 1:
        return "transformers"
    on_gpu = torch.cuda.is_available() and next(model.parameters()).device.type == "cuda"
    if choice == "vllm" and not (installed() and on_gpu):
        why = "vllm is not installed" if not installed() else "the model is not on a GPU"
        raise RuntimeError(f"${ENV}=vllm but {why}; unset it to use the transformers path")
    return "vllm" if installed() and on_gpu else "transformers"


def expected_backend() -> str:
    """The backend a stage's generation may use here, before any model is loaded (part of a stage's
    identity): ``"vllm"`` when ``$MSCL_GENERATION_BACKEND`` allows it, vLLM is installed, a GPU is
    visible and there is one process; ``"transformers"`` otherwise (models vLLM cannot serve fall
    back to it at run time)."""
    from mscl.common import dist

    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice == "transformers" or dist.world_size() > 1 or not (installed() and torch.cuda.is_available()):
        return "transformers"
    return "vllm"


def fingerprint(model) -> torch.Tensor:
    """Sum and norm of every parameter (float64): changes whenever a weight does, in place or not."""
    return torch.stack([v for p in model.parameters()
                        for v in (p.detach().sum(dtype=torch.float64),
                                  torch.linalg.vector_norm(p.detach(), dtype=torch.float64))])


class _Engine:
    """A ``vllm.LLM`` over a saved copy of the model's current weights."""

    def __init__(self, model, tokenizer):
        from vllm import LLM

        self.folder = tempfile.mkdtemp(prefix="mscl-vllm-")
        model.save_pretrained(self.folder, safe_serialization=True)
        tokenizer.save_pretrained(self.folder)
        # the model's own dtype (fp32 here), so vLLM answers what the transformers path would
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        memory = float(os.environ.get("MSCL_VLLM_GPU_MEMORY", "0.4"))  # the training model shares the GPU
        # eager mode: the engine is rebuilt after every weight change, so graph capture would not pay
        self.llm = LLM(model=self.folder, tokenizer=self.folder, dtype=dtype, seed=0,
                       gpu_memory_utilization=memory, enforce_eager=True)
        self.fingerprint = fingerprint(model)
        self.model_id = id(model)

    def close(self) -> None:
        engine = getattr(self.llm, "llm_engine", None)
        for owner in (engine, getattr(engine, "engine_core", None)):  # vLLM v1 holds a core process
            if hasattr(owner, "shutdown"):
                owner.shutdown()
        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        shutil.rmtree(self.folder, ignore_errors=True)


_engine: _Engine | None = None


def engine_for(model, tokenizer) -> _Engine:
    """The engine for the model's current weights (built, or rebuilt after they changed)."""
    global _engine
    if _engine is not None and (_engine.model_id != id(model)
                                or not torch.equal(_engine.fingerprint, fingerprint(model))):
        _engine.close()
        _engine = None
    if _engine is None:
        _engine = _Engine(model, tokenizer)
    return _engine


def shutdown() -> None:
    """Close the engine, if one is up, and give its GPU memory back (before a stage trains: the
    engine would otherwise hold ``MSCL_VLLM_GPU_MEMORY`` of the GPU through training)."""
    global _engine
    if _engine is not None:
        _engine.close()
        _engine = None


def generate(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, num_return_sequences: int,
             do_sample: bool, temperature: float, top_p: float, seed: int, stop_ids: Sequence[int]) -> list[list[str]]:
    """Raw completions (not yet cleaned), ``num_return_sequences`` per prompt, in input order. The
    engine gets token ids (:func:`mscl.engine.models.encode_prompt_text`), not text, so it samples from
    exactly the ids training scores a response under."""
    from vllm import SamplingParams

    from mscl.engine.models import encode_prompt_text

    params = SamplingParams(
        n=num_return_sequences, max_tokens=max_new_tokens, stop_token_ids=list(stop_ids), seed=seed,
        temperature=temperature if do_sample else 0.0, top_p=top_p if do_sample else 1.0,
        skip_special_tokens=True)
    requests = [{"prompt_token_ids": encode_prompt_text(tokenizer, p)} for p in prompts]
    outputs = engine_for(model, tokenizer).llm.generate(requests, params, use_tqdm=False)
    return [[completion.text for completion in out.outputs] for out in outputs]
