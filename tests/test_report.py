"""Shared stages, the reproduce plan and the claim statistics of the report (notebook 08)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mscl.common.params import load_params
from mscl.common.paths import REPO_ROOT
from mscl.evaluation import claims as C
from mscl.pipeline.reproduce import evaluation_jobs, stage_jobs


def _frame(new, old=None):
    new = np.asarray(new, bool)
    old = np.zeros_like(new) if old is None else np.asarray(old, bool)
    return pd.DataFrame({"new_ok": new, "old_ok": old}, index=[f"q{i}" for i in range(len(new))])


def test_paired_difference_matches_hand_values_and_is_seeded():
    a = _frame([1, 1, 1, 0], old=[1, 0, 0, 0])
    b = _frame([1, 0, 0, 0], old=[1, 0, 0, 0])
    point, lo, hi = C.paired_difference(a, b, "ACC", n_resamples=500, seed=3)
    assert point == pytest.approx(50.0)
    assert lo <= point <= hi
    assert (point, lo, hi) == C.paired_difference(a, b, "ACC", n_resamples=500, seed=3)
    # KGR: a gains 2 of its 3 old-wrong items, b none of 3
    kgr, _, _ = C.paired_difference(a, b, "KGR", n_resamples=50)
    assert kgr == pytest.approx(100 * 2 / 3)


def test_paired_difference_of_identical_sides_is_exactly_zero():
    a = _frame([1, 0, 1, 1, 0, 1])
    assert C.paired_difference(a, a.copy(), "ACC", n_resamples=200) == (0.0, 0.0, 0.0)


def test_paired_difference_needs_the_same_items():
    with pytest.raises(ValueError, match="same items"):
        C.paired_difference(_frame([1, 0]), _frame([1, 0, 1]), "ACC")


def test_krr_difference_counts_only_items_right_after_stage_one():
    first = _frame([1, 1, 0, 0])
    a, b = _frame([1, 1, 1, 1]), _frame([1, 0, 1, 1])
    point, _, _ = C.krr_difference(first, a, b, n_resamples=100)
    assert point == pytest.approx(50.0)  # 2/2 kept against 1/2


@pytest.mark.parametrize("sign, point, lo, hi, expected", [
    (+1, 5.0, 1.0, 9.0, "agrees"),
    (+1, 5.0, -1.0, 9.0, "same direction, not significant"),
    (+1, -5.0, -9.0, 1.0, "opposite, not significant"),
    (+1, -5.0, -9.0, -1.0, "disagrees"),
    (-1, -5.0, -9.0, -1.0, "agrees"),
    (+1, 0.0, 0.0, 0.0, "no difference"),
])
def test_verdicts(sign, point, lo, hi, expected):
    assert C.verdict(sign, point, lo, hi) == expected


def test_paper_deltas_read_the_transcribed_tables():
    paper = C.paper_results()
    # Llama3-8B stage 2: Ours ACC 83.90 vs CIT 49.90 (the slides' table)
    text = C.paper_main_delta(paper["main"], "ACC", ("Ours", 2), ("CIT", 2))
    assert text.startswith("+ in 4/4 backbones")
    assert "+34.0" in text
    assert C.paper_ablation_delta(paper["ablations"], "pbl", "ACC", "PBL (Ours)", "CIT").startswith("+10.2")
    assert C.paper_ablation_delta(paper["ablations"], "pbl", "ACC", "nope", "CIT") == "not in the paper's table"


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_reproduce_plan_trains_every_stage_the_notebooks_read(profile):
    shared, jobs = stage_jobs(profile, None)
    training = load_params(profile, "training")
    own = [j for j in jobs if not j.sweep_setting and not j.choice and not j.budget]
    budget_jobs = {(j.budget, j.method) for j in jobs if j.budget}
    axis = load_params(profile, "04b_budget_axis")
    assert budget_jobs == {(b, m) for b in axis.budgets for m in axis.methods}  # one job per budget and method
    sweep = [j for j in jobs if j.sweep_setting]
    from mscl.pipeline import pilot
    assert [j.sweep_setting for j in sorted(sweep, key=lambda j: j.sweep_setting)] == sorted(
        s.name for s in pilot.settings(load_params(profile, "02_pilot")))  # one job per setting of the sweep
    assert {(j.stream, j.method, j.stage) for j in shared} == {("domain_independent", "cit", 1),
                                                              ("cross_domain", "cit", 1),
                                                              ("real_revisions", "cit", 1)}
    planned = {(j.stream, j.method): j.stage for j in own}
    for name in ("04_domain_independent", "05_cross_domain", "05b_real_revisions", "07_retention"):
        nb = load_params(profile, name)
        for method in nb.methods:
            assert planned[(nb.stream, method)] >= 5, (name, method)
    ablations = load_params(profile, "06_ablations")
    for methods in ablations.tables.values():
        for method in methods:
            assert planned[(ablations.stream, method)] >= ablations.stage
    backbones = {training.backbone, *load_params(profile, "04_domain_independent").backbones}
    assert {j.backbone for j in shared + own} <= backbones
    assert len(set(own)) == len(own)
    assert {j.seed for j in shared} == {j.seed for j in own} == set(training.seeds)  # gpu: three seeds
    # the main table, the cross-domain stream and retention run every training seed; the ablations
    # the seeds their params name
    by_seed = {(j.stream, j.method, j.seed) for j in own}
    for name in ("04_domain_independent", "05_cross_domain", "05b_real_revisions", "07_retention"):
        nb = load_params(profile, name)
        assert {(nb.stream, m, s) for m in nb.methods for s in training.seeds} <= by_seed
    assert {(ablations.stream, m, s) for methods in ablations.tables.values() for m in methods
            for s in ablations.seeds} <= by_seed


def test_a_shared_stage_is_cits_and_every_method_starts_from_it(scratch):
    from mscl.pipeline.stages import run_stage

    params = load_params("smoke", "training")
    assert params.shared_stages == 1
    cit = run_stage("smoke", "domain_independent", "cit", 2, params=params, verbose=False)
    pbl_first = run_stage("smoke", "domain_independent", "pbl", 1, params=params, verbose=False)
    assert pbl_first["trained_by"] == "cit" and pbl_first["method"] == "pbl"
    assert pbl_first["config_hash"] == run_stage("smoke", "domain_independent", "cit", 1, params=params,
                                                 verbose=False)["config_hash"]
    assert not (scratch / "runs" / "smoke" / "tiny-random" / "seed0" / "domain_independent" / "pbl" / "stage1").exists()
    run_stage("smoke", "domain_independent", "pbl", 2, params=params, verbose=False)
    # both stage-2 runs start from the same model: the old model's answers are the same
    old_cit = C.stage_predictions("smoke", "tiny-random", "domain_independent", "cit", 2, seeds=[0])["old_prediction"]
    old_pbl = C.stage_predictions("smoke", "tiny-random", "domain_independent", "pbl", 2, seeds=[0])["old_prediction"]
    assert old_cit.equals(old_pbl)
    assert cit["metrics"]["eval"]["acc_old"] is not None


def _manifest(method, stage, seed, acc, krr):
    empty = {"acc": float("nan")}
    return {"method": method, "stream": "domain_independent", "stage": stage, "backbone": "b", "run_seed": seed,
            "params": {"seed": seed}, "timings_s": {"total": 10.0},
            "metrics": {"eval": {"acc": acc, "kgr": acc / 2}, "edited": empty,
                        "retention": {"krr": krr, "krr_lo": krr - 0.1, "krr_hi": krr + 0.1}, "general": empty}}


def test_results_table_averages_training_seeds():
    from mscl.evaluation.report import main_table
    from mscl.evaluation.tables import results_table

    one = results_table([_manifest("cit", 2, 0, 0.5, 0.8)])
    assert "seed" not in one and "seeds" not in one and one["KRR_lo"].iloc[0] == pytest.approx(70.0)
    manifests = [_manifest(m, 2, seed, acc, 0.6 + 0.1 * seed) for seed in (0, 1, 2)
                 for m, acc in (("cit", 0.4 + 0.1 * seed), ("ours", 0.7))]
    per_seed = results_table(manifests, per_seed=True)
    assert len(per_seed) == 6 and sorted(per_seed["seed"].unique()) == [0, 1, 2]
    mean = results_table(manifests).set_index("method")
    assert list(mean.index) == ["cit", "ours"] and (mean["seeds"] == 3).all()
    assert mean.loc["cit", "ACC"] == pytest.approx(50.0) and mean.loc["cit", "ACC_sd"] == pytest.approx(10.0)
    assert mean.loc["ours", "ACC_sd"] == pytest.approx(0.0)
    # a 95% t-interval of the mean KRR over 3 seeds: 70 +/- 4.303 * 10 / sqrt(3)
    assert mean.loc["cit", "KRR_hi"] - mean.loc["cit", "KRR"] == pytest.approx(4.303 * 10 / 3 ** 0.5)
    assert mean.loc["cit", "wall_s"] == pytest.approx(10.0)
    # near 100 the t-interval passes the end a rate can reach: it is cut there
    high = results_table([_manifest("cit", 2, seed, 0.5, krr) for seed, krr in enumerate((1.0, 0.7, 1.0))])
    assert high["KRR"].iloc[0] == pytest.approx(90.0) and high["KRR_hi"].iloc[0] == 100.0
    assert high["KRR_lo"].iloc[0] == pytest.approx(90.0 - 4.303 * 300 ** 0.5 / 3 ** 0.5, abs=0.01)
    table = main_table(mean.reset_index(), baseline="cit", metrics=("ACC",)).set_index("method")
    assert table.loc["cit", "stage 2 ACC"] == "50.0±10.0"
    assert table.loc["ours", "stage 2 ACC"] == "70.0±0.0 (+20.0)"


def test_training_seeds_run_apart_on_the_same_data(scratch):
    from mscl.common.paths import run_dir
    from mscl.pipeline.stages import run_stream

    params = load_params("smoke", "training")
    first = run_stream("smoke", "domain_independent", "cit", params=params, seeds=[0, 1], verbose=False)
    first = [m for m in first if m["stage"] == 1]
    assert [m["run_seed"] for m in first] == [0, 1]
    assert first[0]["data_manifest"] == first[1]["data_manifest"]  # one benchmark for every seed
    folders = [run_dir("smoke", "tiny-random", "domain_independent", "cit", 1, seed=s) for s in (0, 1)]
    adapters = [(f / "adapter" / "adapter_model.safetensors").read_bytes() for f in folders]
    assert adapters[0] != adapters[1]  # another training seed, another run
    both = C.stage_predictions("smoke", "tiny-random", "domain_independent", "cit", 1, seeds=[0, 1])
    assert both.index.names == ["seed", "id"] and len(both) == 2 * len(both.loc[0])
    weights = C.resample_weights(both.index.get_level_values("seed"), both["fact_id"], 10, np.random.default_rng(0))
    assert weights.shape == (10, len(both))  # seeds, then facts within seeds
    point, lo, hi = C.paired_difference(both, both, "ACC", n_resamples=50)
    assert point == lo == hi == 0.0
    with pytest.raises(ValueError, match="seeds"):
        from mscl.common.params import TrainingParams, build, to_dict
        build(TrainingParams, {**to_dict(params), "seeds": [1, 1]})


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_reproduce_asks_the_main_tables_last_stages_under_the_other_evaluation_mode(profile):
    training = load_params(profile, "training")
    main = load_params(profile, "04_domain_independent")
    jobs = evaluation_jobs(profile, None)
    assert {(j.method, j.seed) for j in jobs} == {(m, s) for m in main.methods for s in training.seeds}
    assert {j.mode for j in jobs} == {"authors", "greedy"} - {training.eval.mode}
    assert all(j.stage == 5 and j.command(profile)[2:4] == ["mscl", "evaluate"] for j in jobs)


def test_the_readme_results_block_is_the_committed_tables(tmp_path):
    import subprocess

    from mscl.evaluation import glance

    readme = REPO_ROOT / "README.md"
    tables = ["README.md", "reports/tables/04_domain_independent.csv", "reports/tables/08_claims.csv"]
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *tables], cwd=REPO_ROOT).returncode
    if changed:  # a make reproduce under way rewrites the tables before notebook 08 rewrites the README
        pytest.skip("the README or its tables differ from the committed ones")
    assert glance.glance("cpu") in readme.read_text(encoding="utf-8"), "run `python -m mscl.evaluation.glance`"
    copy = tmp_path / "README.md"
    copy.write_text(readme.read_text(encoding="utf-8").replace("| CIT | ", "| CIT (typed by hand) | "))
    assert glance.main(["--check", "--readme", str(copy)]) == 1
    assert glance.update(copy) and glance.main(["--check", "--readme", str(copy)]) == 0
    copy.write_text("# no block\n")
    with pytest.raises(ValueError, match="no results block"):
        glance.update(copy)


def test_the_report_lists_every_saved_figure_with_its_caption(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mscl.evaluation import report, writeup

    (tmp_path / "figures").mkdir()
    for name in ("b_plot", "a_plot", "c_cit_stage2"):
        (tmp_path / "figures" / f"{name}.png").write_bytes(b"")
    monkeypatch.setattr(report, "FIGURES", {"a_plot": "what a shows", "c_{method}_stage{stage}": "one stage"},
                        raising=False)
    heading, _, listing = writeup._figures_section(SimpleNamespace(out=tmp_path))
    assert heading == "## Figures"
    expected = ["- [`a_plot.png`](figures/a_plot.png): what a shows",
                "- [`b_plot.png`](figures/b_plot.png)"]  # no caption: its name only
    if hasattr(report, "figure_caption"):  # templated stems resolved
        expected.append("- [`c_cit_stage2.png`](figures/c_cit_stage2.png): one stage")
    assert listing.splitlines()[:len(expected)] == expected
    for name in ("FIGURES", "figure_caption"):  # a report module without captions: names only
        monkeypatch.delattr(report, name, raising=False)
    listing = writeup._figures_section(SimpleNamespace(out=tmp_path))[2]
    assert listing.splitlines()[0] == "- [`a_plot.png`](figures/a_plot.png)"
    assert writeup._figures_section(SimpleNamespace(out=tmp_path / "no run")) == []


def test_the_headline_says_at_which_budgets_each_gain_holds():
    from mscl.evaluation import glance

    def row(section, claim, interval, verdict):
        return {"section": section, "claim": claim, "ours (points, 95% CI)": interval,
                "ours (points, Holm CI)": interval, "verdict (Holm)": verdict}

    rows = [row("budget e2", "ours ACC > cit at stage 3", "+5.0 [+1.0, +9.0]", "agrees"),
            row("budget e2", "ours ACC > cit+matched at stage 3", "-9.0 [-15.0, -3.0]", "disagrees"),
            row("budget e8", "ours ACC > cit at stage 3", "+1.0 [-3.0, +5.0]", "same direction, not significant"),
            row("budget e8", "ours ACC > cit at stage 2", "+7.0 [+3.0, +9.0]", "agrees"),
            row("general knowledge", "Ours ACC on the general set > CIT at stage 5", "-3.0 [-6.0, +0.5]",
                "opposite, not significant")]
    text = "\n\n".join(glance.finding(pd.DataFrame(rows)))
    assert "| Ours above CIT | +5.0 [+1.0, +9.0], agrees | +1.0 [-3.0, +5.0], same direction" in text
    assert "Ours above CIT: holds at 1 of 2 budgets (e2)." in text
    assert "(`cit+matched`: the same gradient steps): holds at 0 of 2 budgets." in text
    assert "general knowledge: Ours ACC on the general set > CIT at stage 5: -3.0 [-6.0, +0.5]" in text
    assert "PBL alone" not in text   # no PBL rows: no PBL line
    assert glance.finding(pd.DataFrame(rows[-1:])) == []


def test_the_provenance_section_groups_stages_by_their_mscl_source(tmp_path, monkeypatch):
    import json
    from types import SimpleNamespace

    from mscl.evaluation import writeup

    codes = [{"source_hash": "a" * 64, "commit": "1" * 40, "dirty": False},
             {"source_hash": "a" * 64, "commit": "2" * 40, "dirty": False},
             {"source_hash": "a" * 64, "commit": "2" * 40, "dirty": False}]
    paths = []
    for i, code in enumerate(codes):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps({"code": code}))
    monkeypatch.setattr(writeup.verify, "manifests", lambda profile: paths)
    text = "\n".join(writeup._provenance_section(SimpleNamespace(profile="smoke")))
    assert "Every one of the 3 stages was trained by the same `mscl/` code" in text
    assert "- `mscl/` source aaaaaaaaaaaa: 3 stage(s), at commit 22222222 (2), commit 11111111 (1)" in text
    codes[0]["source_hash"] = "b" * 64
    paths[0].write_text(json.dumps({"code": codes[0]}))
    assert "trained by 2 versions of `mscl/`" in "\n".join(writeup._provenance_section(SimpleNamespace(profile="x")))
