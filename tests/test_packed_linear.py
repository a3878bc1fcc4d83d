"""The oneDNN packed linear layers (mscl.engine.packed_linear): same numbers as F.linear, same gradients,
and a packed copy that follows every change of its weight."""
from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from mscl.common.params import LoraParams
from mscl.engine import packed_linear
from mscl.engine.models import attach_lora, merge_lora

pytestmark = pytest.mark.skipif(not packed_linear.available(), reason="this PyTorch has no oneDNN")


def _layer(seed=0, n_in=48, n_out=40, bias=True):
    torch.manual_seed(seed)
    layer = nn.Linear(n_in, n_out, bias=bias)
    plain = copy.deepcopy(layer)
    packed_linear.enable(layer)
    return layer, plain


def test_enable_swaps_every_plain_linear_and_disable_restores(tiny):
    model = copy.deepcopy(tiny[0])
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and packed_linear.count(model) == len(linears)
    keys = set(model.state_dict())
    packed_linear.disable(model)
    assert packed_linear.count(model) == 0 and all(type(m) is nn.Linear for m in linears)
    assert set(model.state_dict()) == keys


def test_off_switch(monkeypatch):
    monkeypatch.setenv("MSCL_PACKED_LINEAR", "0")
    layer = packed_linear.enable(nn.Linear(4, 3))
    assert type(layer) is nn.Linear


@pytest.mark.parametrize("shape", [(5, 48), (3, 7, 48), (1, 1, 48)])
def test_forward_matches_f_linear(shape):
    layer, plain = _layer()
    x = torch.randn(*shape)
    with torch.no_grad():
        got, want = layer(x), plain(x)
    assert "_mscl_packs" in layer.__dict__  # the packed path ran
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_input_gradient_through_frozen_weight():
    layer, plain = _layer(bias=False)
    for m in (layer, plain):
        m.weight.requires_grad_(False)
    x = torch.randn(6, 48, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    g = torch.randn(6, 40)
    (layer(x) * g).sum().backward()
    (plain(x2) * g).sum().backward()
    assert "wt" in layer.__dict__["_mscl_packs"]  # the backward used the packed transpose
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)


def test_trainable_weight_takes_f_linear_and_gets_its_gradient():
    layer, plain = _layer()
    x = torch.randn(4, 48)
    layer(x).sum().backward()
    plain(x).sum().backward()
    assert "_mscl_packs" not in layer.__dict__
    torch.testing.assert_close(layer.weight.grad, plain.weight.grad)


def test_packed_copy_follows_weight_changes():
    layer, plain = _layer()
    x = torch.randn(4, 48)

    def check():
        with torch.no_grad():
            torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-5)

    check()
    delta = torch.randn_like(layer.weight) * 0.1
    layer.weight.data += delta   # no version bump: the sampled values notice
    plain.weight.data += delta
    check()
    with torch.no_grad():        # an in-place op: the version counter notices
        layer.weight.mul_(0.5)
        plain.weight.mul_(0.5)
    check()
    new = torch.randn(40, 48)    # a new tensor: the storage notices
    layer.weight = nn.Parameter(new.clone())
    plain.weight = nn.Parameter(new.clone())
    check()


def test_lora_training_gradients_and_merge_match_plain(tiny):
    model, tokenizer = tiny
    lora = LoraParams(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    ids = torch.tensor([tokenizer("The capital of France is Paris.")["input_ids"]])
    results = []
    for enabled in (True, False):
        base = copy.deepcopy(model)
        if not enabled:
            packed_linear.disable(base)
        torch.manual_seed(1)
        peft = attach_lora(base, lora)
        with torch.no_grad():  # a nonzero B, so the LoRA path and the merge change something
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)
        loss = peft(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in peft.named_parameters() if p.requires_grad}
        with torch.no_grad():
            before_merge = peft(input_ids=ids).logits
            merged = merge_lora(peft)
            after_merge = merged(input_ids=ids).logits
        results.append((loss.detach(), grads, before_merge, after_merge))
    (loss_a, grads_a, before_a, after_a), (loss_b, grads_b, before_b, after_b) = results
    assert packed_linear.count(merged) == 0  # the second run was the plain one
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(before_a, before_b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after_a, after_b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after_a, before_a, rtol=1e-4, atol=1e-4)  # the merge kept the function


def test_deepcopy_and_pickle_after_packing():
    layer, plain = _layer()
    x = torch.randn(3, 48)
    with torch.no_grad():
        layer(x)
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert isinstance(clone, packed_linear.PackedLinear) and "_mscl_packs" not in clone.__dict__
        with torch.no_grad():
            torch.testing.assert_close(clone(x), plain(x), rtol=1e-5, atol=1e-5)


def test_flop_counter_counts_packed_matmuls():
    from torch.utils.flop_counter import FlopCounterMode

    layer, plain = _layer(bias=False)
    layer.weight.requires_grad_(False)
    plain.weight.requires_grad_(False)
    counts = []
    for m in (layer, plain):
        x = torch.randn(2, 5, 48, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            m(x).sum().backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 2 * (2 * 10 * 48 * 40)  # forward and input gradient


def test_untracked_write_that_spares_column_zero_is_noticed():
    layer, plain = _layer(n_in=64, n_out=128, bias=False)  # a stride of numel/64 would see column 0 only
    x = torch.randn(4, 64)
    with torch.no_grad():
        layer(x)
        layer.weight.data[:, 1:] *= 0.5
        plain.weight.data[:, 1:] *= 0.5
        torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-5)


def test_weight_changed_between_forward_and_backward_fails_loudly():
    layer, _ = _layer(bias=False)
    layer.weight.requires_grad_(False)
    x = torch.randn(3, 48, requires_grad=True)
    y = layer(x).sum()
    with torch.no_grad():
        layer.weight.mul_(2.0)
    with pytest.raises(RuntimeError, match="inplace"):
        y.backward()


def test_double_backward_is_refused():
    layer, _ = _layer(bias=False)
    layer.weight.requires_grad_(False)
    x = torch.randn(3, 48, requires_grad=True)
    (g,) = torch.autograd.grad(layer(x).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_inference_mode_weights_fall_back():
    with torch.inference_mode():
        layer, plain = _layer()
    x = torch.randn(2, 48)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), plain(x))
    assert "_mscl_packs" not in layer.__dict__


def test_model_flops_are_counted_the_same_packed_or_not(tiny):
    from torch.utils.flop_counter import FlopCounterMode

    model, tokenizer = tiny
    ids = torch.tensor([tokenizer("Which river flows through Paris?")["input_ids"]] * 3)
    counts = []
    for enabled in (True, False):
        m = copy.deepcopy(model)
        if not enabled:
            packed_linear.disable(m)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            m(input_ids=ids)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


def test_non_contiguous_weight_falls_back_on_every_call():
    layer, plain = _layer(bias=False)
    weight = torch.randn(48, 40).t()  # 40 x 48, not contiguous
    layer.weight = nn.Parameter(weight, requires_grad=False)
    plain.weight = nn.Parameter(weight.clone(), requires_grad=False)
    x = torch.randn(3, 48)
    with torch.no_grad():
        for _ in range(2):  # the second call reads the cache the first left
            torch.testing.assert_close(layer(x), plain(x))
