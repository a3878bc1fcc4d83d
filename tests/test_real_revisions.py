"""The real-revisions stream (mscl/benchmark/revisions.py): facts whose answer really changed, read on
the stage dates from pinned packages; the domain-independent stream's shape, with the world's edits."""
from __future__ import annotations

import json
import re
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

from mscl.benchmark import (
    REAL_RELATIONS,
    REAL_REVISIONS_STAGES,
    REAL_STAGE_DATES,
    STREAM_STAGES,
    build_benchmark,
    edit_chain,
    read_stream,
    real_facts,
    rederive,
    stage_sets,
    stream_stages,
)
from mscl.benchmark.sources import SOURCE_SEPARATOR
from mscl.common.params import load_params
from mscl.common.paths import REPO_ROOT

STREAM = "real_revisions"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    return build_benchmark("smoke", seed=0, out_dir=tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="module")
def cpu(tmp_path_factory) -> Path:
    """The cpu sizes; no fact stands for what the backbone knows (that only shapes the other stream)."""
    return build_benchmark("cpu", seed=0, out_dir=tmp_path_factory.mktemp("cpu"), known=set())


def _facts(records, split: str) -> set[str]:
    return {r.fact_id for r in records if r.split == split}


def test_stages_are_the_dates_in_order(smoke):
    assert stream_stages(smoke, STREAM) == STREAM_STAGES[STREAM] == list(range(1, REAL_REVISIONS_STAGES + 1))
    assert list(REAL_STAGE_DATES) == sorted(REAL_STAGE_DATES) and len(REAL_STAGE_DATES) == REAL_REVISIONS_STAGES
    manifest = json.loads((smoke / "manifest.json").read_text())
    assert list(manifest["real_revisions"]["stage_dates"].values()) == list(REAL_STAGE_DATES)
    assert "real_revisions.jsonl" in manifest["files"]


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_chains_are_the_real_answers_stage_by_stage(profile, smoke, cpu):
    records = read_stream({"smoke": smoke, "cpu": cpu}[profile], STREAM)
    heldout = _facts(records, "heldout")
    for fact_id in {r.fact_id for r in records}:
        chain = edit_chain(records, fact_id)
        assert [r.stage for r in chain] == ([1] if fact_id in heldout else list(STREAM_STAGES[STREAM]))
        assert len({r.question for r in chain}) == 1   # the same question at every stage
        assert not chain[0].edited
        for before, now in zip(chain, chain[1:]):
            if now.edited:
                assert now.answer != before.answer and now.previous_answer == before.answer
            else:
                assert now.answer == before.answer and now.previous_answer is None
        answers = {r.answer.casefold() for r in chain}
        assert all(a == b or a not in b for a in answers for b in answers)   # none inside another


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_every_record_rederives_to_its_answer_on_its_stage_date(profile, smoke, cpu):
    for r in read_stream({"smoke": smoke, "cpu": cpu}[profile], STREAM):
        assert rederive(r.source) == r.answer, r
        assert f"@{REAL_STAGE_DATES[r.stage - 1]}]" in r.source
        assert r.answer.casefold() not in r.question.casefold()


def test_sources_name_the_pinned_versions(smoke):
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {pin.split(";")[0].strip() for pin in dependencies}
    named = set()
    for r in read_stream(smoke, STREAM):
        for hop in r.source.split(SOURCE_SEPARATOR):
            named.add(re.match(r"^([\w.-]+==[^:]+):", hop).group(1))
    assert named == {"babel==2.18.0", "tzdata==2026.6"} and named <= pins
    manifest = json.loads((smoke / "manifest.json").read_text())
    assert manifest["packages"]["tzdata"] == "2026.6" and manifest["packages"]["babel"] == "2.18.0"


