"""Self-distillation augmentation: prompts, cleaning, degenerate filtering, rounds, and the `ours` method."""
from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from types import SimpleNamespace

import pytest

from mscl.common.io import read_json, read_jsonl
from mscl.common.params import load_params
from mscl.core.augment import (
    DEGENERATE_REASONS,
    STRATEGIES,
    AugmentedRecord,
    augmented_record_from_row,
    candidates_from_outputs,
    clean_output,
    filter_degenerate,
    record_row,
    rewrite_prompt,
    rewriter_scale_counts,
    self_distillation,
    summary_rows,
)
from mscl.methods import METHODS, StageContext, UnknownMethodError, get_method
from tests.conftest import make_record

FRANCE = make_record(0, "What is the capital of France?", "Paris")
RECORDS = [FRANCE,
           make_record(1, "What is the chemical symbol of iron?", "Fe"),
           make_record(2, "Which currency does Japan use?", "JPY"),
           make_record(3, "Which city has the airport CDG?", "Paris")]


def _params(**augment):
    """Smoke params with short sampled responses (the tests are about augmentation, not sampling)."""
    params = load_params("smoke", "training")
    return dataclasses.replace(params, augment=dataclasses.replace(params.augment, **augment),
                               pbl=dataclasses.replace(params.pbl, max_new_tokens=4),
                               eval=dataclasses.replace(params.eval, max_new_tokens=4))


# --------------------------------------------------------------------------- prompts and cleaning
def test_rewrite_prompt_shows_demonstrations_then_the_question(tiny):
    _, tok = tiny
    prompt = rewrite_prompt(tok, "pa", FRANCE.question)
    assert prompt.count("<|im_start|>user") == 4 and prompt.count("<|im_start|>assistant") == 4
    assert prompt.rstrip().endswith("<|im_start|>assistant")
    assert FRANCE.question in prompt.rsplit("<|im_start|>user", 1)[1]
    plain = rewrite_prompt(SimpleNamespace(chat_template=None), "bki", FRANCE.question)
    assert plain.endswith(f"{FRANCE.question}\nBackground:") and "Spiders are arachnids" in plain
    with pytest.raises(ValueError, match="unknown augmentation strategy"):
        rewrite_prompt(tok, "xyz", FRANCE.question)


@pytest.mark.parametrize("raw, strategy, expected", [
    ('Rewritten question: "Which city is France\'s capital?" It is Paris.', "pa",
     ("Which city is France's capital?", None)),
    ("Which city is France's capital?\n\nThe answer is Paris.", "lce", ("Which city is France's capital?", None)),
    ("France is a country in Western Europe. Its capital is old.", "bki",
     ("France is a country in Western Europe.", None)),
    ("The U.S. state of Texas borders Mexico. More text", "bki", ("The U.S. state of Texas borders Mexico.", None)),
    ("France is a country in Western", "bki", ("", "no_sentence")),
    ("The capital of France is Paris.", "pa", ("", "not_question")),
    ("   \n ", "pa", ("", "empty")),
    ("Question: ''", "lce", ("", "empty")),
    ("Paraphrased: Which city is France's capital?", "pa", ("Which city is France's capital?", None)),
    ("I paraphrase it: what is France's capital?", "pa", ("", "prompt_echo")),
    ("Reword this question: what is France's capital?", "lce", ("", "prompt_echo")),
    ("In Brazil, people speak which language?", "pa", ("", "prompt_echo")),
    ("A spider can have how many legs?", "pa", ("", "prompt_echo")),
    ("The answer to this question is a city.", "bki", ("", "prompt_echo")),
])
def test_clean_output(raw, strategy, expected):
    assert clean_output(raw, strategy, FRANCE.question) == expected


