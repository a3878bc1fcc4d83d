"""The benchmark's splits: validation apart from every evaluation item, and held-out retention facts
that no stage after the first trains (smoke benchmark)."""
from __future__ import annotations

import pytest

from mscl import benchmark
from mscl.benchmark.probe import ensure_benchmark
from mscl.common.io import read_json, sha256_file, write_json
from mscl.common.params import load_params

STREAM = "domain_independent"


def _built(scratch):
    return ensure_benchmark("smoke", load_params("smoke", "training").data_seed)


def test_validation_and_evaluation_share_no_fact_and_no_wording(scratch):
    records = benchmark.read_stream(_built(scratch), STREAM)
    sizes = load_params("smoke", "01_data_build").sizes
    validation = [r for r in records if r.split == "validation"]
    evaluation = [r for r in records if r.split == "eval"]
    assert len({r.fact_id for r in validation}) == sizes.validation_facts
    assert not {r.fact_id for r in validation} & {r.fact_id for r in evaluation}
    assert not {r.question for r in validation} & {r.question for r in evaluation}
    # validation facts are trained like the others, at every stage
    trained = {(r.fact_id, r.stage) for r in records if r.split == "train"}
    assert all((r.fact_id, r.stage) in trained for r in validation)


def test_every_stage_set_the_claims_read_is_free_of_validation_facts(scratch):
    folder = _built(scratch)
    validation = {r.fact_id for r in benchmark.read_stream(folder, STREAM) if r.split == "validation"}
    for stage in benchmark.stream_stages(folder, STREAM):
        sets = benchmark.stage_sets(folder, STREAM, stage)
        assert sets["validation"] and {r.fact_id for r in sets["validation"]} <= validation
        for name in ("eval", "edited", "retention", "heldout", "history"):
            assert not {r.fact_id for r in sets[name]} & validation, (stage, name)


def test_held_out_retention_facts_are_never_trained_after_stage_1(scratch):
    folder = _built(scratch)
    records = benchmark.read_stream(folder, STREAM)
    heldout = {r.fact_id for r in benchmark.stage_sets(folder, STREAM, 2)["heldout"]}
    assert len(heldout) == load_params("smoke", "01_data_build").sizes.heldout_facts
    assert not any(r.fact_id in heldout and r.stage > 1 for r in records)
    assert all(r.stage == 1 and not r.edited for r in records if r.fact_id in heldout)
    # the same list at every stage, and never an evaluation item: ACC asks the same facts at every stage
    for stage in benchmark.stream_stages(folder, STREAM):
        sets = benchmark.stage_sets(folder, STREAM, stage)
        assert {r.fact_id for r in sets["heldout"]} == heldout
        assert not heldout & {r.fact_id for r in sets["eval"] + sets["retention"] + sets["history"]}
    first, last = (benchmark.stage_sets(folder, STREAM, s)["eval"] for s in (1, 5))
    assert {r.fact_id for r in first} == {r.fact_id for r in last}


def test_data_built_by_other_code_is_kept_only_if_this_code_builds_the_same(scratch):
    folder = _built(scratch)
    manifest_path = folder / "manifest.json"
    manifest = read_json(manifest_path)
    write_json(manifest_path, {**manifest, "build_code": "older"})
    assert _built(scratch) == folder and read_json(manifest_path)["build_code"] == manifest["build_code"]
    stream = folder / "general.jsonl"  # other code, other data (the manifest agrees with the file)
    stream.write_text(stream.read_text().replace("?", " ?", 1))
    files = {**manifest["files"], "general.jsonl": {**manifest["files"]["general.jsonl"],
                                                    "sha256": sha256_file(stream)}}
    write_json(manifest_path, {**manifest, "files": files, "build_code": "older"})
    with pytest.raises(ValueError, match=f"{folder} was built by other benchmark code.*general.jsonl differ"):
        _built(scratch)


def test_data_built_with_other_sizes_is_an_error_naming_the_folder(scratch, monkeypatch):
    folder = _built(scratch)
    manifest = read_json(folder / "manifest.json")
    write_json(folder / "manifest.json", {**manifest, "sizes": {**manifest["sizes"], "heldout_facts": 0}})
    with pytest.raises(ValueError, match=f"{folder} holds the benchmark built with sizes.*remove {folder}"):
        _built(scratch)
