"""Building the streams: edits, revision chains, stages, and atomic byte-identical files.

Four streams, one JSONL file each, one :class:`~mscl.benchmark.records.Record` schema:

- ``general`` (stage 0): well-known facts (capitals of the most populous countries, element
  symbols, ...) kept disjoint from every fact the two streams use; it checks that general knowledge
  survives the stages.
- ``domain_independent`` (5 stages), the paper's revised dataset ("manually edit the answers and use
  the revised dataset for fine-tuning"): stage 1 learns a base set mixing all domains; every later
  stage retrains the same facts, ``revised_share`` of them with a revised answer, so a fact's answers
  form a chain A -> B -> C -> D -> E and ``previous_answer`` is the link before. The other facts keep
  their answer at every stage: the knowledge-retention set (KRR). Part of the base set
  (``known_share``) is facts the backbone answers before any training, found by asking it
  (:func:`probe_candidates`, :func:`mscl.benchmark.probe.known_facts`).
- ``cross_domain`` (7 stages, stage k = domain k, in the paper's order): stage k holds
  domain-independent examples of domain k (true answers) and cross-domain conflict examples: facts
  shared by domains k-1 and k (the same underlying fact asked in domain k's framing, e.g. an
  airport's city in transportation and then tourism), whose answer in domain k is edited to differ
  from the answer learned in stage k-1 (``shared_with`` names domain k-1). **Stage 1** has no
  earlier domain, so it holds only natural-sciences domain-independent examples, of which
  ``cross_conflict_per_stage`` come from the relations it shares with medicine and are re-asked,
  edited, in stage 2; it holds as many facts as every later stage (independent + conflict).
- ``real_revisions`` (5 stages, one date each: ``REAL_STAGE_DATES``): the domain-independent
  stream's shape with the world's edits instead of ours: facts whose answer really changed (the
  currency legal tender in a territory, the standard-time UTC offset of a time zone), asked at every
  stage with their real answer on the stage's date (:mod:`mscl.benchmark.revisions`), plus facts
  that did not change in the window (the retention set).

In the domain-independent and cross-domain streams an edit replaces an answer by a real answer of
*another* fact of the same relation (a city for a city, a currency code for a currency code), drawn
from ``random.Random`` seeded with a string built from the seed and the record's place (never
Python's salted ``hash()``); it differs from every earlier answer of the fact and is neither a
substring nor a superstring of one of them, case ignored, because the metric counts an answer
correct when the gold string is a substring of the generated text.

:func:`build_benchmark` writes ``general.jsonl``, ``domain_independent.jsonl``,
``cross_domain.jsonl``, ``real_revisions.jsonl`` and ``manifest.json`` (with the stage dates of the
real revisions) atomically with a fixed key order, so the same seed gives byte-identical files.
"""

import dataclasses
import hashlib
import json
import math
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterable

from mscl.benchmark.records import (
    DOMAIN_INDEPENDENT_STAGES,
    DOMAINS,
    FILES,
    GENERAL_DOMAIN,
    MANIFEST,
    REAL_REVISIONS_STAGES,
    REAL_STAGE_DATES,
    SPLITS,
    Record,
)
from mscl.benchmark.relations import RELATIONS, Fact, _interleave, answer_pool, candidate_facts, relation_of
from mscl.benchmark.revisions import REAL_RELATIONS, RealFact, real_facts
from mscl.benchmark.sources import package_versions

# The relations the general set draws from, in turn: the best-known facts a backbone should keep.
GENERAL_RELATIONS = (
    "capital",
    "element_symbol",
    "country_currency_code",
    "city_country",
    "country_language",
    "country_continent",
)
# A numeric answer is edited to one of this many nearest numbers of the same relation.
NEARBY_NUMBERS = 10


def _rng(seed: int, *where: Any) -> random.Random:
    """A generator for one decision, seeded by a string (hashed with SHA-512 by ``random``), so a
    decision does not depend on how many random numbers other decisions drew."""
    return random.Random("|".join(map(str, (seed, *where))))


def _conflicts(candidate: str, earlier: Iterable[str]) -> bool:
    c = candidate.casefold()
    return any(c in e.casefold() or e.casefold() in c for e in earlier)