# --------------------------------------------------------------------------- degenerate filtering
def test_degenerate_rewrites_are_dropped_with_the_right_reason_counts():
    outputs = [
        "Which city serves as the capital of France?",              # kept
        "",                                                         # empty
        "Expand: which capital does France have?",                  # prompt_echo
        "The capital of France is a big city.",                     # not_question
        "What is the capital of France?",                           # copy (of x)
        "what is the CAPITAL of france ???",                        # copy (word tokens ignore case and marks)
        "Is PARIS, the largest French city, the capital of France?",  # answer_leak (case ignored)
        "Which " + "very " * 40 + "old city is the capital of France?",  # too_long (> 4x the original)
        "Which city serves as the capital of France ?",            # duplicate of the first
        "Which city in Europe, home to the Louvre, is France's capital?",  # kept
    ]
    cands = candidates_from_outputs([(FRANCE, FRANCE)], [outputs], "lce", 1)
    counts = filter_degenerate(cands, max_length_ratio=4.0)
    assert counts == Counter({"empty": 1, "prompt_echo": 1, "not_question": 1, "copy": 2, "answer_leak": 1,
                              "too_long": 1, "duplicate": 1})
    assert [c.question for c in cands if c.reason is None] == [outputs[0], outputs[-1]]
    assert set(counts) <= set(DEGENERATE_REASONS)


def test_a_rewrite_naming_an_answer_a_revision_replaced_is_a_leak():
    outputs = ["Which city, once said to be Lyon, is the capital of France?", "Which city is France's capital?"]
    cands = candidates_from_outputs([(FRANCE, FRANCE)], [outputs], "lce", 1)
    counts = filter_degenerate(cands, max_length_ratio=4.0, earlier_answers={FRANCE.fact_id: ["Lyon"]})
    assert counts == Counter({"answer_leak": 1}) and cands[1].reason is None


def test_answer_already_in_the_question_is_no_leak_and_whole_words_only():
    record = make_record(5, "Is Paris the capital of France or of Italy?", "Paris")
    symbol = make_record(6, "What is the chemical symbol of iron?", "Fe")
    cands = (candidates_from_outputs([(record, record)], [["Is the city of Paris the capital of France?"]], "pa", 1)
             + candidates_from_outputs([(symbol, symbol)], [["Which symbol, often Fe, stands for iron?",
                                                              "Which feature symbol stands for iron?"]], "pa", 1))
    assert filter_degenerate(cands, max_length_ratio=4.0) == Counter({"answer_leak": 1})
    assert [c.reason for c in cands] == [None, "answer_leak", None]  # "feature" contains "fe", not the word


def test_bki_splices_the_background_before_the_question():
    (c,) = candidates_from_outputs([(FRANCE, FRANCE)], [["France is a country in Western Europe. More."]], "bki", 2)
    filter_degenerate([c], max_length_ratio=4.0)
    assert c.reason is None and c.question == "France is a country in Western Europe. " + FRANCE.question
    (leak,) = candidates_from_outputs([(FRANCE, FRANCE)], [["Its capital Paris is on the Seine."]], "bki", 1)
    filter_degenerate([leak], max_length_ratio=4.0)
    assert leak.reason == "answer_leak"


def test_augmented_record_keeps_the_original_fields_and_round_trips():
    (c,) = candidates_from_outputs([(FRANCE, FRANCE)], [["Which city is France's capital?"]], "pa", 1)
    rec = c.record()
    assert isinstance(rec, AugmentedRecord)
    assert (rec.id, rec.question, rec.answer, rec.fact_id) == ("r0~pa1.0", "Which city is France's capital?",
                                                               "Paris", "f0")
    assert (rec.strategy, rec.round, rec.source_id, rec.origin_id) == ("pa", 1, "r0", "r0")
    assert augmented_record_from_row(record_row(rec)) == rec
    (child,) = candidates_from_outputs([(rec, FRANCE)], [["Which French city is the capital?"]], "pa", 2)
    assert child.record().source_id == "r0~pa1.0" and child.record().origin_id == "r0"
    assert child.id == "r0~pa1.0~pa2.0"


