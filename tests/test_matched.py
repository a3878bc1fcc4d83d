"""The compute-matched control (mscl.methods.cit.ComputeMatchedCIT) on the smoke profile."""
from __future__ import annotations

import pytest

from mscl.common.params import load_params
from mscl.pipeline.stages import run_stage


def test_cit_matched_trains_on_as_many_examples_as_ours(scratch):
    params = load_params("smoke", "training")
    with pytest.raises(FileNotFoundError, match="ours"):   # it reads ours's finished stage
        run_stage("smoke", "domain_independent", "cit+matched", 2, params=params, verbose=False)
    ours = run_stage("smoke", "domain_independent", "ours", 2, params=params, verbose=False)
    matched = run_stage("smoke", "domain_independent", "cit+matched", 2, params=params, verbose=False)
    gold = matched["method_info"]["matched"]["gold"]
    expected = max(gold, gold + ours["method_info"]["augmentation"]["kept"])
    assert matched["method_info"]["matched"]["examples"] == expected
    assert "preference_split" not in matched["method_info"]   # plain CIT: no sampled responses


def test_cit_matched_repeats_the_gold_pairs_in_order_up_to_ours_count(tiny, tmp_path):
    from mscl.common.io import write_json
    from mscl.methods import StageContext, get_method
    from tests.conftest import make_record

    _, tokenizer = tiny
    records = [make_record(i, f"What is item {i}?", f"answer {i}") for i in range(4)]
    write_json(tmp_path / "ours" / "stage2" / "manifest.json", {"method_info": {"augmentation": {"kept": 7}}})
    ctx = StageContext(stream="s", stage=2, stage_dir=tmp_path / "cit+matched" / "stage2", previous_dirs=[],
                       params=load_params("smoke", "training"), tokenizer=tokenizer, sets={"train": records}, seed=0)
    examples = get_method("cit+matched", ctx.params).examples(None, ctx)
    assert [ex["id"] for ex in examples] == [records[i % 4].id for i in range(11)]
    assert ctx.info["matched"] == {"reference": "ours", "examples": 11, "gold": 4}


def test_the_authors_evaluation_mode_samples_from_a_bare_user_turn(scratch, tiny, monkeypatch):
    from mscl.engine import generation
    from mscl.engine.models import DEFAULT_SYSTEM_PROMPT, format_prompt
    from mscl.evaluation import tables

    _, tokenizer = tiny
    assert DEFAULT_SYSTEM_PROMPT not in format_prompt(tokenizer, "What is 2 + 2?", None)
    seen = {}

    def fake_sample(model, tok, questions, **kw):
        seen.update(kw)
        return [["an answer"] for _ in questions]

    monkeypatch.setattr(generation, "sample_responses", fake_sample)
    params = load_params("smoke", "training")
    run_stage("smoke", "domain_independent", "cit", 2, params=params, verbose=False)
    table = tables.evaluation_modes("smoke", "domain_independent", ["cit"], 2, params=params)
    assert set(table["mode"]) == {"greedy", "authors"} and table["ACC"].between(0, 100).all()
    assert seen["system"] is None and {k: seen[k] for k in generation.AUTHORS_EVAL} == generation.AUTHORS_EVAL
    # the second mode's answers are cached beside the stage's own predictions
    again = tables.evaluation_modes("smoke", "domain_independent", ["cit"], 2, params=params)
    assert again.equals(table)
    from mscl.__main__ import main

    assert main(["evaluate", "--profile", "smoke", "--stream", "domain_independent", "--method", "cit", "--stage", "2",
                 "--mode", "authors"]) == 0
    with pytest.raises(ValueError, match="unknown evaluation mode"):
        tables.mode_predictions("smoke", "domain_independent", "cit", 2, "beam", params=params)


def test_eval_mode_is_checked():
    from mscl.common.params import ParamsError, TrainingParams, build, to_dict

    params = to_dict(load_params("smoke", "training"))
    with pytest.raises(ParamsError, match="mode"):
        build(TrainingParams, {**params, "eval": {**params["eval"], "mode": "beam"}})
