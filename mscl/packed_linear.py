"""Frozen fp32 linear layers on the CPU through oneDNN's prepacked matmul.

PyTorch computes an fp32 ``nn.Linear`` on the CPU with MKL's sgemm. On AMD processors MKL takes
its AVX2 code path even where the CPU has AVX-512, so it reaches about half of what the cores can
do; oneDNN (shipped inside PyTorch) generates its kernels for the CPU it finds. On this repo's
2-core AMD EPYC (AVX-512), a 576-wide SmolLM2 projection runs at ~180 GFLOP/s through MKL and
~430 through oneDNN at 128 rows, and ~45 against ~110-170 at 4 rows (``make bench`` measures both
on the machine it runs on: ``matmul peak`` and ``packed linear``). The arithmetic is fp32 either
way: only the summation order differs.

:func:`enable` turns every plain ``nn.Linear`` of a model into a :class:`PackedLinear` (the same
module, parameters and state dict; ``isinstance(m, nn.Linear)`` still holds, so PEFT wraps it as
before). While its weight needs no gradient (every base weight under LoRA; any weight under
``torch.no_grad``, as in generation) and the input is fp32 on the CPU, it computes with a oneDNN
copy of the weight packed once for the kernel, and with a packed transpose for the input gradient
in training; in every other case it is ``F.linear``.

The packed copy follows the weight: it is packed again when the weight's storage, its version
counter (any in-place operation on it), or a sample of its values changes (``w.data += delta``,
which PEFT's merge does, bumps no version counter), and :func:`refresh` drops every copy after a
merge. ``$MSCL_PACKED_LINEAR=0`` turns the whole thing off.

``torch.utils.flop_counter.FlopCounterMode`` counts the packed matmuls as it counts ``aten.mm``
(:func:`_register_flops`), so FLOP figures are the same either way.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

_SAMPLES = 64   # values of the weight compared on every call to notice an untracked change


def available() -> bool:
    """oneDNN is built into this PyTorch and ``$MSCL_PACKED_LINEAR`` is not ``0``."""
    return (os.environ.get("MSCL_PACKED_LINEAR", "1") != "0" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def pack(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (out x in, fp32, contiguous) packed for :func:`packed_linear`."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous())


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` with ``packed = pack(W)`` (no autograd)."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")


def _register_flops() -> None:
    from torch.utils import flop_counter

    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None or op in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(op)
    def _linear_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * math.prod(x_shape[:-1]) * w_shape[0] * w_shape[1]


_register_flops()


def _fingerprint(weight: torch.Tensor) -> torch.Tensor:
    flat = weight.detach().view(-1)
    return flat[:: max(1, flat.numel() // _SAMPLES)].clone()


class _FrozenLinear(torch.autograd.Function):
    """``F.linear`` through the packed weight, with the input's gradient through the packed
    transpose (the weight is frozen: it gets no gradient)."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return packed_linear(x, layer._packed(), layer.bias)

    @staticmethod
    def backward(ctx, grad):
        return packed_linear(grad, ctx.layer._packed(transposed=True)), None


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` that computes through oneDNN while its weight is frozen (see the module
    docstring). Made by :func:`enable`, never constructed directly."""

    def _usable(self, x: torch.Tensor) -> bool:
        w, grad = self.weight, torch.is_grad_enabled()
        return (not (grad and w.requires_grad) and not (grad and self.bias is not None and self.bias.requires_grad)
                and x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
                and w.device.type == "cpu" and w.is_contiguous() and x.numel() > 0
                and not torch.is_autocast_enabled("cpu"))

    def _packed(self, transposed: bool = False) -> torch.Tensor:
        w = self.weight
        key = (w.data_ptr(), w._version, w.shape)
        cache = self.__dict__.get("_mscl_packs")
        if cache is None or cache["key"] != key or not torch.equal(cache["fingerprint"], _fingerprint(w)):
            cache = {"key": key, "fingerprint": _fingerprint(w), "w": pack(w)}
            self.__dict__["_mscl_packs"] = cache
        if not transposed:
            return cache["w"]
        if "wt" not in cache:
            cache["wt"] = pack(w.detach().t())
        return cache["wt"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._usable(x):
            return F.linear(x, self.weight, self.bias)
        if torch.is_grad_enabled() and x.requires_grad:
            return _FrozenLinear.apply(x, self)
        return packed_linear(x, self._packed(), self.bias)

    def drop_packs(self) -> None:
        self.__dict__.pop("_mscl_packs", None)

    def __getstate__(self):  # deepcopy and pickle: the packed copies are opaque and rebuilt on use
        state = dict(super().__getstate__())
        state.pop("_mscl_packs", None)
        return state


def enable(model: nn.Module) -> nn.Module:
    """Make every plain ``nn.Linear`` of ``model`` a :class:`PackedLinear` (in place; a no-op when
    :func:`available` is false). Returns ``model``."""
    if not available():
        return model
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = PackedLinear
    return model


def disable(model: nn.Module) -> nn.Module:
    """Undo :func:`enable`: plain ``nn.Linear`` layers again, their packed copies dropped."""
    for module in model.modules():
        if type(module) is PackedLinear:
            module.drop_packs()
            module.__class__ = nn.Linear
    return model


def refresh(model: nn.Module) -> None:
    """Drop every packed copy in ``model`` (after its weights were changed wholesale, as by a merge);
    the next call packs again."""
    for module in model.modules():
        if isinstance(module, PackedLinear):
            module.drop_packs()


def count(model: nn.Module) -> int:
    """How many layers of ``model`` are :class:`PackedLinear`."""
    return sum(isinstance(m, PackedLinear) for m in model.modules())