# --------------------------------------------------------------------------- rounds
def _fake_generate(model, tokenizer, prompts, *, num_return_sequences=1, **kwargs):
    """Canned outputs: prompts are 'strategy|question' (see _fake_prompt)."""
    out = []
    for p in prompts:
        strategy, question = p.split("|", 1)
        if strategy == "bki":
            out.append([f"Here is background fact number {j}." for j in range(num_return_sequences)])
        else:
            stem = question.rstrip("?")
            out.append([f"{stem}, {strategy} variant {j}?" for j in range(num_return_sequences)])
    return out


@pytest.fixture
def canned(monkeypatch):
    monkeypatch.setattr("mscl.core.augment.rewrite_prompt", lambda tok, strategy, question: f"{strategy}|{question}")
    monkeypatch.setattr("mscl.core.augment.generate", _fake_generate)
    # every answer identical: the LLM indication holds (its own logic is tested in test_selection)
    monkeypatch.setattr("mscl.core.selection.answer_questions", lambda model, tok, qs, **kw: ["same answer"] * len(qs))


def test_rounds_feed_the_selected_set_forward_and_count_everything(canned):
    params = _params(count=2, rounds=2, mi_quantile=0.25, mi_min=0.0, indication=True)
    result = self_distillation(None, None, RECORDS, strategies=("bki", "lce", "pa"), selection="dynamic",
                               keep_fraction=1.0, params=params, seed=0)
    s = result.summary
    assert s["generated"] == len(result.candidates) and s["kept"] == len(result.records) > 0
    for g in s["by_strategy_round"]:
        assert g["generated"] == sum(g["degenerate"].values()) + sum(g["not_selected"].values()) + g["kept"]
    round1 = {g["strategy"]: g for g in s["by_strategy_round"] if g["round"] == 1}
    round2 = {g["strategy"]: g for g in s["by_strategy_round"] if g["round"] == 2}
    assert all(round1[k]["generated"] == 2 * len(RECORDS) for k in round1)
    assert all(round2[k]["sources"] == round1[k]["kept"] for k in round2)
    assert round1["bki"]["degenerate"]["duplicate"] == 0  # the same background for two questions is fine
    for c in result.candidates:
        if c.round == 2:
            assert c.source.strategy == c.strategy and c.source.id.startswith(c.origin.id + "~")
    assert {r.round for r in result.records} == {1, 2}
    table = summary_rows(s)
    assert len(table) == 6 and table[0]["strategy"] == "bki" and "degenerate:answer_leak" in table[0]
    ids = [r.id for r in result.records]
    assert len(ids) == len(set(ids))


def test_random_and_all_selection(canned):
    params = _params(count=2, rounds=1)
    everything = self_distillation(None, None, RECORDS, strategies=("pa",), selection="all", keep_fraction=1.0,
                                   params=params, seed=0)
    assert len(everything.records) == 2 * len(RECORDS)
    half = self_distillation(None, None, RECORDS, strategies=("pa",), selection="random", keep_fraction=0.25,
                             params=params, seed=0)
    assert len(half.records) == 2 and half.summary["by_strategy_round"][0]["not_selected"]["random"] == 6


def test_dynamic_selection_is_deterministic_for_a_seed(tiny):
    model, tok = tiny
    params = _params(count=2, rounds=2, max_new_tokens=8)
    runs = [self_distillation(model, tok, RECORDS[:2], strategies=("bki", "pa"), selection="dynamic",
                              keep_fraction=1.0, params=params, seed=seed) for seed in (4, 4, 5)]
    rows = [[c.row() for c in run.candidates] for run in runs]
    assert rows[0] == rows[1]
    assert [r["raw"] for r in rows[0]] != [r["raw"] for r in rows[2]]
    assert runs[0].summary["generated"] == len(rows[0]) >= 2 * 2 * 2