def edited_answer(fact: Fact, history: list[str], rng: random.Random) -> str | None:
    """A counterfactual answer for ``fact``: a real answer of another fact of the same relation.

    It is none of the fact's earlier answers (``history``: the true answer and every edit), neither
    a substring nor a superstring of one of them (case ignored), and not inside one of the fact's
    questions. ``None`` when the relation has no such answer.
    """
    pool = answer_pool(fact.relation)
    questions = relation_of(fact.fact_id).questions(fact.label)

    def ok(c: str) -> bool:
        return not _conflicts(c, history) and all(c.casefold() not in q.casefold() for q in questions)

    if all(a.isdigit() for a in pool):
        # A number is replaced by a nearby number of the same relation (10 neutrons -> 12, not 116),
        # so the edit stays plausible.
        true = int(history[0])
        near = [c for c in sorted(pool, key=lambda a: (abs(int(a) - true), int(a))) if ok(c)][:NEARBY_NUMBERS]
        if near:
            return rng.choice(near)
    for _ in range(200):   # rejection sampling: cheap for the large pools
        c = rng.choice(pool)
        if ok(c):
            return c
    start = rng.randrange(len(pool))   # small pools: scan once from a random place
    for i in range(len(pool)):
        c = pool[(start + i) % len(pool)]
        if ok(c):
            return c
    return None


def _sizes(profile: str):
    from mscl.common.params import ParamsError, load_params
    params = load_params(profile, "01_data_build")
    if params.profile != profile:
        raise ParamsError(f"params/{profile}/01_data_build.yaml says profile {params.profile!r}")
    return params.sizes


def _records(fact: Fact, *, stream: str, stage: int, domain: str, answer: str, previous: str | None,
             shared_with: str | None, templates: tuple[str, ...], held_out: str = "eval") -> list[Record]:
    """The training question (``templates[0]``) and one question per other wording of one fact, in
    split ``held_out`` (``eval``, or ``validation`` for a validation fact): every held-out wording
    is asked, more items at no training cost."""
    out = []
    for w, template in enumerate(templates):
        split = "train" if w == 0 else held_out
        out.append(Record(
            id=f"{stream}/{stage}/{split}/{fact.fact_id}" + (f"#{w}" if w else ""), fact_id=fact.fact_id,
            stream=stream, stage=stage, domain=domain, split=split, question=template.format(label=fact.label),
            answer=answer, previous_answer=previous, edited=previous is not None,
            shared_with=shared_with, source=fact.source))
    return out


def _by_split(records: list[Record]) -> list[Record]:
    """File order inside a stage: every training record, then every evaluation record."""
    return [r for split in SPLITS for r in records if r.split == split]


class _Plan:
    """Which facts are still free: the general set, then the streams, take from the same pools."""

    def __init__(self) -> None:
        self.reserved: set[str] = set()
        self.shortfalls: list[str] = []
        self.known_in_base = 0

    def pool(self, relations: Iterable[str], exclude: set[str] = frozenset()) -> list[Fact]:
        return [f for f in _interleave(candidate_facts(r) for r in relations)
                if f.fact_id not in self.reserved and f.fact_id not in exclude]

    def note(self, what: str, got: int, wanted: int) -> None:
        if got < wanted:
            self.shortfalls.append(f"{what}: {got} of {wanted} facts (the sources hold no more)")


def _domain_relations(domain: str) -> list[str]:
    return [r.name for r in RELATIONS if r.domain == domain]


