"""Choices made by measurement (mscl/pipeline/choices.py): the settings, the rule, the runs, and the readers of
the preference split and MoCL's routing."""
from __future__ import annotations

import pandas as pd
import pytest

from mscl.common.io import read_json, write_json
from mscl.common.params import ChoiceParams, ParamsError, build, load_params
from mscl.common.paths import SHARED_METHOD, is_finished, run_dir
from mscl.core.preference import split_table
from mscl.evaluation import picks
from mscl.methods.mocl import routing_table
from mscl.pipeline import choices
from mscl.pipeline.reproduce import stage_jobs


def test_overrides_replace_training_fields_and_bad_keys_name_the_file():
    training = load_params("cpu", "training")
    changed = choices.apply(training, {"pbl.variant": "paper", "pbl.k": 8.0, "flearning.forgetting_lambda": 1})
    assert (changed.pbl.variant, changed.pbl.k, changed.flearning.forgetting_lambda) == ("paper", 8, 1.0)
    assert isinstance(changed.pbl.k, int) and changed.train == training.train
    with pytest.raises(ParamsError, match=r"06_ablations.yaml: choices.x.*'pbl.nope'"):
        choices.apply(training, {"pbl.nope": 1.0}, "06_ablations.yaml: choices.x")
    with pytest.raises(ParamsError, match="'default'"):
        build(ChoiceParams, {"method": "pbl", "stage": 2, "default": "z", "settings": {"a": {"pbl.k": 2}}})
    with pytest.raises(ParamsError, match="'stage'"):
        build(ChoiceParams, {"method": "pbl", "stage": 1, "default": "a", "settings": {"a": {"pbl.k": 2}}})


def test_every_profile_offers_the_papers_form_and_its_own_setting():
    for profile in ("smoke", "cpu", "gpu"):
        studies = choices.studies(profile)
        assert {"loss_variant", "flearning_lambda"} <= set(studies)
        loss = studies["loss_variant"]
        assert loss.settings[loss.default]["pbl.variant"] == "paper"
        assert loss.settings[loss.default]["pbl.reduction"] == "sum"
        for study in studies:  # the profile's own setting is among those measured
            assert any(choices.is_profile_setting(profile, study, s) for s in studies[study].settings)
    cpu = choices.studies("cpu")
    assert cpu["loss_variant"].stage == 3
    assert {s["pbl.variant"] for s in cpu["loss_variant"].settings.values()} == {"paper", "sigmoid"}
    assert {s["pbl.reduction"] for s in cpu["loss_variant"].settings.values()} == {"mean", "sum"}
    lambdas = sorted(s["flearning.forgetting_lambda"] for s in cpu["flearning_lambda"].settings.values())
    assert lambdas == [0.25, 0.5, 1.0]


def test_the_rule_takes_the_best_unless_its_interval_against_the_default_holds_zero():
    choice = ChoiceParams(method="pbl", stage=3, default="paper", settings={"paper": {}, "a": {}, "b": {}})

    def table(acc_a, lo_a, hi_a):
        return pd.DataFrame({"setting": ["paper", "a", "b"], "val ACC s3": [40.0, acc_a, 39.0],
                             "lo": [0.0, lo_a, -5.0], "hi": [0.0, hi_a, 3.0]})

    assert picks.pick(table(50.0, 2.0, 18.0), choice) == "a"          # better, and the interval excludes 0
    assert picks.pick(table(50.0, -1.0, 18.0), choice) == "paper"     # better, but a tie
    assert picks.pick(table(30.0, -15.0, -5.0), choice) == "paper"    # the default is best


