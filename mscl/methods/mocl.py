"""MoCL: modular and compositional continual learning, a baseline of the paper.

Reference: M. Wang, H. Adel, L. Lange, J. Strötgen, H. Schütze, "Rehearsal-free Modular and
Compositional Continual Learning for Language Models", NAACL 2024 (arXiv 2404.00790); the
authors' code is github.com/boschresearch/MoCL-NAACL-2024. We read their task-matching code and
wrote our own; the choices below say where we follow it and where we depart.

Design
------
* **Modules.** Stage t adds one parameter-efficient module: a LoRA pair ``(A_t, B_t)`` on every
  target linear layer (``params.train.lora``), plus one key vector ``k_t`` of the backbone's hidden
  size. Modules and keys of stages 1..t-1 are frozen; only the newest module and key learn, and the
  backbone never changes.
* **Task matching.** An input x is represented by ``q(x)``, the mean of the last hidden states of
  the *original* backbone (every module switched off) over the prompt's tokens; the original's
  ``avg_word_embed`` query encoder is the same masked mean of a frozen encoder. The weight of module
  i for input x is (the original's ``softmax(softmax_match_scale * cos)``, scale 8 by default)::

      alpha_i(x) = softmax_i( cos(q(x), k_i) / temperature ),   i = 1..t

  so the weights of one input are positive and sum to one.
* **Composition.** Every target linear layer computes
  ``W x + sum_i alpha_i(x) * (lora_alpha / r) * B_i A_i x``, in training and at inference.
  For generation the weights are computed once from the prompt and held for every generated token.
* **Keys.** As in the original, ``q(x)`` is detached and earlier keys are frozen, so the newest key
  learns only through the task loss (its gradient reaches ``k_t`` through ``alpha``). We start
  ``k_t`` at the unit-norm mean of the stage's normalised prompt representations: that point
  minimises the original's optional matching loss ``mean_x (1 - cos(q(x), k_t))`` exactly, so the
  shared trainer needs no extra loss term. In stage 1 the single module always gets weight 1, so
  its key gets no gradient and stays at that prototype (the same holds in the original).
  ``params.mocl.learn_keys: false`` keeps every key at its prototype.
* **Prompt representations in training.** The shared trainer packs a question's prompt and its
  answers into one row with a block-causal 4D mask, and passes ``prompt_mask`` (the prompt's tokens)
  to models that declare ``uses_prompt_mask``; pooling over the answer would leak it into the
  routing. Before training, :meth:`MoCLModel.register_prompts` computes ``q`` of every training
  prompt once (the backbone is frozen, so the value is the same at every step) and files it under
  the prompt's token ids; a forward in training mode on an unregistered prompt is an error. Outside
  training an unregistered row is treated as a prompt (pooled over all its real tokens), which is
  what :meth:`MoCLModel.generate` passes.
* **Cost.** One routing pass of the frozen backbone per prompt (once per training example, once
  per generation batch), and the modules run as one concatenated LoRA of rank ``t * r``.
* **State.** ``stage<N>/mocl/module.safetensors`` holds stage N's ``A``/``B`` of every layer and its
  key; ``module.json`` the rank, alpha and target modules. :meth:`MoCL.start_model` rebuilds the
  composition of stages 1..N-1 from them.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import set_seed

from mscl.common.io import read_json, write_json
from mscl.engine.training import build_examples, train_lora
from mscl.methods.base import TENSORBOARD, Method, StageContext

MODULE_DIR = "mocl"


class _Composition:
    """Per-forward routing state shared by every :class:`MultiLoRALinear` of one model.

    A plain object, not an ``nn.Module``: registering it in every layer would list it many times.
    """

    def __init__(self) -> None:
        self.weights: torch.Tensor | None = None   # (batch, modules), set by MoCLModel around a forward
        self.disabled = False                      # True while the original backbone computes q(x)


class MultiLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a list of LoRA modules mixed with per-sample weights.

    ``y = W x + (lora_alpha / r) * sum_i w[b, i] * B_i A_i x`` where ``w`` is the ``(batch, modules)``
    tensor the owning :class:`MoCLModel` sets before each forward. The modules are applied as one
    LoRA of rank ``modules * r``: ``A`` stacked on rows, ``B`` on columns, the per-sample weight
    repeated over each module's r columns of the hidden product.
    """

    def __init__(self, base: nn.Linear, composition: _Composition, r: int, lora_alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.composition = composition
        self.r = r
        self.scaling = lora_alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.ParameterList()
        self.lora_B = nn.ParameterList()

    def add_module_pair(self, a: torch.Tensor | None = None, b: torch.Tensor | None = None) -> None:
        """Append one LoRA pair: ``a`` (r x in) and ``b`` (out x r), or PEFT's initialisation
        (A Kaiming-uniform, B zero, so a new module starts as a no-op)."""
        weight = self.base.weight
        if a is None:
            a = torch.empty(self.r, self.base.in_features, device=weight.device, dtype=weight.dtype)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        if b is None:
            b = torch.zeros(self.base.out_features, self.r, device=weight.device, dtype=weight.dtype)
        self.lora_A.append(nn.Parameter(a.to(weight.device, weight.dtype)))
        self.lora_B.append(nn.Parameter(b.to(weight.device, weight.dtype)))

    def delta_weight(self, index: int) -> torch.Tensor:
        """Module ``index``'s weight delta ``(lora_alpha / r) * B A`` (what a LoRA merge would add)."""
        return (self.lora_B[index] @ self.lora_A[index]) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if len(self.lora_A) == 0 or self.composition.disabled:
            return out
        weights = self.composition.weights
        if weights is None:
            raise RuntimeError("MoCL composition weights are not set: call the MoCLModel wrapper, not the inner model")
        if weights.shape != (x.shape[0], len(self.lora_A)):
            raise RuntimeError(f"MoCL weights of shape {tuple(weights.shape)} do not fit a batch of {x.shape[0]} "
                               f"rows and {len(self.lora_A)} modules")
        a = torch.cat(list(self.lora_A), dim=0)            # (modules * r, in)
        b = torch.cat(list(self.lora_B), dim=1)            # (out, modules * r)
        hidden = F.linear(self.dropout(x), a)              # (batch, ..., modules * r)
        per_column = weights.repeat_interleave(self.r, dim=1).to(hidden.dtype)
        hidden = hidden * per_column.view(x.shape[0], *([1] * (hidden.dim() - 2)), -1)
        return out + F.linear(hidden, b) * self.scaling


def _is_target(name: str, targets) -> bool:
    # PEFT's rule for a list of names: a module matches when its dotted name ends with one of them
    return any(name == t or name.endswith("." + t) for t in targets)


class MoCLModel(nn.Module):
    """A causal LM whose target linear layers compose per-stage LoRA modules by task matching.

    Accepts the shared trainer's call ``model(input_ids=, attention_mask=, position_ids=,
    logits_to_keep=)`` (returns the inner model's output, ``.logits`` included) and the sampler's
    ``model.generate(input_ids=, attention_mask=, ...)``; see the module docstring for the design.
    """

    uses_prompt_mask = True  # the shared trainer then passes ``prompt_mask`` (see the module docstring)

    def __init__(self, model, lora, temperature: float, learn_keys: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"MoCL temperature must be positive, got {temperature}")
        self.model = model
        self.lora = lora
        self.temperature = temperature
        self.learn_keys = learn_keys
        self.composition = _Composition()
        self.keys = nn.ParameterList()
        self._prompt_queries: dict[tuple[int, ...], torch.Tensor] = {}
        for p in model.parameters():
            p.requires_grad_(False)
        targets = [(name, m) for name, m in model.named_modules()
                   if isinstance(m, nn.Linear) and _is_target(name, lora.target_modules)]
        if not targets:
            raise ValueError(f"no linear layer of the backbone matches target_modules={list(lora.target_modules)}")
        for name, module in targets:
            parent_name, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent_name), leaf,
                    MultiLoRALinear(module, self.composition, lora.r, lora.alpha, lora.dropout))

    # ------------------------------------------------------------------ structure
    @property
    def config(self):
        return self.model.config

    @property
    def n_modules(self) -> int:
        return len(self.keys)

    def lora_layers(self) -> dict[str, MultiLoRALinear]:
        """Every composed layer, by its dotted name inside the inner model."""
        return {name: m for name, m in self.model.named_modules() if isinstance(m, MultiLoRALinear)}

    def add_stage_module(self, key: torch.Tensor, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                         trainable: bool = True) -> int:
        """Freeze every existing module and key, then append one module with key ``key``.

        ``pairs`` maps layer names to ``(A, B)``; without it the module is freshly initialised.
        Returns the new module's index.
        """
        for p in self.parameters():
            p.requires_grad_(False)
        for name, layer in self.lora_layers().items():
            a, b = pairs[name] if pairs is not None else (None, None)
            layer.add_module_pair(a, b)
            layer.lora_A[-1].requires_grad_(trainable)
            layer.lora_B[-1].requires_grad_(trainable)
        device = next(self.model.parameters()).device
        self.keys.append(nn.Parameter(key.detach().clone().to(device, torch.float32),
                                      requires_grad=trainable and self.learn_keys))
        return self.n_modules - 1

    # ------------------------------------------------------------------ task matching
    @contextmanager
    def _adapters_off(self) -> Iterator[None]:
        self.composition.disabled = True
        try:
            yield
        finally:
            self.composition.disabled = False

    @contextmanager
    def _composed(self, weights: torch.Tensor) -> Iterator[None]:
        self.composition.weights = weights
        try:
            yield
        finally:
            self.composition.weights = None

    @torch.no_grad()
    def prompt_representation(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``q(x)``: the original backbone's last hidden states, mean-pooled over each row's real
        tokens (left padding is masked out; position ids count real tokens only)."""
        mask = attention_mask.to(input_ids.device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        with self._adapters_off():
            hidden = self.model.base_model(input_ids=input_ids, attention_mask=mask,
                                           position_ids=position_ids).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * m).sum(1) / m.sum(1).clamp(min=1)).float()

    def composition_weights(self, queries: torch.Tensor) -> torch.Tensor:
        """``alpha(x) = softmax(cos(q(x), k_i) / temperature)`` over the modules: (batch, modules)."""
        keys = torch.stack(list(self.keys))
        cos = F.normalize(queries.to(keys), dim=-1) @ F.normalize(keys, dim=-1).T
        return torch.softmax(cos / self.temperature, dim=-1)

    @torch.no_grad()
    def register_prompts(self, examples: list[dict], tokenizer, batch_size: int) -> torch.Tensor:
        """Compute ``q`` of every training sequence's prompt and file it under the sequence's ids.

        ``examples`` are :func:`mscl.engine.training.build_examples` rows (a sequence's prompt is its first
        ``prompt_len`` ids). Returns the distinct prompts' representations, in order.
        """
        prompts = list(dict.fromkeys(tuple(seq["input_ids"][: seq["prompt_len"]])
                                     for ex in examples for seq in ex["sequences"]))
        device = next(self.model.parameters()).device
        tokenizer.padding_side = "left"
        reps = []
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer.pad({"input_ids": [list(p) for p in prompts[start : start + batch_size]]},
                                  return_tensors="pt").to(device)
            reps.append(self.prompt_representation(batch["input_ids"], batch["attention_mask"]).cpu())
        reps_t = torch.cat(reps) if reps else torch.empty(0, self.config.hidden_size)
        for prompt, rep in zip(prompts, reps_t):
            self._prompt_queries[prompt] = rep
        return reps_t

    def clear_prompts(self) -> None:
        """Forget the registered training prompts (after a stage: they are never seen again)."""
        self._prompt_queries.clear()

    def _queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        rows = [tuple(ids[m.bool()].tolist()) for ids, m in zip(input_ids, attention_mask)]
        found = [self._prompt_queries.get(r) for r in rows]
        missing = [i for i, q in enumerate(found) if q is None]
        if missing and self.training and torch.is_grad_enabled():
            raise KeyError(f"MoCL: {len(missing)} training row(s) whose prompt was not registered; call "
                           "register_prompts(examples, ...) before training (pooling over the answer would leak it)")
        if missing:
            pooled = self.prompt_representation(input_ids[missing], attention_mask[missing])
            for i, q in zip(missing, pooled):
                found[i] = q
        return torch.stack([q.to(input_ids.device) for q in found])

    # ------------------------------------------------------------------ the HF-facing calls
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                prompt_mask: torch.Tensor | None = None, **kwargs):
        """The inner model's forward with this batch's composition weights in place.

        ``prompt_mask`` (2D, the prompt's tokens) selects what routing pools over; without it the
        row's real tokens (a 2D ``attention_mask``) are taken as the prompt.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.n_modules == 0:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        routing_mask = prompt_mask if prompt_mask is not None else attention_mask
        if routing_mask.dim() != 2:
            raise ValueError("MoCL needs a 2D prompt_mask when the attention mask is 4D (packed rows)")
        weights = self.composition_weights(self._queries(input_ids, routing_mask))
        with self._composed(weights):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """``generate`` of the inner model with weights computed once from the prompt and held for
        every generated token (repeated for the rows that beams or multiple samples add)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.n_modules == 0:
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        weights = self.composition_weights(self.prompt_representation(input_ids, attention_mask))
        # transformers expands each prompt into max(num_beams, num_return_sequences) adjacent rows
        config = self.model.generation_config
        copies = max(kwargs.get("num_beams") or config.num_beams or 1,
                     kwargs.get("num_return_sequences") or config.num_return_sequences or 1)
        with self._composed(weights.repeat_interleave(copies, dim=0)):
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    # ------------------------------------------------------------------ state
    def save_stage_module(self, index: int, folder: str | Path) -> Path:
        """Save module ``index`` (every layer's A and B) and its key under ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"key": self.keys[index]}
        for name, layer in self.lora_layers().items():
            tensors[f"{name}.lora_A"] = layer.lora_A[index]
            tensors[f"{name}.lora_B"] = layer.lora_B[index]
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / "module.safetensors"))
        write_json(folder / "module.json", {"r": self.lora.r, "alpha": self.lora.alpha,
                                            "target_modules": list(self.lora.target_modules)})
        return folder

    def load_stage_module(self, folder: str | Path) -> int:
        """Append the frozen module saved under ``folder``; returns its index."""
        folder = Path(folder)
        saved = read_json(folder / "module.json")
        ours = {"r": self.lora.r, "alpha": self.lora.alpha, "target_modules": list(self.lora.target_modules)}
        if saved != ours:
            raise ValueError(f"{folder}: MoCL module saved with LoRA {saved}, the model is built with {ours}")
        tensors = load_file(str(folder / "module.safetensors"))
        pairs = {name: (tensors[f"{name}.lora_A"], tensors[f"{name}.lora_B"]) for name in self.lora_layers()}
        return self.add_stage_module(tensors["key"], pairs, trainable=False)


def prototype_key(representations: torch.Tensor) -> torch.Tensor:
    """The unit-norm mean of the normalised representations: the key that minimises
    ``mean_x (1 - cos(q(x), k))`` (MoCL's matching loss) over those inputs."""
    return F.normalize(F.normalize(representations.float(), dim=-1).mean(0), dim=0)


class MoCL(Method):
    """One LoRA module and one key per stage, composed per input by matching it against the keys."""

    name = "mocl"
    param_sections = ("mocl",)
    start_is_previous_model = False   # its keys and module routing are rebuilt, not carried over

    def build(self, base_model) -> MoCLModel:
        """The backbone wrapped for composition, with no module yet."""
        mocl = self.params.mocl
        return MoCLModel(base_model, self.params.train.lora, mocl.temperature, mocl.learn_keys)

    def start_model(self, base_model, ctx: StageContext) -> MoCLModel:
        model = self.build(base_model)
        for folder in ctx.previous_dirs:
            model.load_stage_module(folder / MODULE_DIR)
        model.eval()
        return model

    def train_stage(self, model: MoCLModel, ctx: StageContext) -> MoCLModel:
        examples = build_examples(ctx.tokenizer, ctx.sets["train"], self.params.train.max_length)
        reps = model.register_prompts(examples, ctx.tokenizer, self.params.eval.batch_size)
        set_seed(ctx.seed)
        index = model.add_stage_module(prototype_key(reps))
        ctx.info["log_history"] = train_lora(model, ctx.tokenizer, examples, self.params.train,
                                             ctx.stage_dir / "trainer", ctx.seed,
                                             tensorboard_dir=ctx.stage_dir / TENSORBOARD)
        model.save_stage_module(index, ctx.stage_dir / MODULE_DIR)
        # how the stage's own training prompts are routed after training: a diagnostic for the report
        with torch.no_grad():
            weights = model.composition_weights(reps.to(model.keys[0].device))
        newest_first = (weights.argmax(-1) == model.n_modules - 1).float().mean()
        ctx.info["mocl"] = {"modules": model.n_modules, "train_prompt_mean_weights": weights.mean(0).tolist(),
                            "train_prompt_newest_argmax_share": float(newest_first)}
        model.clear_prompts()
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        return model


def routing_table(manifests: list[dict]):
    """How MoCL routed each stage's own training prompts right after that stage (the manifests'
    ``method_info.mocl``), mean over training seeds: one row per stage t with the weight on each
    stage's module, the newest module's weight beside the uniform 1/t, and (where recorded) the share
    of prompts whose largest weight is the newest module. Keys that tell the stages apart put most of
    the weight on the newest module; weights near 1/t mean the keys cannot."""
    import pandas as pd

    rows = []
    for m in manifests:
        info = (m.get("method_info") or {}).get("mocl")
        if not info:
            continue
        weights = info["train_prompt_mean_weights"]
        row = {"stage": m["stage"], "seed": m["run_seed"], "modules": len(weights),
               **{f"w module {i + 1}": w for i, w in enumerate(weights)},
               "newest": weights[-1], "uniform 1/t": 1 / len(weights)}
        if "train_prompt_newest_argmax_share" in info:
            row["newest is largest %"] = 100 * info["train_prompt_newest_argmax_share"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.drop(columns="seed").groupby("stage").mean().reset_index()
