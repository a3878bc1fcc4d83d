"""Losses of the preference-based learning bias (PBL), as pure functions over tensors.

Notation: for a sampled response y' to a question x, r(y') = log pi_theta(y'|x) - log pi_ref(y'|x)
is its log-ratio against the frozen model at the start of the stage. Responses are split into
Y_align (compatible with the gold answer) and Y_conflict. The paper's loss is

    L_total = alpha * L_PP + beta * L_NP,
    L_PP = - sum_{y' in Y_align} r(y'),        L_NP = + sum_{y' in Y_conflict} r(y').

Both terms are linear in r and unbounded below (pi_theta can push a conflicting response's
probability to zero forever), so this module offers the exact form (``variant="paper"``, with an
optional clamp on r) and a bounded one (``variant="sigmoid"``, the DPO/KTO-style logistic form).
``ref_logps`` is always treated as a constant: it is detached, and can be precomputed once.

This is the training path: :class:`mscl.engine.training.StageTrainer` computes each sequence's log-prob
from the packed rows (:func:`mscl.engine.training.response_logps`) and hands them to the
:class:`PreferenceObjective` a method gives it, which is :func:`total_loss` of the gold NLL and
:func:`preference_bias_loss`. The trainer knows nothing of the paper: it minimises what it is given.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

__all__ = [
    "preference_bias_terms",
    "preference_bias_loss",
    "total_loss",
    "PreferenceObjective",
    "dpo_loss",
    "DPOObjective",
    "VARIANTS",
    "REDUCTIONS",
]

VARIANTS = ("paper", "sigmoid")
REDUCTIONS = ("sum", "mean")


# --------------------------------------------------------------------------- reductions
def _reduce(values: torch.Tensor, reduction: str, count: int | None = None) -> torch.Tensor:
    """Sum, or sum divided by ``count`` (default ``values.numel()``); an empty input gives an exact
    0 that still carries ``values``' graph, never NaN."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
    total = values.sum()
    if reduction == "sum":
        return total
    count = values.numel() if count is None else count
    return total / count if count > 0 else total


