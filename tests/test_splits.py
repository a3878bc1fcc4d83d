"""The benchmark's splits: validation apart from every evaluation item, and held-out retention facts
that no stage after the first trains (smoke benchmark)."""
from __future__ import annotations

from mscl import benchmark
from mscl.benchmark.probe import ensure_benchmark
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
