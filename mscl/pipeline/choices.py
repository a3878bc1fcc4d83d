"""Choices made by measurement: PBL's loss form, F-Learning's lambda, PBL's K and temperature.

A knob that shapes the results is not set by hand. ``params/<profile>/06_ablations.yaml`` names, for
each study under ``choices``, a method, the stage to read, a ``default`` setting and the settings to
try (dotted ``training.yaml`` keys and their values). The rule, stated there before the runs:

    the setting with the highest mean validation ACC at ``stage`` over the profile's training seeds wins,
    unless the paired 95% interval of its difference to ``default`` (seeds, then facts within
    seeds, resampled: :func:`mscl.evaluation.claims.paired_difference`) includes 0; a tie goes to ``default``.

``default`` is the paper's own form where the paper prints one (the summed L_PP + L_NP), otherwise
the baseline's published setting. :func:`mscl.evaluation.picks.pick` applies the rule to
:func:`mscl.evaluation.picks.choice_table`, and :func:`check_choice` says whether ``training.yaml``
trains with the pick.

Each setting trains ``method`` over the domain-independent stream up to ``stage`` with every
training seed, under ``artifacts/choices/<profile>/<study>/<setting>/``; the shared stage(s) are the
main runs', linked rather than retrained. A setting equal to ``training.yaml`` *is* the main run, so
its stages are read from ``artifacts/runs/`` (``make reproduce`` trains them with the methods).

:func:`split_study` measures what the preference split looks like at the first non-shared stage
under other K and temperatures, by sampling only (no training).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from mscl import benchmark as benchmark
from mscl.benchmark.probe import ensure_benchmark
from mscl.common.answers import is_correct
from mscl.common.params import ChoiceParams, ParamsError, TrainingParams, load_params, params_path
from mscl.common.paths import SHARED_METHOD, artifacts_dir, is_finished, run_dir
from mscl.methods import get_method
from mscl.pipeline.stages import finished_model, run_stage


def studies(profile: str) -> dict[str, ChoiceParams]:
    return load_params(profile, "06_ablations").choices


def apply(params: TrainingParams, overrides: dict, where: str = "") -> TrainingParams:
    """``params`` with ``overrides`` (``{"pbl.variant": "paper", ...}``) in place; a key that is not
    a ``section.field`` of ``training.yaml`` is a :class:`ParamsError` naming ``where``."""
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        sub = getattr(params, section, None)
        if not dataclasses.is_dataclass(sub) or field not in {f.name for f in dataclasses.fields(sub)}:
            raise ParamsError(f"{where}: {key!r} is not a `section.field` key of training.yaml")
        current = getattr(sub, field)
        if isinstance(current, (int, float)) and not isinstance(current, bool) and isinstance(value, (int, float)):
            value = type(current)(value)
        params = dataclasses.replace(params, **{section: dataclasses.replace(sub, **{field: value})})
    return params


def setting_params(profile: str, study: str, setting: str, seed: int | None = None) -> TrainingParams:
    """``training.yaml`` (with training seed ``seed``) under one setting of a study."""
    choice = studies(profile)[study]
    training = load_params(profile, "training")
    training = training.with_seed(training.seed if seed is None else seed)
    where = f"{params_path(profile, '06_ablations')}: choices.{study}.settings.{setting}"
    return apply(training, choice.settings[setting], where)


def is_profile_setting(profile: str, study: str, setting: str) -> bool:
    """Whether the setting trains exactly as ``training.yaml`` does (its stages are the main runs')."""
    choice = studies(profile)[study]
    training = load_params(profile, "training")
    return (get_method(choice.method, setting_params(profile, study, setting, training.seed)).identity()
            == get_method(choice.method, training).identity())


def setting_root(profile: str, study: str, setting: str) -> Path | None:
    """Where a setting's stages live (``None``: the main runs under ``artifacts/runs/``)."""
    if is_profile_setting(profile, study, setting):
        return None
    return artifacts_dir() / "choices" / profile / study / setting


def _link_shared(profile: str, stream: str, params: TrainingParams, root: Path, backbone: str) -> None:
    """Link the main runs' shared stage(s) of ``params.seed`` into ``root`` (training them first if
    they are not finished), when this setting's CIT would train them the same way."""
    main = load_params(profile, "training").with_seed(params.seed)
    if get_method(SHARED_METHOD, params).identity() != get_method(SHARED_METHOD, main).identity():
        return  # the setting changes what the shared stages learn: it trains its own
    stages = benchmark.stream_stages(ensure_benchmark(profile, params.data_seed), stream)
    for stage in stages[:params.shared_stages]:
        source = run_dir(profile, backbone, stream, SHARED_METHOD, stage, None, seed=params.seed)
        if not is_finished(source):
            run_stage(profile, stream, SHARED_METHOD, stage, params=main, backbone=backbone, verbose=False)
        link = run_dir(profile, backbone, stream, SHARED_METHOD, stage, root, seed=params.seed)
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source.resolve(), target_is_directory=True)