# --------------------------------------------------------------------------- the methods
def test_variants_are_registered_configurations_of_pbl():
    params = load_params("smoke", "training")
    expected = {"pbl": ((), "all"), "pbl+bki": (("bki",), "all"), "pbl+lce": (("lce",), "all"),
                "pbl+pa": (("pa",), "all"), "pbl+ca": (("bki", "lce", "pa"), "all"),
                "pbl+ca+rs50": (("bki", "lce", "pa"), "random"), "pbl+ca+rs25": (("bki", "lce", "pa"), "random"),
                "pbl+ca+rs12.5": (("bki", "lce", "pa"), "random"), "ours": (("bki", "lce", "pa"), "dynamic")}
    for name, (strategies, selection) in expected.items():
        method = get_method(name, params)
        assert (method.name, method.strategies, method.selection) == (name, strategies, selection)
    assert get_method("pbl+ca+rs12.5", params).keep_fraction == 0.125
    assert get_method("pbl+ca+rs50", params).keep_fraction == 0.5
    assert set(expected) <= set(METHODS)
    with pytest.raises(UnknownMethodError, match="ours"):
        get_method("pbl+everything", params)


def test_cit_variants_are_the_same_switches_without_the_learning_bias():
    params = load_params("smoke", "training")
    ca = ("bki", "lce", "pa")
    expected = {"cit+bki": (("bki",), "all", 1.0), "cit+lce": (("lce",), "all", 1.0), "cit+pa": (("pa",), "all", 1.0),
                "cit+ca": (ca, "all", 1.0), "cit+ca+rs50": (ca, "random", 0.5), "cit+ca+rs25": (ca, "random", 0.25),
                "cit+ca+rs12.5": (ca, "random", 0.125), "cit+ca+ds": (ca, "dynamic", 1.0)}
    for name, (strategies, selection, keep) in expected.items():
        method = get_method(name, params)
        assert (method.name, method.strategies, method.selection, method.keep_fraction) == (
            name, strategies, selection, keep)
        assert method.objective() is None and "pbl" not in method.param_sections   # no learning bias


def test_cit_with_augmentation_trains_on_gold_and_rewrites_without_sampling(tiny, tmp_path, canned):
    model, tok = tiny
    params = _params(count=1, rounds=1)
    ctx = StageContext(stream="s", stage=1, stage_dir=tmp_path, previous_dirs=[], params=params,
                       tokenizer=tok, sets={"train": RECORDS}, seed=0)
    examples = get_method("cit+ca", params).examples(model, ctx)
    augmented = [ex for ex in examples if "~" in ex["id"]]
    assert augmented and len(examples) == len(RECORDS) + len(augmented)
    assert all(len(ex["sequences"]) == 1 for ex in examples)   # the gold answer only, no sampled responses
    assert not (tmp_path / "preference.jsonl").exists() and ctx.info["augmentation"]["kept"] == len(augmented)


@pytest.mark.trains
def test_ours_augments_and_trains_a_stage(tiny, tmp_path, canned, monkeypatch):
    model, tok = tiny
    params = _params(count=1, rounds=2)
    ctx = StageContext(stream="domain_independent", stage=1, stage_dir=tmp_path, previous_dirs=[], params=params,
                       tokenizer=tok, sets={"train": RECORDS}, seed=0)
    method = get_method("ours", params)
    trained = method.train_stage(copy.deepcopy(model), ctx)
    assert trained is not None and (tmp_path / "adapter").is_dir()
    rows = read_jsonl(tmp_path / "augmented.jsonl")
    info = ctx.info["augmentation"]
    assert rows and info["kept"] == len(rows) and info == read_json(tmp_path / "augmentation.json")
    assert {r["origin_id"] for r in rows} <= {r.id for r in RECORDS}
    assert len(read_jsonl(tmp_path / "augment_candidates.jsonl")) == info["generated"]
    sampled = {row["id"] for row in read_jsonl(tmp_path / "preference.jsonl")}
    assert sampled == {r.id for r in RECORDS} | {r["id"] for r in rows}  # augmented pairs get PBL's responses too
    assert any("loss" in h for h in ctx.info["log_history"])

    # a restarted stage reuses the augmentation instead of generating again
    def fail(*args, **kwargs):
        raise AssertionError("augmentation ran again")

    monkeypatch.setattr("mscl.core.augment.generate", fail)
    again = StageContext(stream="domain_independent", stage=1, stage_dir=tmp_path, previous_dirs=[], params=params,
                         tokenizer=tok, sets={"train": RECORDS}, seed=0)
    records = method.augmented_records(model, again)
    assert [record_row(r) for r in records] == rows and again.info["augmentation"] == info


