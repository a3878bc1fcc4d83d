"""Reading the studies that choose a setting by a stated rule: the pilot's budget sweep
(:mod:`mscl.pipeline.pilot` trains it; :func:`sweep_table`, :func:`pick_regime`) and the choice
studies (:mod:`mscl.pipeline.choices` trains them; :func:`choice_table`, :func:`pick`).

For a choice study
The rule (``06_ablations.yaml``, fixed before the runs): the best mean ACC at the study's stage, unless
its paired 95% interval against the study's ``default`` (facts and seeds resampled:
:func:`mscl.evaluation.claims.paired_difference`) includes 0; a tie goes to ``default``.
"""
from __future__ import annotations

import pandas as pd

from mscl.common.params import ChoiceParams, load_params
from mscl.evaluation.claims import paired_difference, stage_predictions
from mscl.evaluation.tables import results_table
from mscl.pipeline import pilot
from mscl.pipeline.choices import is_profile_setting, run_setting, setting_root, studies

CHOICE_BOOTSTRAP = 2000


def choice_table(profile: str, study: str, backbone: str | None = None) -> pd.DataFrame:
    """One row per setting, every number on the validation split (``val``; the claims' items are never
    read): its overrides, ACC (seed mean) at every stage it trains, the seed sd, KGR and the
    stale-answer rate at the study's stage, and its ACC difference to ``default`` there with the
    paired 95% interval. Settings not trained yet are trained first (finished stages are reused)."""
    choice = studies(profile)[study]
    training = load_params(profile, "training")
    stream = load_params(profile, "06_ablations").stream
    b = backbone or training.backbone
    manifests = {name: run_setting(profile, study, name, backbone) for name in choice.settings}
    frames = {name: stage_predictions(profile, b, stream, choice.method, choice.stage, "validation",
                                      runs_root=setting_root(profile, study, name), seeds=training.seeds)
              for name in choice.settings}
    rows = []
    for name, overrides in choice.settings.items():
        per_seed = results_table(manifests[name], per_seed=True)
        last = per_seed[per_seed["stage"] == choice.stage]
        table = results_table(manifests[name]).set_index("stage")
        row = {"setting": name, "overrides": ", ".join(f"{k}={v}" for k, v in overrides.items()),
               "profile's": is_profile_setting(profile, study, name)}
        for stage, r in table.iterrows():
            row[f"val ACC s{stage}"] = r["ACC_validation"]
        sd = last["ACC_validation"].std(ddof=1) if len(last) > 1 else float("nan")
        row[f"val ACC s{choice.stage} seed sd"] = sd
        row[f"val KGR s{choice.stage}"] = table.loc[choice.stage, "KGR_validation"]
        row[f"val stale s{choice.stage}"] = table.loc[choice.stage, "stale_validation"]
        if name == choice.default:
            row.update({"vs default": 0.0, "lo": 0.0, "hi": 0.0})
        else:
            point, lo, hi = paired_difference(frames[name], frames[choice.default], "ACC", CHOICE_BOOTSTRAP)
            row.update({"vs default": point, "lo": lo, "hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def pick(table: pd.DataFrame, choice: ChoiceParams) -> str:
    """The rule (module docstring): the best mean validation ACC at the study's stage, unless its
    paired interval against ``default`` includes 0."""
    column = f"val ACC s{choice.stage}"
    best = table.loc[table[column].idxmax()]
    default_acc = table.loc[table["setting"] == choice.default, column].iloc[0]
    if best["setting"] == choice.default or default_acc == best[column] or best["lo"] <= 0 <= best["hi"]:
        return choice.default
    return str(best["setting"])


def sweep_table(profile: str, backbone: str | None = None) -> pd.DataFrame:
    """One row per setting, in budget order, every number on the validation split (``val``): stage-1
    ACC, ACC and stale-answer rate (%) at every later stage, the change of ACC from stage 1 to the
    last stage, and the wall time of its stages."""
    pilot_params = load_params(profile, "02_pilot")
    rows = []
    for setting in pilot.settings(pilot_params):
        table = results_table(pilot.run_setting(profile, setting, backbone)).set_index("stage")
        row = {"setting": setting.name, "epochs": setting.epochs, "learning_rate": setting.learning_rate,
               "targets": setting.targets}
        for stage, r in table.iterrows():
            row[f"val ACC s{stage}"] = r["ACC_validation"]
        for stage, r in table.iloc[1:].iterrows():
            row[f"val stale s{stage}"] = r["stale_validation"]
        row["val ACC change s1->last"] = table["ACC_validation"].iloc[-1] - table["ACC_validation"].iloc[0]
        row["wall_s"] = table["wall_s"].sum()
        rows.append(row)
    return pd.DataFrame(rows)


def pick_regime(table: pd.DataFrame, min_stage1_acc: float) -> pd.Series | None:
    """The rule: the first row (budget order) whose stage-1 validation ACC reaches ``min_stage1_acc``;
    None if no setting does."""
    reached = table[table["val ACC s1"] >= min_stage1_acc]
    return None if reached.empty else reached.iloc[0]


def check_regime(profile: str, pick: pd.Series | None) -> str:
    """Whether ``training.yaml`` trains with the sweep's pick: a sentence for the notebook."""
    pilot_params = load_params(profile, "02_pilot")
    if pick is None:
        return (f"no setting reaches {pilot_params.sweep.min_stage1_acc:g}% stage-1 validation ACC; training.yaml "
                "keeps its budget")
    train = load_params(profile, "training").train
    chosen = next(s for s in pilot.settings(pilot_params) if s.name == pick["setting"])
    ours = (train.epochs, train.learning_rate, tuple(train.lora.target_modules))
    if ours == (chosen.epochs, chosen.learning_rate, chosen.target_modules):
        return f"training.yaml trains with the pick, {chosen.name}"
    return (f"training.yaml ({ours[0]:g} epochs, lr {ours[1]:g}, {list(ours[2])}) differs from the sweep's pick "
            f"{chosen.name}: update params/{profile}/training.yaml")