def run_setting(profile: str, study: str, setting: str, backbone: str | None = None) -> list[dict]:
    """Train (or reuse) one setting of a study, every training seed, up to the study's stage;
    returns the stage manifests of every seed."""
    choice = studies(profile)[study]
    if setting not in choice.settings:
        raise ParamsError(f"{params_path(profile, '06_ablations')}: choices.{study} has no setting {setting!r}; "
                          f"it has {', '.join(choice.settings)}")
    stream = load_params(profile, "06_ablations").stream
    root = setting_root(profile, study, setting)
    manifests = []
    for seed in load_params(profile, "training").seeds:
        params = setting_params(profile, study, setting, seed)
        b = backbone or params.backbone
        if root is not None:
            _link_shared(profile, stream, params, root, b)
        stages = benchmark.stream_stages(ensure_benchmark(profile, params.data_seed), stream)
        manifests += [run_stage(profile, stream, choice.method, s, params=params, backbone=b, runs_root=root,
                                verbose=False) for s in stages[params.shared_stages:] if s <= choice.stage]
    return manifests


def check_choice(profile: str, study: str, picked: str) -> str:
    """Whether ``training.yaml`` trains with the pick: a sentence for the notebook."""
    overrides = studies(profile)[study].settings[picked]
    if is_profile_setting(profile, study, picked):
        return f"training.yaml trains with the pick, {picked} ({', '.join(f'{k}={v}' for k, v in overrides.items())})"
    return (f"training.yaml differs from the pick {picked}: set {', '.join(f'{k}: {v}' for k, v in overrides.items())} "
            f"in params/{profile}/training.yaml")


def split_study(profile: str, settings: list[tuple[int, float]], backbone: str | None = None,
                stream: str | None = None) -> pd.DataFrame:
    """The preference split at the first non-shared stage of ``stream`` under each (K, temperature),
    for every training seed: K responses sampled from the model at the stage's start (the shared
    stages merged) for each training question, split against the gold answer. One row per (K,
    temperature): aligned and conflicting samples (%), distinct responses per question, questions
    with no aligned sample (%) and, among the revised facts, questions whose samples all give the
    previous answer (%); mean over the seeds. Sampling only: nothing is trained."""
    from mscl.core.preference import build_preference_data

    training = load_params(profile, "training")
    stream = stream or load_params(profile, "06_ablations").stream
    folder = ensure_benchmark(profile, training.data_seed)
    stage = benchmark.stream_stages(folder, stream)[training.shared_stages]
    records = benchmark.stage_sets(folder, stream, stage)["train"]
    rows = []
    for seed in training.seeds:
        params = training.with_seed(seed)
        model, tokenizer = finished_model(profile, stream, SHARED_METHOD, stage - 1, params=params, backbone=backbone)
        for k, temperature in settings:
            split = build_preference_data(model, tokenizer, records, k=k, temperature=temperature,
                                          top_p=params.pbl.top_p, max_new_tokens=params.pbl.max_new_tokens,
                                          batch_size=params.eval.batch_size, seed=seed * 1000 + stage)
            samples = np.array([sum(x["count"] for x in row["responses"]) for row in split])
            aligned = np.array([sum(x["count"] for x in row["responses"] if x["aligned"]) for row in split])
            revised = [(r, row) for r, row in zip(records, split) if r.previous_answer]
            only_old = [all(is_correct(x["response"], r.previous_answer) for x in row["responses"])
                        for r, row in revised]
            rows.append({"K": k, "temperature": temperature, "seed": seed,
                         "aligned %": 100 * aligned.sum() / samples.sum(),
                         "conflicting %": 100 * (samples.sum() - aligned.sum()) / samples.sum(),
                         "distinct per question": float(np.mean([len(row["responses"]) for row in split])),
                         "questions without aligned %": 100 * float(np.mean(aligned == 0)),
                         "revised: all samples the previous answer %":
                             100 * float(np.mean(only_old)) if only_old else 0.0})
        del model
    frame = pd.DataFrame(rows)
    return frame.drop(columns="seed").groupby(["K", "temperature"], sort=False).mean().reset_index()