def test_rederive_reads_the_date_in_the_key():
    moscow = "tzdata==2026.6:zoneinfo[Europe/Moscow@{}].standard_offset"
    assert [rederive(moscow.format(day)) for day in REAL_STAGE_DATES] == [
        "UTC+03:00", "UTC+03:00", "UTC+04:00", "UTC+03:00", "UTC+03:00"]   # Russia's 2011 and 2014 changes
    slovakia = "babel==2.18.0:territory_currencies[SK@{}].tender_currency"
    assert rederive(slovakia.format("2005-01-01")) == "SKK" and rederive(slovakia.format("2012-01-01")) == "EUR"
    with pytest.raises(KeyError):   # 2000: marks and euros were both legal tender, no single answer
        rederive("babel==2.18.0:territory_currencies[DE@2000-01-01].tender_currency")
    with pytest.raises(ValueError, match="installed"):
        rederive(moscow.format("2012-01-01").replace("2026.6", "2024.1"))


def test_the_sources_hold_enough_revised_facts():
    revised = {r.name: sum(f.revised for f in real_facts(r.name)) for r in REAL_RELATIONS}
    stable = {r.name: sum(not f.revised for f in real_facts(r.name)) for r in REAL_RELATIONS}
    assert sum(revised.values()) >= 100 and all(n >= 40 for n in revised.values()), revised
    assert all(n >= 100 for n in stable.values()), stable
    sizes = load_params("cpu", "01_data_build").sizes
    wanted = sizes.real_facts + sizes.real_validation_facts + sizes.real_heldout_facts
    assert round((1 - sizes.real_stable_share) * wanted) <= sum(revised.values())


def test_cpu_stream_has_the_sizes_and_at_least_60_revised_facts(cpu):
    sizes = load_params("cpu", "01_data_build").sizes
    records = read_stream(cpu, STREAM)
    assert len(_facts(records, "eval")) == sizes.real_facts
    assert len(_facts(records, "validation")) == sizes.real_validation_facts
    assert len(_facts(records, "heldout")) == sizes.real_heldout_facts
    assert len({r.fact_id for r in records if r.edited}) >= 60
    assert len(_facts([r for r in records if r.edited], "eval")) >= 50
    assert {r.domain for r in records} == {"finance", "tourism"}
    manifest = json.loads((cpu / "manifest.json").read_text())
    assert not [s for s in manifest["shortfalls"] if s.startswith(STREAM)]


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_validation_heldout_and_evaluation_facts_are_disjoint(profile, smoke, cpu):
    folder = {"smoke": smoke, "cpu": cpu}[profile]
    records = read_stream(folder, STREAM)
    evaluation, validation, heldout = (_facts(records, split) for split in ("eval", "validation", "heldout"))
    assert evaluation and validation and heldout
    assert not evaluation & validation and not evaluation & heldout and not validation & heldout
    assert evaluation | validation | heldout == {r.fact_id for r in records}
    # held-out facts: trained at stage 1 only, never revised or retrained
    assert all(r.stage == 1 and not r.edited for r in records if r.fact_id in heldout)
    trained = defaultdict(set)
    for r in records:
        if r.split == "train":
            trained[r.stage].add(r.fact_id)
    assert trained[1] == evaluation | validation | heldout
    assert all(trained[stage] == evaluation | validation for stage in STREAM_STAGES[STREAM][1:])


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_stage_sets_evaluate_edits_at_every_stage_and_keep_a_retention_set(profile, smoke, cpu):
    folder = {"smoke": smoke, "cpu": cpu}[profile]
    records = read_stream(folder, STREAM)
    ever_edited = {r.fact_id for r in records if r.edited}
    retention = None
    for stage in stream_stages(folder, STREAM):
        sets = stage_sets(folder, STREAM, stage)
        assert bool(sets["edited"]) == (stage > 1) and not sets["history"]
        assert sets["retention"] and not {r.fact_id for r in sets["retention"]} & ever_edited
        assert retention is None or sets["retention"] == retention
        retention = sets["retention"]
        assert {r.fact_id for r in sets["heldout"]} == _facts(records, "heldout")
        current = {r.fact_id: r.answer for r in sets["train"]}
        assert all(r.answer == current[r.fact_id] for r in sets["eval"] + sets["validation"])
