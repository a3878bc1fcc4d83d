import math

import pytest
import torch

from mscl.core.losses import (
    REDUCTIONS,
    VARIANTS,
    preference_bias_loss,
    preference_bias_terms,
    total_loss,
)


# --------------------------------------------------------------------------- L_PP, L_NP
def test_pp_and_np_by_hand():
    policy = torch.tensor([-1.0, -2.0, -3.0])
    ref = torch.tensor([-1.5, -1.0, -3.5])
    aligned = torch.tensor([True, True, False])
    # log-ratios: 0.5, -1.0, 0.5; L_PP = -(0.5 - 1.0) = 0.5, L_NP = 0.5
    pp, np_ = preference_bias_terms(policy, ref, aligned, variant="paper")
    assert (pp.item(), np_.item()) == pytest.approx((0.5, 0.5))
    pp, np_ = preference_bias_terms(policy, ref, aligned, variant="paper", reduction="mean")
    assert (pp.item(), np_.item()) == pytest.approx((0.5 / 3, 0.5 / 3))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_pp_np_empty_is_zero_with_backward(reduction):
    policy = torch.zeros(0, requires_grad=True)
    pp, np_ = preference_bias_terms(policy, torch.zeros(0), torch.zeros(0, dtype=torch.bool), variant="paper",
                                    reduction=reduction)
    assert pp.item() == 0.0 and np_.item() == 0.0 and not torch.isnan(pp + np_)
    (pp + np_).backward()
    assert policy.grad.shape == (0,)


# --------------------------------------------------------------------------- PBL
POLICY = [-2.0, -3.0, -1.0, -4.0, -0.5]
REF = [-2.5, -2.0, -1.5, -3.0, -1.0]          # ratios: 0.5, -1.0, 0.5, -1.0, 0.5
ALIGNED = [True, False, True, True, False]
ALPHA, BETA = 0.7, 0.3


def _batch(requires_grad=False):
    policy = torch.tensor(POLICY, dtype=torch.float64, requires_grad=requires_grad)
    return policy, torch.tensor(REF, dtype=torch.float64), torch.tensor(ALIGNED)


def test_paper_variant_is_alpha_pp_plus_beta_np_exactly():
    policy, ref, aligned = _batch()
    ratios = policy - ref
    expected = ALPHA * -ratios[aligned].sum() + BETA * ratios[~aligned].sum()
    got = preference_bias_loss(policy, ref, aligned, ALPHA, BETA, variant="paper")
    assert got.item() == expected.item()
    # by hand: L_PP = -(0.5 + 0.5 - 1.0) = 0.0, L_NP = -1.0 + 0.5 = -0.5
    assert got.item() == pytest.approx(ALPHA * 0.0 + BETA * -0.5)
    mean = preference_bias_loss(policy, ref, aligned, ALPHA, BETA, variant="paper",
                                reduction="mean")
    assert mean.item() == pytest.approx(got.item() / 5)


def test_sigmoid_variant_by_hand_and_bounded():
    policy, ref, aligned = _batch()
    scale = 2.0
    ratios = [p - r for p, r in zip(POLICY, REF)]
    def softplus(x):                                         # -log sigmoid(z) = softplus(-z)
        return math.log1p(math.exp(x))
    expected = sum(ALPHA * softplus(-scale * r) for r, a in zip(ratios, ALIGNED) if a) \
        + sum(BETA * softplus(scale * r) for r, a in zip(ratios, ALIGNED) if not a)
    got = preference_bias_loss(policy, ref, aligned, ALPHA, BETA, variant="sigmoid", scale=scale)
    assert got.item() == pytest.approx(expected)
    aligned_term, conflict_term = preference_bias_terms(policy, ref, aligned, variant="sigmoid",
                                                        scale=scale)
    assert (ALPHA * aligned_term + BETA * conflict_term).item() == pytest.approx(expected)

    huge = torch.tensor([1e6, -1e6, 1e6, -1e6], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, True, False, False])
    loss = preference_bias_loss(huge, torch.zeros(4, dtype=torch.float64), mask, 1.0, 1.0)
    assert torch.isfinite(loss) and loss.item() >= 0
    loss.backward()
    assert torch.isfinite(huge.grad).all()
    # saturated in the right direction: no gradient left
    assert huge.grad[0].item() == 0.0 and huge.grad[3].item() == 0.0
    # the well-satisfied responses give a loss near its lower bound 0
    best = preference_bias_loss(torch.tensor([50.0, -50.0]), torch.zeros(2),
                                torch.tensor([True, False]), 1.0, 1.0)
    assert 0.0 <= best.item() < 1e-12


