"""The pilot's budget sweep (mscl/pipeline/pilot.py) and the knowledge-conflict readers
(mscl/evaluation/conflict.py), on the smoke profile's tiny model."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mscl import benchmark
from mscl.benchmark.probe import ensure_benchmark
from mscl.common.params import load_params
from mscl.evaluation import conflict, picks
from mscl.pipeline import pilot
from mscl.pipeline.stages import run_stream
from tests.test_choices import scramble_all_but_validation


def test_settings_come_in_the_rules_budget_order():
    grid = pilot.settings(load_params("cpu", "02_pilot"))
    assert len(grid) >= 9
    assert [s.budget() for s in grid] == sorted(s.budget() for s in grid)
    assert any(len(s.target_modules) == 7 for s in grid)   # all linear layers are in the sweep
    assert len({s.name for s in grid}) == len(grid)


def test_pick_regime_takes_the_lowest_budget_that_learns_stage_one():
    table = pd.DataFrame({"setting": ["a", "b", "c", "d"], "val ACC s1": [20.0, 59.9, 60.0, 90.0]})
    assert picks.pick_regime(table, 60.0)["setting"] == "c"
    assert picks.pick_regime(table, 95.0) is None


def test_sweep_runs_every_setting_on_the_reduced_stream(scratch):
    sweep = picks.sweep_table("smoke")
    params = load_params("smoke", "02_pilot")
    assert list(sweep["setting"]) == [s.name for s in pilot.settings(params)]
    stages = benchmark.STREAM_STAGES["domain_independent"]
    assert [c for c in sweep.columns if c.startswith("val ACC s")] == [f"val ACC s{s}" for s in stages]
    assert [c for c in sweep.columns if c.startswith("val stale s")] == [f"val stale s{s}" for s in stages[1:]]
    reduced = pilot.sweep_root("smoke") / "data"
    records = benchmark.read_stream(reduced, "domain_independent")
    validation = {r.fact_id for r in records if r.split == "validation"}
    sizes = load_params("smoke", "01_data_build").sizes
    assert len(validation) == sizes.validation_facts  # the rule reads every validation fact
    assert len({r.fact_id for r in records} - validation) == params.sweep.facts
    # a setting's stages are its own: other epochs, another run folder, reused the second time
    again = picks.sweep_table("smoke")
    pd.testing.assert_frame_equal(sweep.drop(columns="wall_s"), again.drop(columns="wall_s"))
    message = picks.check_regime("smoke", picks.pick_regime(sweep, params.sweep.min_stage1_acc))
    assert "training.yaml" in message
    scramble_all_but_validation(scratch)  # the rule reads the validation split alone
    pd.testing.assert_frame_equal(picks.sweep_table("smoke").drop(columns="wall_s"), sweep.drop(columns="wall_s"))


def test_answer_sources_and_accuracy_matrix_read_the_saved_predictions(scratch):
    params = load_params("smoke", "training")
    manifests = run_stream("smoke", "cross_domain", "cit", params=params, verbose=False)
    stages = benchmark.stream_stages(ensure_benchmark("smoke", params.data_seed), "cross_domain")
    rows = conflict.answer_source_rows("smoke", "tiny-random", "cross_domain", ["cit"], stages, [0])
    assert set(rows["source"]) <= {"current", "stale", "neither"}
    assert len(rows) == sum(m["metrics"]["eval"]["n"] for m in manifests)
    (R,) = conflict.accuracy_matrices("smoke", "tiny-random", "cross_domain", "cit", stages, [0])
    assert R.shape == (len(stages), len(stages))
    assert np.isnan(R[np.triu_indices(len(stages), 1)]).all()
    # below the diagonal, the earlier domains' facts that no later domain asks again (smoke keeps
    # only the first eval.max_items of each set: stage 1's evaluation items are all handed over)
    assert not np.isnan(np.diag(R)[1:]).any() and not np.isnan(R[1:, 0]).any()
    summary = conflict.continual_table({"cit": [R, R]})
    assert list(summary.columns[:2]) == ["method", "seeds"] and summary["A_sd"].iloc[0] == pytest.approx(0.0)


def test_the_regime_rule_is_anchored_to_the_papers_weakest_cit_stage_1():
    from mscl.evaluation.claims import paper_results

    main = paper_results()["main"]
    weakest = main[(main["method"] == "CIT") & (main["stage"] == 1)]["ACC"].min()
    for profile in ("cpu", "gpu"):
        assert load_params(profile, "02_pilot").sweep.min_stage1_acc == pytest.approx(weakest)


def test_make_reproduce_stops_when_training_yaml_is_not_the_rules_pick(monkeypatch):
    grid = pilot.settings(load_params("smoke", "02_pilot"))
    train = load_params("smoke", "training").train
    accs = {grid[0].name: 40.0, grid[1].name: 75.0}   # the second setting is the first to reach 60%
    monkeypatch.setattr(pilot, "stage1_validation_acc", lambda profile, setting, backbone=None: accs[setting.name])
    assert (grid[1].epochs, grid[1].learning_rate) != (train.epochs, train.learning_rate)
    with pytest.raises(pilot.RegimeError, match=rf"picks {grid[1].name}: set train.epochs: {grid[1].epochs:g}, "
                                                rf"train.learning_rate: {grid[1].learning_rate:g}"):
        pilot.check_training_regime("smoke")
    accs[grid[1].name] = 50.0   # no setting reaches the threshold: training.yaml keeps its budget
    assert pilot.check_training_regime("smoke") is None
    matching = pilot.Setting(train.epochs, train.learning_rate, "attention", tuple(train.lora.target_modules))
    monkeypatch.setattr(pilot, "settings", lambda params: [matching])
    monkeypatch.setattr(pilot, "stage1_validation_acc", lambda profile, setting, backbone=None: 90.0)
    assert pilot.check_training_regime("smoke") == matching