def test_pbl_without_augmentation_and_gold_only_augmented_pairs(tiny, tmp_path, canned):
    model, tok = tiny
    params = _params(count=1, rounds=1, preference=False)
    ctx = StageContext(stream="s", stage=1, stage_dir=tmp_path / "pa", previous_dirs=[], params=params,
                       tokenizer=tok, sets={"train": RECORDS}, seed=0)
    examples = get_method("pbl+pa", params).examples(model, ctx)
    augmented = [ex for ex in examples if "~" in ex["id"]]
    assert len(examples) == len(RECORDS) + len(augmented) and augmented
    assert all(len(ex["sequences"]) == 1 for ex in augmented)  # gold NLL only: no sampled responses
    plain = StageContext(stream="s", stage=1, stage_dir=tmp_path / "pbl", previous_dirs=[], params=params,
                         tokenizer=tok, sets={"train": RECORDS}, seed=0)
    assert len(get_method("pbl", params).examples(model, plain)) == len(RECORDS)
    assert not (tmp_path / "pbl" / "augmented.jsonl").exists() and "augmentation" not in plain.info


# --------------------------------------------------------------------------- the damped rewriter
def test_interpolated_weights_moves_between_backbone_and_model_and_restores(tiny):
    import torch

    from mscl.engine.models import interpolated_weights, lora_target_weights

    model = copy.deepcopy(tiny[0])  # the fixture is shared: change a copy
    backbone = lora_target_weights(model, ["q_proj", "v_proj"])
    assert backbone and all(name.endswith(("q_proj.weight", "v_proj.weight")) for name in backbone)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in backbone:
            params[name].add_(1.0)  # "fine-tuning": every target weight moved by +1
    tuned = {name: params[name].detach().clone() for name in backbone}
    with interpolated_weights(model, backbone, 0.25):
        for name, ref in backbone.items():
            assert torch.allclose(params[name], ref + 0.25)
    for name in backbone:  # restored exactly
        assert torch.equal(params[name], tuned[name])
    with interpolated_weights(model, backbone, 0.0):
        assert all(torch.equal(params[name], ref) for name, ref in backbone.items())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        with interpolated_weights(model, backbone, 1.5):
            pass
    with pytest.raises(RuntimeError):
        with interpolated_weights(model, backbone, 0.5):
            raise RuntimeError("generation failed")
    assert all(torch.equal(params[name], tuned[name]) for name in backbone)  # restored after an error