@pytest.mark.parametrize("variant", ["paper", "sigmoid"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("mask", [[False, False, False], [True, True, True], []])
def test_empty_subsets_contribute_zero(variant, reduction, mask):
    n = len(mask)
    policy = torch.linspace(-3, -1, n, dtype=torch.float64).requires_grad_()
    ref = torch.full((n,), -2.0, dtype=torch.float64)
    aligned = torch.tensor(mask, dtype=torch.bool)
    a, c = preference_bias_terms(policy, ref, aligned, variant=variant, reduction=reduction)
    if not any(mask):
        assert a.item() == 0.0                           # no aligned responses
    if all(mask):
        assert c.item() == 0.0                           # no conflicting responses
    loss = preference_bias_loss(policy, ref, aligned, 1.0, 1.0, variant=variant,
                                reduction=reduction)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(policy.grad).all()
    if n == 0:
        assert loss.item() == 0.0


@pytest.mark.parametrize("variant", ["paper", "sigmoid"])
def test_gradient_signs_push_aligned_up_and_conflict_down(variant):
    policy, ref, aligned = _batch(requires_grad=True)
    preference_bias_loss(policy, ref, aligned, ALPHA, BETA, variant=variant).backward()
    assert (policy.grad[aligned] < 0).all()
    assert (policy.grad[~aligned] > 0).all()
    if variant == "paper":
        assert policy.grad[aligned].tolist() == pytest.approx([-ALPHA] * 3)
        assert policy.grad[~aligned].tolist() == pytest.approx([BETA] * 2)


def test_ref_logps_get_no_gradient():
    policy, _, aligned = _batch(requires_grad=True)
    ref = torch.tensor(REF, dtype=torch.float64, requires_grad=True)
    preference_bias_loss(policy, ref, aligned, 1.0, 1.0, variant="paper").backward()
    assert ref.grad is None


def test_clamp_caps_the_paper_value():
    policy = torch.tensor([100.0, -100.0, -100.0, 100.0], requires_grad=True)
    ref = torch.zeros(4)
    aligned = torch.tensor([True, True, False, False])
    exact = preference_bias_loss(policy, ref, aligned, 1.0, 1.0, variant="paper")
    assert exact.item() == pytest.approx(-100 + 100 - 100 + 100)
    clamped = preference_bias_loss(policy, ref, aligned, 1.0, 1.0, variant="paper", clamp=5.0)
    assert clamped.item() == pytest.approx(-5 + 5 - 5 + 5)
    runaway = preference_bias_loss(torch.tensor([1e4, -1e4]), torch.zeros(2),
                                   torch.tensor([True, False]), 1.0, 1.0, variant="paper",
                                   clamp=5.0)
    assert runaway.item() == pytest.approx(-10.0)        # bounded: at least -clamp * (alpha + beta)
    clamped.backward()
    assert (policy.grad == 0).all()                      # beyond the clamp, no more push


def test_bad_arguments_raise():
    policy, ref, aligned = _batch()
    with pytest.raises(ValueError, match="paper.*sigmoid"):
        preference_bias_loss(policy, ref, aligned, 1.0, 1.0, variant="dpo")
    with pytest.raises(ValueError, match="sum.*mean"):
        preference_bias_loss(policy, ref, aligned, 1.0, 1.0, reduction="max")
    with pytest.raises(ValueError):
        preference_bias_loss(policy, ref, aligned, 1.0, 1.0, clamp=-1.0)
    with pytest.raises(TypeError):
        preference_bias_loss(policy, ref, aligned.long(), 1.0, 1.0)
    with pytest.raises(ValueError):
        preference_bias_loss(policy, ref[:3], aligned, 1.0, 1.0)


def test_total_loss():
    assert total_loss(torch.tensor(2.0), torch.tensor(-1.0), 1.0, 0.5).item() == 1.5


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_merged_duplicates_weighted_by_count_equal_the_samples_one_by_one(variant, reduction):
    # K = 6 samples of which three are one response and two another: merged, they carry counts 3, 2, 1
    torch.manual_seed(0)
    ref = torch.randn(3)
    merged = torch.randn(3, requires_grad=True)
    aligned = torch.tensor([True, False, False])
    counts = torch.tensor([3.0, 2.0, 1.0])
    one_by_one = merged.repeat_interleave(counts.long())
    kw = dict(alpha=0.7, beta=1.3, variant=variant, reduction=reduction, clamp=0.5 if variant == "paper" else 0.0)
    weighted = preference_bias_loss(merged, ref, aligned, weights=counts, **kw)
    expanded = preference_bias_loss(one_by_one, ref.repeat_interleave(counts.long()),
                                    aligned.repeat_interleave(counts.long()), **kw)
    assert torch.allclose(weighted, expanded)
    g_weighted, = torch.autograd.grad(weighted, merged)
    g_expanded, = torch.autograd.grad(expanded, merged)
    assert torch.allclose(g_weighted, g_expanded)
    # without weights the merged loss counts each distinct response once: not the samples' loss
    assert not torch.allclose(preference_bias_loss(merged, ref, aligned, **kw), expanded)
