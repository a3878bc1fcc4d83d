"""Frozen fp32 linear layers on the CPU through oneDNN's prepacked matmul.

PyTorch computes an fp32 ``nn.Linear`` on the CPU with MKL's sgemm. On this repo's 2-core AMD
EPYC (AVX-512) that reached 204 GFLOP/s in the bench run at 9c1fd7a, about what AVX2 code can do
on two cores (MKL is widely reported to dispatch its AVX2 kernels on non-Intel processors);
oneDNN, which ships inside PyTorch and generates its kernels for the CPU it finds, reached 474 on
the same cores. Over SmolLM2's linear shapes that run measured 2.0-3.0x at 128 rows and 1.4-6.5x
at 4 rows (``make bench`` measures both on the machine it runs on: ``matmul peak`` and ``linear
backends``; ``reports/benchmarks.json``). The arithmetic is fp32 either way: only the summation order differs.

:func:`enable` turns every plain ``nn.Linear`` of a model into a :class:`PackedLinear` (the same
module, parameters and state dict; ``isinstance(m, nn.Linear)`` still holds, so PEFT wraps it as
before). While its weight needs no gradient (every base weight under LoRA; any weight under
``torch.no_grad``, as in generation) and the input is fp32 on the CPU, it computes with a oneDNN
copy of the weight packed once for the kernel, and with a packed transpose for the input gradient
in training; in every other case it is ``F.linear``.

The packed copy follows the weight: it is packed again when the weight's storage or its version
counter (any in-place operation on it) changes. A write through ``w.data`` bumps no version
counter; 32 of the weight's values, spread over its rows and columns, are compared on every call
to notice one, and :func:`refresh` drops every copy: call it after such a write (``merge_lora`` does,
after PEFT's merge). A weight changed in place between a forward and its backward makes the
backward fail, as with ``F.linear``; double backward is refused. The copies cost memory: one
packed weight per layer, and in training a packed transpose for the input gradient (for
SmolLM2-135M about 0.5 GB each). ``$MSCL_PACKED_LINEAR=0`` turns the whole thing off.

``torch.utils.flop_counter.FlopCounterMode`` counts the packed matmuls as it counts ``aten.mm``
(:func:`_register_flops`), so FLOP figures are the same either way.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

_SAMPLES = 32   # values of the weight compared on every call to notice an untracked change


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
    def _linear_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
        # (X, W, B, attr, ...) or, for the binary overload, (X, other, W, B, attr, ...): the weight
        # comes two places before the first string argument
        attr = next(i for i, a in enumerate(args) if isinstance(a, str))
        w_shape = args[attr - 2]
        return 2 * math.prod(x_shape[:-1]) * w_shape[0] * w_shape[1]


_register_flops()


def _sample_view(weight: torch.Tensor) -> torch.Tensor:
    """A view of ``_SAMPLES`` of ``weight``'s values spread over the whole of it: every ``step``-th
    value of the flattened weight, ``step`` coprime with the row length, so that the samples fall in
    different columns (a multiple of the row length would put them all in column 0). A view, not a
    copy: it sees every later write to the weight."""
    flat = weight.view(-1)
    n = min(_SAMPLES, flat.numel())
    step = max(1, flat.numel() // n)
    while step > 1 and math.gcd(step, weight.shape[-1]) != 1:
        step -= 1
    return flat.as_strided((n,), (step,))


class _FrozenLinear(torch.autograd.Function):
    """``F.linear`` through the packed weight, with the input's gradient through the packed
    transpose (the weight is frozen: it gets no gradient)."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        ctx.save_for_backward(layer.weight)  # autograd refuses the backward if it changes in place
        return packed_linear(x, layer._packed(), layer.bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        if ctx.layer.weight is not weight:  # replaced since the forward: use the forward's weight
            return F.linear(grad, weight.t()), None
        return packed_linear(grad, ctx.layer._packed(transposed=True)), None


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` that computes through oneDNN while its weight is frozen (see the module
    docstring). Made by :func:`enable`, never constructed directly."""

    def _packed(self, transposed: bool = False) -> torch.Tensor | None:
        """The packed weight (or its transpose); None when the weight cannot be packed (not fp32 on
        the CPU, not contiguous, an inference tensor)."""
        w = self.weight.detach()
        if w.is_inference():  # it has no version counter
            return None
        key = (w.data_ptr(), w._version, w.shape)
        cache = self.__dict__.get("_mscl_packs")
        if (cache is None or cache["key"] != key
                or (cache["samples"] is not None and not torch.equal(cache["samples"], cache["values"]))):
            usable = w.dtype == torch.float32 and w.device.type == "cpu" and w.is_contiguous()
            samples = _sample_view(w) if usable else None
            # the samples view keeps the storage alive, so its address cannot be reused by another weight
            cache = {"key": key, "samples": samples, "values": samples.clone() if usable else None,
                     "w": pack(w) if usable else None}
            self.__dict__["_mscl_packs"] = cache
        if not transposed or cache["w"] is None:
            return cache["w"]
        if "wt" not in cache:
            cache["wt"] = pack(w.t())
        return cache["wt"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grad = torch.is_grad_enabled()
        if ((grad and (self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad)))
                or x.dtype != torch.float32 or x.device.type != "cpu" or not x.numel()
                or torch.is_autocast_enabled("cpu")):
            return F.linear(x, self.weight, self.bias)
        packed = self._packed()
        if packed is None:
            return F.linear(x, self.weight, self.bias)
        if grad and x.requires_grad:
            return _FrozenLinear.apply(x, self)
        return packed_linear(x, packed, self.bias)

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
