"""The budget axis: the main comparison trained at several budgets, from under-trained to
well-trained, so that a method's gain can be told from the amount of training.

``params/<profile>/04b_budget_axis.yaml`` names the methods, the budgets (``training.yaml``
overrides, lowest first) and a reduced stream: every validation fact and the first ``facts``
evaluation facts of the domain-independent stream (:func:`mscl.pipeline.pilot.sweep_data`), its
first ``stages`` stages. Each budget trains every method with every training seed under
``artifacts/budgets/<profile>/<budget>/``; the shared first stage is the budget's own CIT stage.
:mod:`mscl.evaluation.budgets` reads them: the table, the figure against compute, and the claims.
"""
from __future__ import annotations

from pathlib import Path

from mscl import benchmark
from mscl.common.params import BudgetAxisParams, TrainingParams, load_params, params_path
from mscl.common.paths import artifacts_dir
from mscl.pipeline import choices, pilot
from mscl.pipeline.stages import run_stage


def axis(profile: str) -> BudgetAxisParams:
    return load_params(profile, "04b_budget_axis")


def budget_root(profile: str, budget: str) -> Path:
    """Where one budget's stages live (a runs root of its own)."""
    return artifacts_dir() / "budgets" / profile / budget


def budget_data(profile: str) -> Path:
    """The reduced stream every budget trains on."""
    training = load_params(profile, "training")
    return pilot.sweep_data(profile, axis(profile).facts, training.data_seed,
                            artifacts_dir() / "budgets" / profile / "data")


def budget_stages(profile: str) -> list[int]:
    """The stages the axis trains: the reduced stream's first ``stages``."""
    return benchmark.stream_stages(budget_data(profile), axis(profile).stream)[:axis(profile).stages]


def budget_params(profile: str, budget: str, seed: int) -> TrainingParams:
    """``training.yaml`` with the budget's overrides, for training seed ``seed``."""
    overrides = axis(profile).budgets.get(budget)
    if overrides is None:
        raise ValueError(f"unknown budget {budget!r}; {params_path(profile, '04b_budget_axis')} has "
                         f"{', '.join(axis(profile).budgets)}")
    training = load_params(profile, "training")
    return choices.apply(training.with_seed(seed), overrides, f"{params_path(profile, '04b_budget_axis')}: {budget}")


def run_budget(profile: str, budget: str, method: str, backbone: str | None = None,
               seeds: list[int] | None = None) -> list[dict]:
    """Every stage of the axis for ``method`` at ``budget``, for every training seed (finished stages
    are reused); returns their manifests."""
    params = axis(profile)
    data, stages = budget_data(profile), budget_stages(profile)
    return [run_stage(profile, params.stream, method, stage, params=budget_params(profile, budget, seed),
                      backbone=backbone, runs_root=budget_root(profile, budget), data_dir=data, verbose=False)
            for seed in (seeds if seeds is not None else load_params(profile, "training").seeds)
            for stage in stages]