def test_a_setting_trains_from_the_main_runs_shared_stage(scratch):
    study, setting = "loss_variant", "paper-sum"
    assert not choices.is_profile_setting("smoke", study, setting)
    manifests = choices.run_setting("smoke", study, setting)
    choice = choices.studies("smoke")[study]
    assert [m["stage"] for m in manifests] == list(range(2, choice.stage + 1))
    assert all(m["params"]["pbl"]["variant"] == "paper" and m["params"]["pbl"]["reduction"] == "sum"
               for m in manifests)
    root = choices.setting_root("smoke", study, setting)
    link = run_dir("smoke", "tiny-random", "domain_independent", SHARED_METHOD, 1, root, seed=0)
    main = run_dir("smoke", "tiny-random", "domain_independent", SHARED_METHOD, 1, None, seed=0)
    assert link.is_symlink() and link.resolve() == main.resolve() and is_finished(main)
    main_pbl = run_dir("smoke", "tiny-random", "domain_independent", "pbl", 2, None, seed=0)
    assert not (main_pbl / "manifest.json").exists()
    table = picks.choice_table("smoke", study)
    assert list(table["setting"]) == list(choice.settings)
    assert table.loc[table["setting"] == choice.default, "vs default"].item() == 0.0
    assert "training.yaml" in choices.check_choice("smoke", study, picks.pick(table, choice))
    # the study reads the validation split alone: scrambling every other score changes nothing
    scramble_all_but_validation(scratch)
    pd.testing.assert_frame_equal(picks.choice_table("smoke", study), table)


def scramble_all_but_validation(root) -> None:
    """Every finished stage's scores on every set but ``validation`` replaced by nonsense (the files
    the stage wrote stay as they are, so the stages are still reused)."""
    for path in {p.resolve() for p in root.rglob("stage*/manifest.json")}:
        manifest = read_json(path)
        manifest["metrics"] = {name: entry if name == "validation" else {key: -1.0 for key in entry}
                               for name, entry in manifest["metrics"].items()}
        write_json(path, manifest)


def test_reproduce_schedules_the_other_settings_and_trains_the_profiles_own_with_the_methods():
    _, own = stage_jobs("cpu", None)
    jobs = {j.choice for j in own if j.choice}
    expected = {f"{study}/{s}" for study, c in choices.studies("cpu").items() for s in c.settings
                if not choices.is_profile_setting("cpu", study, s)}
    assert jobs == expected and "loss_variant/sigmoid-mean" not in jobs
    job = next(j for j in own if j.choice == "loss_variant/paper-sum")
    assert job.command("cpu")[2:7] == ["mscl", "choose", "--profile", "cpu", "--study"]
    seeds = load_params("cpu", "training").seeds
    pbl = {j.seed: j.stage for j in own if j.method == "pbl" and not j.choice and not j.sweep_setting}
    assert set(pbl) == set(seeds) and min(pbl.values()) >= 3


def test_readers_of_the_split_and_of_mocls_routing():
    split = {"questions": 10, "responses": 30, "aligned": 3, "conflict": 27, "questions_without_aligned": 8,
             "questions_without_conflict": 0}
    manifests = [{"method": "pbl", "stage": 2, "run_seed": s, "method_info": {"preference_split": split}}
                 for s in (0, 1)] + [{"method": "cit", "stage": 2, "run_seed": 0, "method_info": {}}]
    table = split_table(manifests)
    assert len(table) == 1 and table["questions without aligned %"].item() == pytest.approx(80.0)
    mocl = [{"stage": t, "run_seed": 0, "method_info": {"mocl": {"train_prompt_mean_weights": [1 / t] * t,
                                                                 "train_prompt_newest_argmax_share": 0.5}}}
            for t in (1, 2, 4)]
    routing = routing_table(mocl)
    assert list(routing["stage"]) == [1, 2, 4]
    assert routing["newest"].tolist() == pytest.approx(routing["uniform 1/t"].tolist())
    assert routing["w module 4"].isna().tolist() == [True, True, False]
    assert routing["newest is largest %"].tolist() == [50.0] * 3


def test_an_exact_tie_with_the_default_goes_to_the_default():
    choice = ChoiceParams(method="flearning", stage=2, default="c", settings={"a": {}, "b": {}, "c": {}})
    table = pd.DataFrame({"setting": ["a", "b", "c"], "val ACC s2": [30.0, 20.0, 30.0], "lo": [1.0, -9.0, 0.0],
                          "hi": [5.0, 1.0, 0.0]})
    assert picks.pick(table, choice) == "c"


def test_the_report_reads_mocls_routing_from_its_numbers():
    from mscl.evaluation.writeup import mocl_routing_sentence

    flat = pd.DataFrame({"stage": [5], "newest": [0.21], "uniform 1/t": [0.2]})
    routed = pd.DataFrame({"stage": [5], "newest": [0.9], "uniform 1/t": [0.2]})
    assert "cannot tell the stages apart" in mocl_routing_sentence(flat)
    assert "mostly to that stage's module" in mocl_routing_sentence(routed)
