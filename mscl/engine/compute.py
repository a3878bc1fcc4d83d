"""What a stage's method computes, in tokens through the backbone: the budget axis's x-axis.

Every forward pass embeds its input ids exactly once, so a forward pre-hook on the token embedding
counts the tokens of every pass, whoever runs it: K-sampling and greedy decoding (one token a
sequence a step once the prompt is in the KV cache), reference scoring, rewriting, the indication,
and the trainer's steps. A pass with gradients enabled is a training pass (its backward follows).
Padding counts: it is computed. Generation through vLLM runs outside this process and is not seen.

Forward-equivalent tokens weigh a training token as 3 forward ones (the backward through frozen
weights costs about twice the forward; LoRA's own weight gradients are negligible), and
FLOPs ~ 2 N per forward-equivalent token for N backbone parameters.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

import torch


@dataclasses.dataclass
class TokenCount:
    """Tokens through the backbone, split by whether gradients were on."""
    forward: int = 0     # inference passes (sampling, scoring, decoding)
    trained: int = 0     # passes with gradients (each followed by a backward)

    @property
    def forward_equivalent(self) -> int:
        return self.forward + 3 * self.trained

    def flops(self, parameters: int) -> float:
        """~ 2 N FLOPs per forward-equivalent token."""
        return 2.0 * parameters * self.forward_equivalent

    def as_dict(self, parameters: int) -> dict:
        return {"forward_tokens": self.forward, "trained_tokens": self.trained,
                "forward_equivalent_tokens": self.forward_equivalent, "parameters": parameters,
                "flops": self.flops(parameters)}


def token_embedding(model) -> torch.nn.Embedding:
    """The model's token embedding: its largest ``nn.Embedding`` (wrappers such as PEFT's or MoCL's
    keep the backbone's module inside)."""
    embeddings = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    if not embeddings:
        raise TypeError(f"{type(model).__name__} has no token embedding to count tokens at")
    return max(embeddings, key=lambda m: m.num_embeddings)


def backbone_parameters(model) -> int:
    """Parameters of the backbone, adapters excluded (LoRA and other trainable extras)."""
    return sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)


@contextlib.contextmanager
def counting(model) -> Iterator[TokenCount]:
    """Count the tokens of every pass through ``model``'s token embedding during the block."""
    count = TokenCount()

    def hook(module, args):
        tokens = args[0].numel()
        if torch.is_grad_enabled():
            count.trained += tokens
        else:
            count.forward += tokens

    handle = token_embedding(model).register_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()