def _log_ratios(policy_logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    if policy_logps.shape != ref_logps.shape:
        raise ValueError(f"policy_logps {tuple(policy_logps.shape)} and ref_logps "
                         f"{tuple(ref_logps.shape)} differ in shape")
    return policy_logps - ref_logps.detach()


# --------------------------------------------------------------------------- PBL
def preference_bias_terms(policy_logps: torch.Tensor, ref_logps: torch.Tensor,
                          aligned: torch.Tensor, variant: str = "sigmoid", scale: float = 1.0,
                          clamp: float = 0.0, reduction: str = "sum", weights: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The aligned and conflict terms of :func:`preference_bias_loss`, before alpha and beta.

    With r = policy_logps - ref_logps, clamped to [-clamp, clamp] when clamp > 0, and w_i the weight
    of response i (1 without ``weights``; the number of identical samples it stands for):

    - ``"paper"``:   aligned = - sum_{aligned} w r,              conflict = + sum_{conflict} w r
      (exactly L_PP and L_NP when clamp = 0)
    - ``"sigmoid"``: aligned = sum_{aligned} -w log sigmoid(scale*r),
      conflict = sum_{conflict} -w log sigmoid(-scale*r)

    ``reduction="mean"`` divides both sums by the total weight of all responses (aligned +
    conflict: the number of samples), not by each subset's, so the alpha:beta balance is the
    paper's and only the overall scale changes. Empty subsets contribute exactly 0. Returned for
    logging; the loss is alpha * aligned + beta * conflict.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
    if clamp < 0:
        raise ValueError(f"clamp must be >= 0 (0 disables it), got {clamp}")
    if aligned.dtype != torch.bool:
        raise TypeError(f"aligned must be a bool tensor, got {aligned.dtype}")
    ratios = _log_ratios(policy_logps, ref_logps)
    if aligned.shape != ratios.shape:
        raise ValueError(f"aligned {tuple(aligned.shape)} and log-probs {tuple(ratios.shape)} "
                         f"differ in shape")
    if weights is None:
        weights = torch.ones_like(ratios)
    elif weights.shape != ratios.shape:
        raise ValueError(f"weights {tuple(weights.shape)} and log-probs {tuple(ratios.shape)} differ in shape")
    weights = weights.to(ratios.dtype)
    if clamp > 0:
        ratios = ratios.clamp(-clamp, clamp)
    aligned_r, conflict_r = ratios[aligned], ratios[~aligned]
    if variant == "paper":
        aligned_values, conflict_values = -aligned_r, conflict_r
    else:
        aligned_values = -F.logsigmoid(scale * aligned_r)
        conflict_values = -F.logsigmoid(-scale * conflict_r)
    n = float(weights.sum())
    return (_reduce(weights[aligned] * aligned_values, reduction, n),
            _reduce(weights[~aligned] * conflict_values, reduction, n))


def preference_bias_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor,
                         aligned: torch.Tensor, alpha: float, beta: float,
                         variant: str = "sigmoid", scale: float = 1.0, clamp: float = 0.0,
                         reduction: str = "sum", weights: torch.Tensor | None = None) -> torch.Tensor:
    """Preference-based learning bias over a batch of sampled responses.

    r_i = log pi_theta(y_i|x_i) - log pi_ref(y_i|x_i), clamped to [-clamp, clamp] if clamp > 0.

    - ``variant="paper"`` (the printed formula; unbounded below):
        L = alpha * (- sum_{i aligned} r_i) + beta * (+ sum_{i conflict} r_i)
          = alpha * L_PP + beta * L_NP
    - ``variant="sigmoid"`` (bounded below by 0; the gradient vanishes as a ratio saturates):
        L = alpha * sum_{i aligned} -log sigmoid(scale * r_i)
          + beta  * sum_{i conflict} -log sigmoid(-scale * r_i)
      Near r = 0 its gradient is scale/2 times the paper's; at r = 0 each response adds log 2.

    Reduction: ``"sum"`` (default) is the printed formula; the loss, and so the effective learning
    rate, then grows with K (responses per question) and the batch size. ``"mean"`` divides by the
    number of responses in the batch (aligned + conflict), keeping the step size independent of K
    while preserving the alpha:beta balance. Empty aligned and/or conflict subsets contribute
    exactly 0 (never NaN) and backward still works.

    Args:
        policy_logps, ref_logps: same-shape sequence log-probs (any shape, e.g. [B*K] or [B, K]);
            ``ref_logps`` is detached.
        aligned: bool tensor of that shape, True for Y_align, False for Y_conflict.
        weights: optional tensor of that shape, each response's weight: the number of identical
            samples it stands for (:func:`mscl.core.preference.split_responses` merges them), so the
            weighted loss equals the loss over the K samples one by one.
    """
    aligned_term, conflict_term = preference_bias_terms(
        policy_logps, ref_logps, aligned, variant=variant, scale=scale, clamp=clamp,
        reduction=reduction, weights=weights)
    return alpha * aligned_term + beta * conflict_term


def total_loss(nll: torch.Tensor, preference: torch.Tensor, nll_weight: float = 1.0,
               preference_weight: float = 1.0) -> torch.Tensor:
    """L = nll_weight * NLL(gold answer) + preference_weight * L_PBL."""
    return nll_weight * nll + preference_weight * preference


@dataclasses.dataclass(frozen=True)
class PreferenceObjective:
    """PBL's objective as the stage trainer calls it: ``L = nll_weight * NLL + preference_weight * L_PBL``.

    Built from ``params.pbl`` (:meth:`from_params`); the trainer calls :meth:`preference` on a
    batch's sampled responses and :meth:`total` to combine it with the gold NLL.
    """
    alpha: float
    beta: float
    variant: str = "sigmoid"
    scale: float = 1.0
    clamp: float = 0.0
    reduction: str = "sum"
    nll_weight: float = 1.0
    preference_weight: float = 1.0
    grad_norms_every: int = 0   # log each term's gradient norm every this many steps (0: never)

    @classmethod
    def from_params(cls, pbl) -> PreferenceObjective:
        """From a :class:`mscl.common.params.PBLParams` (or anything with the same fields)."""
        return cls(**{f.name: getattr(pbl, f.name) for f in dataclasses.fields(cls)})

    def terms(self, policy_logps: torch.Tensor, ref_logps: torch.Tensor, aligned: torch.Tensor,
              weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha * L_PP, beta * L_NP)``: :func:`preference_bias_terms` with this objective's knobs;
        their sum is :func:`preference_bias_loss`."""
        aligned_term, conflict_term = preference_bias_terms(
            policy_logps, ref_logps, aligned, variant=self.variant, scale=self.scale, clamp=self.clamp,
            reduction=self.reduction, weights=weights)
        return self.alpha * aligned_term, self.beta * conflict_term

    def preference(self, policy_logps: torch.Tensor, ref_logps: torch.Tensor, aligned: torch.Tensor,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`preference_bias_loss` with this objective's knobs."""
        return sum(self.terms(policy_logps, ref_logps, aligned, weights))

    def total(self, nll: torch.Tensor, preference: torch.Tensor | None) -> torch.Tensor:
        """:func:`total_loss`; a batch without sampled responses is its weighted NLL."""
        if preference is None:
            return self.nll_weight * nll
        return total_loss(nll, preference, self.nll_weight, self.preference_weight)


# --------------------------------------------------------------------------- DPO on revisions
def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """TRL's ``DPOTrainer`` loss with ``loss_type="sigmoid"`` (reverse KL, no length weighting), the
    mean over the pairs of ``-log sigmoid(beta * ((c - c_ref) - (r - r_ref)))``.

    trl 1.16 computes it inline in ``DPOTrainer._compute_loss``, behind the trainer's own forward,
    so it cannot be called on our packed rows; ``tests/test_new_baselines.py`` runs that method on a
    hand-built batch and checks that the two agree on the same log-probs.
    """
    chosen = _log_ratios(chosen_logps, ref_chosen_logps)
    rejected = _log_ratios(rejected_logps, ref_rejected_logps)
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


@dataclasses.dataclass(frozen=True)
class DPOObjective:
    """DPO on revisions as the stage trainer calls it: ``L = nll_weight * NLL(gold) + preference_weight
    * L_DPO``, where each revised fact's batch rows carry two responses in order, the new answer
    (``aligned``) and the answer it replaced, both scored by the frozen stage-start model.

    It has :class:`PreferenceObjective`'s interface: :meth:`terms` gives ``(L_DPO, 0)`` (the trainer
    logs the first as the aligned term), :meth:`total` adds the gold NLL.
    """
    beta: float
    nll_weight: float = 1.0
    preference_weight: float = 1.0
    reduction: str = "mean"      # a mean over the pairs, as TRL's
    grad_norms_every: int = 0

    def terms(self, policy_logps: torch.Tensor, ref_logps: torch.Tensor, aligned: torch.Tensor,
              weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_DPO, 0)`` over the batch's pairs: the aligned responses are the chosen ones, the
        others the rejected ones, pair i being the i-th of each (:class:`mscl.methods.dpo.DPO` builds
        every revised fact's rows as exactly one of each)."""
        chosen, rejected = aligned, ~aligned
        if int(chosen.sum()) != int(rejected.sum()):
            raise ValueError(f"DPO needs one rejected response per chosen one; the batch has {int(chosen.sum())} "
                             f"chosen and {int(rejected.sum())} rejected")
        loss = dpo_loss(policy_logps[chosen], policy_logps[rejected], ref_logps[chosen], ref_logps[rejected],
                        self.beta)
        return loss, torch.zeros_like(loss)

    def preference(self, policy_logps, ref_logps, aligned, weights=None) -> torch.Tensor:
        return sum(self.terms(policy_logps, ref_logps, aligned, weights))

    def total(self, nll: torch.Tensor, preference: torch.Tensor | None) -> torch.Tensor:
        if preference is None:
            return self.nll_weight * nll
        return total_loss(nll, preference, self.nll_weight, self.preference_weight)