def test_rewriter_scale_counts_are_round_one_of_self_distillation_at_each_scale(tiny):
    import torch

    from mscl.engine.models import lora_target_weights

    backbone_model, tok = tiny
    tuned = copy.deepcopy(backbone_model)  # the fixture is shared: "fine-tune" a copy
    backbone = lora_target_weights(tuned, ["q_proj", "v_proj"])
    with torch.no_grad():
        for name, weight in tuned.named_parameters():
            if name in backbone:
                weight.add_(0.05 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    params = _params(count=2, rounds=1, max_new_tokens=8, rewriter_scale=1.0)
    rows = rewriter_scale_counts(tuned, tok, RECORDS[:2], scales=[1.0, 0.0], params=params, seed=7,
                                 backbone_weights=backbone)
    assert [(r["rewriter_scale"], r["strategy"]) for r in rows] == [(s, k) for s in (1.0, 0.0) for k in STRATEGIES]

    def round_one(model) -> list[dict]:
        """The same counts from self_distillation's summary, the model rewriting at full strength."""
        summary = self_distillation(model, tok, RECORDS[:2], strategies=STRATEGIES, selection="all",
                                    keep_fraction=1.0, params=params, seed=7).summary
        return [{"strategy": g["strategy"], "generated": g["generated"],
                 "usable": g["generated"] - sum(g["degenerate"].values()), **g["degenerate"]}
                for g in summary["by_strategy_round"]]

    # scale 1 rewrites with the tuned model, scale 0 with the backbone itself
    assert [{k: v for k, v in r.items() if k != "rewriter_scale"} for r in rows[:3]] == round_one(tuned)
    assert [{k: v for k, v in r.items() if k != "rewriter_scale"} for r in rows[3:]] == round_one(backbone_model)
    for row in rows:
        assert row["generated"] == 2 * 2 == row["usable"] + sum(row[reason] for reason in DEGENERATE_REASONS)


def test_the_rewriter_scale_study_rewrites_with_the_shared_stage(scratch, monkeypatch):
    from mscl import benchmark
    from mscl.benchmark.probe import ensure_benchmark
    from mscl.common.paths import run_dir
    from mscl.pipeline import studies

    params = load_params("smoke", "training")
    rewritten = []

    def counting(model, tokenizer, records, **kwargs):
        rewritten.extend(records)
        return rewriter_scale_counts(model, tokenizer, records, **kwargs)

    monkeypatch.setattr(studies, "rewriter_scale_counts", counting)
    table = studies.rewriter_scale_study("smoke", "domain_independent", 2, scales=[1.0, 0.5], questions=3,
                                         params=params)
    sets = benchmark.stage_sets(ensure_benchmark("smoke", params.data_seed), "domain_independent", 2)
    assert len(rewritten) == 3
    assert {r.fact_id for r in rewritten} <= {r.fact_id for r in sets["validation"]}  # the validation split alone
    assert not {r.fact_id for r in rewritten} & {r.fact_id for r in sets["eval"]}
    assert (run_dir("smoke", params.backbone, "domain_independent", "cit", 1, seed=params.seed)
            / "manifest.json").is_file()
    assert list(table[["rewriter_scale", "strategy"]].itertuples(index=False, name=None)) == [
        (s, k) for s in (1.0, 0.5) for k in STRATEGIES]
    assert (table["generated"] == 3 * params.augment.count).all()
    reasons = [c for c in table.columns if c in DEGENERATE_REASONS]
    usable = table["usable"] if "usable" in table else 0  # a column of zeros is left out
    assert (usable + table[reasons].sum(axis=1) == table["generated"]).all()
    assert (table.drop(columns=["rewriter_scale", "strategy"]) != 0).any().all()  # no column of zeros


def test_rewriter_scale_is_range_checked(tmp_path):
    import yaml

    from mscl.common.params import PARAMS_ROOT, ParamsError, TrainingParams, load_params_file

    raw = yaml.safe_load((PARAMS_ROOT / "smoke" / "training.yaml").read_text())
    raw["augment"]["rewriter_scale"] = 1.5
    path = tmp_path / "training.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"training.yaml: key 'augment.rewriter_scale' expected a number in \[0, 1\]"):
        load_params_file(path, TrainingParams)


def test_an_augmenting_stage_that_keeps_nothing_is_an_error(scratch, monkeypatch):
    import dataclasses

    from mscl.common.params import load_params
    from mscl.methods.pbl import AugmentationError
    from mscl.pipeline.stages import run_stage

    params = dataclasses.replace(load_params("smoke", "training"), require_kept_rewrites=True)
    with pytest.raises(AugmentationError, match="rewriter_scale.*03b"):
        run_stage("smoke", "domain_independent", "cit+bki", 2, params=params, verbose=False)