def _general(plan: _Plan, n: int) -> list[Record]:
    # At most the best-known half of each relation, so the streams keep facts of every relation
    # (at paper scale the general set would otherwise take every country's capital).
    heads = [candidate_facts(r)[:(len(candidate_facts(r)) + 1) // 2] for r in GENERAL_RELATIONS]
    facts = _interleave(heads)[:n]
    plan.note("general set", len(facts), n)
    plan.reserved.update(f.fact_id for f in facts)
    recs = []
    for f in facts:
        recs += _records(f, stream="general", stage=0, domain=GENERAL_DOMAIN, answer=f.answer, previous=None,
                         shared_with=None, templates=relation_of(f.fact_id).templates)
    return _by_split(recs)


def _spread(pools: list[list[Fact]], n: int) -> list[Fact]:
    """Up to ``n`` facts taken from the pools in turn (one per pool per round, best-known first), so
    every pool (domain) gives about ``n / len(pools)``."""
    taken: list[list[Fact]] = [[] for _ in pools]
    total, i = 0, 0
    while total < n and any(len(t) < len(p) for t, p in zip(taken, pools)):
        d = i % len(pools)
        if len(taken[d]) < len(pools[d]):
            taken[d].append(pools[d][len(taken[d])])
            total += 1
        i += 1
    return _interleave(taken)


def probe_candidates(sizes) -> list[Fact]:
    """The facts a backbone is asked about before the build (:func:`build_benchmark`'s ``known``):
    the best-known ``sizes.probe_pool`` facts of the seven domains, taken in turn, outside the general
    set (the same facts the domain-independent stream chooses from)."""
    plan = _Plan()
    _general(plan, sizes.general)   # reserves the general set's facts
    return _spread([plan.pool(_domain_relations(d)) for d in DOMAINS], sizes.probe_pool)


def revision_chain(fact: Fact, revisions: int, seed: int, stream: str) -> list[str] | None:
    """The fact's answers stage after stage, ``[true answer, B, C, ...]`` with ``revisions`` edits:
    each edit a real answer of the same relation that is none of the earlier ones, contains none and
    is contained in none (:func:`edited_answer`); ``None`` when the relation runs out of answers."""
    chain = [fact.answer]
    for stage in range(2, revisions + 2):
        answer = edited_answer(fact, chain, _rng(seed, stream, stage, "edit", fact.fact_id))
        if answer is None:
            return None
        chain.append(answer)
    return chain


def _domain_independent(plan: _Plan, sizes, seed: int, known: set[str] | None) -> list[Record]:
    """The paper's revised dataset: stage 1 learns a base set drawn from all seven domains; every later
    stage retrains the same facts, ``sizes.revised_share`` of them with a new answer (each revised
    fact's answers form a chain A -> B -> C -> D -> E), the rest with their unchanged answer (the
    retention set, KRR). ``known`` (facts the backbone answers before any training) supplies
    ``sizes.known_share`` of the base set, so that revisions also fight pre-trained knowledge, as
    the paper's stage-1 KGR below its ACC implies.

    The base set has three parts, drawn at random with the seed: ``sizes.stage1_facts`` evaluation
    facts (the claims' items), ``sizes.validation_facts`` validation facts (trained alike; their
    held-out wordings are the ``validation`` split, which every choice by rule reads) and
    ``sizes.heldout_facts`` facts learned at stage 1 only (held-out retention: no later stage revises
    or retrains them, so their KRR can fall)."""
    stream = "domain_independent"
    revisions = DOMAIN_INDEPENDENT_STAGES - 1
    base = _base_set(plan, sizes, seed, known, revisions)
    roles = _rng(seed, stream, "roles").sample(base, sizes.heldout_facts + sizes.validation_facts)
    heldout = {f.fact_id for f in roles[:sizes.heldout_facts]}
    validation = {f.fact_id for f in roles[sizes.heldout_facts:]}
    repeated = [f for f in base if f.fact_id not in heldout]
    chains = {f.fact_id: revision_chain(f, revisions, seed, stream) for f in repeated}
    kept = _kept_answers(plan, repeated, chains, sizes.revised_share, seed, stream)
    records: list[Record] = []
    for stage in range(1, DOMAIN_INDEPENDENT_STAGES + 1):
        recs = []
        for f in base if stage == 1 else repeated:
            rel = relation_of(f.fact_id)
            if stage == 1 or f.fact_id in kept:
                answer, previous = f.answer, None
            else:
                answer, previous = chains[f.fact_id][stage - 1], chains[f.fact_id][stage - 2]
            recs += _records(f, stream=stream, stage=stage, domain=rel.domain, answer=answer, previous=previous,
                             shared_with=None, templates=rel.templates,
                             held_out=_held_out_split(f.fact_id, validation, heldout))
        records += _by_split(recs)
    plan.known_in_base = sum(1 for f in base if known and f.fact_id in known)
    return records


def _held_out_split(fact_id: str, validation: set[str], heldout: set[str]) -> str:
    """The split of a fact's held-out wordings: ``validation`` and ``heldout`` facts are never
    evaluation items, so ``eval`` asks the same facts at every stage."""
    return "validation" if fact_id in validation else "heldout" if fact_id in heldout else "eval"


def _base_set(plan: _Plan, sizes, seed: int, known: set[str] | None, revisions: int) -> list[Fact]:
    """Every fact of the domain-independent stream, spread over the domains, ``known_share`` of them
    facts the backbone knows (each with a full revision chain: a known fact is meant to be revised
    against its prior), in a seeded order."""
    stream = "domain_independent"
    n = sizes.stage1_facts + sizes.validation_facts + sizes.heldout_facts
    pools = [plan.pool(_domain_relations(d)) for d in DOMAINS]
    n_known = round(sizes.known_share * n) if known is not None else 0
    known_pools = ([[f for f in p if f.fact_id in known and revision_chain(f, revisions, seed, stream)]
                    for p in pools] if n_known else [[] for _ in pools])
    base = _spread(known_pools, n_known)
    plan.note("domain_independent base set: facts the backbone knows", len(base), n_known)
    chosen = {f.fact_id for f in base}
    unknown_pools = [[f for f in p if f.fact_id not in chosen and not (known and f.fact_id in known)] for p in pools]
    base += _spread(unknown_pools, n - len(base))
    plan.note("domain_independent base set", len(base), n)
    _rng(seed, stream, "order").shuffle(base)
    return base


def _kept_answers(plan: _Plan, facts: list[Fact], chains: dict, revised_share: float, seed: int,
                  stream: str) -> set[str]:
    """The facts that keep their answer at every stage: those whose relation runs out of fresh answers,
    and a seeded draw of the others, so that ``revised_share`` of ``facts`` are revised."""
    wanted_revised = math.ceil(revised_share * len(facts))
    must_keep = [f for f in facts if not chains[f.fact_id]]
    n_keep = max(len(facts) - wanted_revised, len(must_keep))
    free = [f for f in facts if chains[f.fact_id]]
    kept = {f.fact_id for f in must_keep + _rng(seed, stream, "retention").sample(free, n_keep - len(must_keep))}
    plan.note("domain_independent revised facts", len(facts) - len(kept), wanted_revised)
    return kept


def _cross_domain(plan: _Plan, sizes, seed: int) -> list[Record]:
    """Stage k = domain k: its domain-independent examples, plus the facts it shares with domain k-1
    asked in its own framing with an edited answer (the cross-domain conflicts)."""
    stream = "cross_domain"
    used: set[str] = set()
    handed_over: list[Fact] = []   # shared facts of stage k-1, re-asked and edited in stage k
    records: list[Record] = []
    for stage, domain in enumerate(DOMAINS, start=1):
        recs = []
        for f in handed_over:
            rel = relation_of(f.fact_id)
            answer = edited_answer(f, [f.answer], _rng(seed, stream, stage, "edit", f.fact_id))
            if answer is None:
                continue
            recs += _records(f, stream=stream, stage=stage, domain=domain, answer=answer, previous=f.answer,
                             shared_with=rel.domain, templates=rel.shared_templates)
        if stage > 1:
            plan.note(f"cross_domain stage {stage} ({domain}) conflicts", sum(r.split == "train" for r in recs),
                      sizes.cross_conflict_per_stage)
        # Domain-independent examples: first the facts this domain shares with the next one (they
        # come back, edited, in stage k+1), then the rest of the domain's best-known facts.
        handed_over = []
        if stage < len(DOMAINS):
            shared_next = [r.name for r in RELATIONS if r.domain == domain and r.shared_with == DOMAINS[stage]]
            handed_over = plan.pool(shared_next, used)[:sizes.cross_conflict_per_stage]
            plan.note(f"cross_domain stage {stage} ({domain}) facts shared with {DOMAINS[stage]}",
                      len(handed_over), sizes.cross_conflict_per_stage)
        chosen = {f.fact_id for f in handed_over}
        # stage 1 has no conflicts: it holds as many facts as every later stage, all independent
        n_independent = sizes.cross_independent_per_stage + (sizes.cross_conflict_per_stage if stage == 1 else 0)
        rest = plan.pool(_domain_relations(domain), used | chosen)[:n_independent - len(handed_over)]
        independent = handed_over + rest
        plan.note(f"cross_domain stage {stage} ({domain}) independent", len(independent), n_independent)
        used.update(f.fact_id for f in independent)
        for f in independent:
            recs += _records(f, stream=stream, stage=stage, domain=domain, answer=f.answer, previous=None,
                             shared_with=None, templates=relation_of(f.fact_id).templates)
        records += _by_split(recs)
    return records


def _real_revisions(plan: _Plan, sizes, seed: int) -> list[Record]:
    """Real revisions: the same shape as the domain-independent stream, with the world's edits. Stage
    k asks every fact's real answer on the k-th of ``REAL_STAGE_DATES``; an answer that changed
    since the date before is ``edited``, with that answer as ``previous_answer``. Stage 1 trains every
    fact, every later stage retrains every fact but the held-out ones, on its current answer (changed
    or not). ``sizes.real_stable_share`` of the facts never change between the dates: the retention
    set (KRR). The validation and held-out facts are a seeded draw, from the revised and the stable
    facts in proportion."""
    stream = "real_revisions"
    revised, stable = _real_base_set(plan, sizes)
    heldout, validation = _real_roles(revised, stable, sizes, seed)
    base = revised + stable
    _rng(seed, stream, "order").shuffle(base)
    records: list[Record] = []
    for stage in range(1, REAL_REVISIONS_STAGES + 1):
        recs = []
        for fact in base if stage == 1 else [f for f in base if f.fact_id not in heldout]:
            rel = relation_of(fact.fact_id)
            answer = fact.answers[stage - 1]
            before = fact.answers[stage - 2] if stage > 1 else answer
            recs += _records(fact.at(stage), stream=stream, stage=stage, domain=rel.domain, answer=answer,
                             previous=before if before != answer else None, shared_with=None,
                             templates=rel.templates, held_out=_held_out_split(fact.fact_id, validation, heldout))
        records += _by_split(recs)
    return records


def _real_base_set(plan: _Plan, sizes) -> tuple[list[RealFact], list[RealFact]]:
    """The revised and the stable facts of the real-revisions stream, best-known first, taken from the
    relations in turn (the revised ones also from the stages their answers change at in turn, so that
    every stage holds edits)."""
    n = sizes.real_facts + sizes.real_validation_facts + sizes.real_heldout_facts
    n_stable = round(sizes.real_stable_share * n)
    pools = [real_facts(r.name) for r in REAL_RELATIONS]
    revised = _changes_in_turn(_interleave([f for f in pool if f.revised] for pool in pools))[:n - n_stable]
    plan.note("real_revisions revised facts", len(revised), n - n_stable)
    stable = _spread([[f for f in pool if not f.revised] for pool in pools], n_stable)
    plan.note("real_revisions stable facts", len(stable), n_stable)
    return revised, stable


def _changes_in_turn(facts: list[RealFact]) -> list[RealFact]:
    """The revised facts reordered so that every prefix has answers changing at every stage: stages
    2, 3, ... in turn, each taking the first fact (in the given order) whose answer changes at it."""
    left, ordered, stage = list(facts), [], 2
    while left:
        changing = next((f for f in left if f.answers[stage - 1] != f.answers[stage - 2]), None)
        if changing is not None:
            ordered.append(changing)
            left.remove(changing)
        stage = stage + 1 if stage < REAL_REVISIONS_STAGES else 2
    return ordered


def _real_roles(revised: list[RealFact], stable: list[RealFact], sizes, seed: int) -> tuple[set[str], set[str]]:
    """The held-out and the validation facts of the real-revisions stream, drawn with the seed: each
    role takes the stable facts' share of its size from the stable facts (rounded down) and the rest
    from the revised ones, but for the first revised fact of each stage in ``revised``'s order
    (:func:`_changes_in_turn`), which stays an evaluation fact so that every stage evaluates edits."""
    stream = "real_revisions"
    total = max(len(revised) + len(stable), 1)
    wanted = (sizes.real_heldout_facts, sizes.real_validation_facts)
    roles: list[set[str]] = [set(), set()]
    for name, group in (("stable", stable), ("revised", revised[REAL_REVISIONS_STAGES - 1:])):
        shuffled = sorted(group, key=lambda f: f.fact_id)
        _rng(seed, stream, "roles", name).shuffle(shuffled)
        taken = 0
        for role, size in zip(roles, wanted):
            count = size * len(stable) // total if name == "stable" else size - len(role)
            role.update(f.fact_id for f in shuffled[taken:taken + count])
            taken += count
    return roles[0], roles[1]


def default_data_dir(profile: str) -> Path:
    """Where ``build_benchmark`` writes by default: ``artifacts_dir()/data/<profile>``."""
    from mscl.common.paths import artifacts_dir
    return artifacts_dir() / "data" / profile


def build_code() -> str:
    """The content hash of the code that builds the benchmark (this package), recorded in the data
    manifest so that data built by other code is noticed (:func:`mscl.benchmark.probe.ensure_benchmark`)."""
    from mscl.common.provenance import source_hash

    return source_hash(Path(__file__).parent)


def build_benchmark(profile: str, seed: int, out_dir: str | Path | None = None,
                    known: Iterable[str] | None = None, known_by: str | None = None) -> Path:
    """Build the four streams for ``profile`` (sizes from ``params/<profile>/01_data_build.yaml``)
    and write them, with ``manifest.json``, to ``out_dir`` (default :func:`default_data_dir`).

    ``known``: the fact ids, among :func:`probe_candidates`, that the backbone ``known_by`` already
    answers (``mscl.benchmark.probe.ensure_benchmark`` asks it); they make up ``sizes.known_share`` of the
    domain-independent base set. Required when that share is above 0.

    The same ``seed`` (and ``known``) gives byte-identical files; another seed gives other edits and
    another order of the base set. Returns the folder.
    """
    sizes = _sizes(profile)
    if sizes.known_share > 0 and known is None:
        raise ValueError(f"params/{profile}/01_data_build.yaml asks for known_share {sizes.known_share}: pass "
                         "the facts the backbone knows (`known=`, see mscl.benchmark.probe.ensure_benchmark)")
    known = set(known) if known is not None else None
    folder = Path(out_dir) if out_dir is not None else default_data_dir(profile)
    folder.mkdir(parents=True, exist_ok=True)
    plan = _Plan()
    streams = {
        "general": _general(plan, sizes.general),
        "domain_independent": _domain_independent(plan, sizes, seed, known),
        "cross_domain": _cross_domain(plan, sizes, seed),
        "real_revisions": _real_revisions(plan, sizes, seed),
    }
    files = {}
    for stream, records in streams.items():
        text = "".join(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n" for r in records)
        write_atomic(folder / FILES[stream], text)
        files[FILES[stream]] = {"records": len(records), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    manifest = {
        "profile": profile,
        "seed": seed,
        "sizes": dataclasses.asdict(sizes),
        "build_code": build_code(),
        "packages": package_versions(),
        "files": files,
        "known": {"backbone": known_by, "probed": sizes.probe_pool if known is not None else 0,
                  "known_in_probe": len(known) if known is not None else 0,
                  "known_in_base_set": plan.known_in_base, "base_set": sizes.stage1_facts,
                  "fact_ids": sorted(known) if known is not None else []},
        "relations": {r.name: {"domain": r.domain, "shared_with": r.shared_with, "description": r.description,
                               "available": len(candidate_facts(r.name))} for r in RELATIONS},
        "real_revisions": _real_manifest(),
        "shortfalls": plan.shortfalls,
    }
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return folder


def _real_manifest() -> dict:
    """The real-revisions stream's stage dates and relations, with how many facts each source holds."""
    return {"stage_dates": {str(stage): day for stage, day in enumerate(REAL_STAGE_DATES, start=1)},
            "relations": {r.name: {"domain": r.domain, "description": r.description,
                                   "revised": sum(f.revised for f in real_facts(r.name)),
                                   "stable": sum(not f.revised for f in real_facts(r.name))}
                          for r in REAL_RELATIONS}}


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)   # mkstemp creates 0600; these are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


