"""The benchmark's one schema: :class:`Record`, the streams and their stages, and a reader that checks.

Every file of a built benchmark (``general.jsonl``, ``domain_independent.jsonl``,
``cross_domain.jsonl``, ``real_revisions.jsonl``) holds one :class:`Record` per line.
:func:`read_records` validates every line and names the file, the line and the field of the first
one that breaks the schema
(:class:`DataError`); :func:`stage_sets` gives the stage loop what it trains and evaluates on, and
:func:`earlier_answers` and :func:`edit_chain` follow a fact's answers from stage to stage.
"""

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

DOMAINS = (
    "natural_sciences",
    "medicine",
    "technology",
    "transportation",
    "tourism",
    "finance",
    "social_sciences",
)
GENERAL_DOMAIN = "general"
STREAMS = ("general", "domain_independent", "cross_domain", "real_revisions")
SPLITS = ("train", "eval", "validation", "heldout")
DOMAIN_INDEPENDENT_STAGES = 5
CROSS_DOMAIN_STAGES = len(DOMAINS)
# The real-revisions stream: stage k asks every fact's real answer on the k-th of these dates (ISO
# 8601). Chosen so that many answers change in between: the euro changeovers of 1999-2023 (the
# first date precedes the euro), Russia's 2011 and 2014 clock changes, Turkey's new lira (2005).
REAL_STAGE_DATES = ("1998-01-01", "2005-01-01", "2012-01-01", "2018-01-01", "2025-01-01")
REAL_REVISIONS_STAGES = len(REAL_STAGE_DATES)
FILES = {stream: f"{stream}.jsonl" for stream in STREAMS}
# the stages every built benchmark has (what mscl.pipeline.reproduce plans before any data exists)
STREAM_STAGES = {"general": [0], "domain_independent": list(range(1, DOMAIN_INDEPENDENT_STAGES + 1)),
                 "cross_domain": list(range(1, CROSS_DOMAIN_STAGES + 1)),
                 "real_revisions": list(range(1, REAL_REVISIONS_STAGES + 1))}
MANIFEST = "manifest.json"


class DataError(ValueError):
    """A benchmark file that breaks the schema; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Record:
    """One question with its answer at one stage of one stream (the single schema of every file)."""
    id: str                       # unique: "<stream>/<stage>/<split>/<fact_id>"
    fact_id: str                  # "<relation>:<key>": links every question and edit of one fact
    stream: str                   # "general" | "domain_independent" | "cross_domain" | "real_revisions"
    stage: int                    # 1-based; 0 for the general set
    domain: str                   # one of DOMAINS, or "general"
    split: str                    # "train" | "eval" | "validation" | "heldout" (the last two: held-out
                                  # wordings of validation facts and of stage-1-only facts)
    question: str
    answer: str                   # the answer at this stage (an edit when ``edited``; in real_revisions
                                  # the real answer at the stage's date, ``edited`` when it changed)
    previous_answer: str | None   # the answer before this record's edit (maybe an earlier edit)
    edited: bool
    shared_with: str | None       # cross-domain conflicts: the older domain that holds the fact
    source: str                   # "pkg==version:table[key].field", hops joined by " | " (real_revisions:
                                  # the key ends in "@<stage date>")


FIELDS = tuple(f.name for f in dataclasses.fields(Record))


_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "id": ((str,), "a non-empty string"),
    "fact_id": ((str,), "a non-empty string"),
    "stream": ((str,), f"one of {', '.join(STREAMS)}"),
    "stage": ((int,), "an integer (0 for the general set, else 1-based)"),
    "domain": ((str,), f"one of {', '.join((*DOMAINS, GENERAL_DOMAIN))}"),
    "split": ((str,), f"one of {', '.join(SPLITS)}"),
    "question": ((str,), "a non-empty string"),
    "answer": ((str,), "a non-empty string"),
    "previous_answer": ((str, type(None)), "a non-empty string or null"),
    "edited": ((bool,), "true or false"),
    "shared_with": ((str, type(None)), f"null or one of {', '.join(DOMAINS)}"),
    "source": ((str,), "a non-empty string 'package==version:table[key].field'"),
}


def _check(obj: Any, path: Path, line: int) -> Record:
    def fail(field: str, expected: str, got: Any) -> DataError:
        return DataError(f"{path}, line {line}, field {field!r}: expected {expected}, got {got!r}")

    if not isinstance(obj, dict):
        raise fail("(whole line)", "a JSON object with the Record fields", obj)
    for field in FIELDS:
        if field not in obj:
            raise fail(field, f"the field to be present ({_TYPES[field][1]})", "missing")
    for field in obj:
        if field not in _TYPES:
            raise fail(field, f"only the fields {', '.join(FIELDS)}", "an extra field")
    for field, (types, expected) in _TYPES.items():
        value = obj[field]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise fail(field, expected, value)
        if isinstance(value, str) and not value.strip():
            raise fail(field, expected, value)
    if obj["stream"] not in STREAMS:
        raise fail("stream", _TYPES["stream"][1], obj["stream"])
    if obj["split"] not in SPLITS:
        raise fail("split", _TYPES["split"][1], obj["split"])
    if obj["domain"] not in (*DOMAINS, GENERAL_DOMAIN):
        raise fail("domain", _TYPES["domain"][1], obj["domain"])
    if obj["shared_with"] is not None and obj["shared_with"] not in DOMAINS:
        raise fail("shared_with", _TYPES["shared_with"][1], obj["shared_with"])
    if (obj["stage"] == 0) != (obj["stream"] == "general") or obj["stage"] < 0:
        raise fail("stage", "0 exactly for the general stream, else a stage >= 1", obj["stage"])
    if obj["edited"] != (obj["previous_answer"] is not None):
        raise fail("previous_answer", "a string exactly when edited is true", obj["previous_answer"])
    return Record(**{f: obj[f] for f in FIELDS})


def read_records(path: str | Path) -> list[Record]:
    """Load one JSONL file, validating every line against :class:`Record`.

    A malformed or truncated line, a missing or extra field, a value of the wrong type, an empty
    answer, an unknown stream/split/domain or a repeated id raises :class:`DataError` naming the
    file, the 1-based line and the field.
    """
    path = Path(path)
    records, ids = [], set()
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {line_no}, field '(whole line)': expected one JSON object per line, "
                                f"got malformed or truncated JSON ({exc.msg} at column {exc.colno})") from None
            rec = _check(obj, path, line_no)
            if rec.id in ids:
                raise DataError(f"{path}, line {line_no}, field 'id': expected a unique id, got {rec.id!r} again")
            ids.add(rec.id)
            records.append(rec)
    return records


def read_stream(folder: str | Path, stream: str) -> list[Record]:
    """The validated records of one stream of a built benchmark."""
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; known: {', '.join(STREAMS)}")
    return read_records(Path(folder) / FILES[stream])


def load_benchmark(folder: str | Path):
    """The benchmark as a ``datasets.DatasetDict`` with one split per stream (file)."""
    import datasets
    features = datasets.Features({
        f: datasets.Value({"stage": "int64", "edited": "bool"}.get(f, "string")) for f in FIELDS})
    return datasets.DatasetDict({
        stream: datasets.Dataset.from_list([dataclasses.asdict(r) for r in read_stream(folder, stream)],
                                           features=features)
        for stream in STREAMS})


def stream_stages(folder: str | Path, stream: str) -> list[int]:
    """The stages of a stream, in order: ``[0]`` for general, 1..5, 1..7 and 1..5 for the three staged
    streams (domain-independent, cross-domain, real revisions)."""
    return sorted({r.stage for r in read_stream(folder, stream)})


def stage_sets(folder: str | Path, stream: str, stage: int) -> dict[str, list[Record]]:
    """What the stage loop trains and evaluates on at ``stage`` of ``stream``.

    - ``train``: the stage's training questions (in the domain-independent and real-revisions streams
      every base fact, revised or kept; in the cross-domain stream domain k's facts and its conflicts);
    - ``eval``: every held-out wording of the same facts, with the stage's answers;
    - ``edited``: the evaluation records of facts whose answer was edited in this stage (empty in
      stage 1);
    - ``validation``: the held-out wordings of the stage's validation facts (trained like the others;
      every choice by rule reads them, no claim does);
    - ``retention``: evaluation records of stage-1 facts whose answer no later stage edits, the same
      list at every stage (knowledge retention rate, KRR);
    - ``heldout``: the held-out wordings of the stream's stage-1-only facts, which no later stage
      revises or retrains (held-out retention: their KRR can fall, where the ``retention`` facts are
      relearned at every stage);
    - ``history``: the evaluation records of earlier stages whose fact no stage up to this one asks
      again, with their (still current) answers: the accuracy matrix R[k][j] of the cross-domain
      stream (empty in the domain-independent and real-revisions streams, which ask every fact at
      every stage);
    - ``general``: the evaluation records of the general set.
    """
    records = read_stream(folder, stream)
    stages = sorted({r.stage for r in records})
    if stage not in stages:
        raise ValueError(f"stream {stream!r} has stages {stages}, not {stage}")
    first = stages[0]
    ever_edited = {r.fact_id for r in records if r.edited}
    at = [r for r in records if r.stage == stage]
    last_asked: dict[str, int] = {}
    for r in records:
        if r.stage <= stage:
            last_asked[r.fact_id] = max(last_asked.get(r.fact_id, 0), r.stage)
    return {
        "train": [r for r in at if r.split == "train"],
        "eval": [r for r in at if r.split == "eval"],
        "edited": [r for r in at if r.split == "eval" and r.edited],
        "validation": [r for r in at if r.split == "validation"],
        "retention": [r for r in records if r.stage == first and r.split == "eval" and r.fact_id not in ever_edited],
        "heldout": [r for r in records if r.stage == first and r.split == "heldout"],
        "history": [r for r in records if r.stage < stage and r.split == "eval" and last_asked[r.fact_id] == r.stage],
        "general": [r for r in read_stream(folder, "general") if r.split == "eval"],
    }


def earlier_answers(records: Iterable[Record]) -> dict[tuple[str, int], list[str]]:
    """For each (fact id, stage): the fact's answers at earlier stages that differ from its answer at
    that stage, oldest first (the answers a model giving a *stale* answer falls back on)."""
    answers: dict[str, dict[int, str]] = defaultdict(dict)
    for r in records:
        if r.split == "train":
            answers[r.fact_id][r.stage] = r.answer
    out = {}
    for fact_id, by_stage in answers.items():
        for stage, answer in by_stage.items():
            earlier = [by_stage[s] for s in sorted(by_stage) if s < stage and by_stage[s] != answer]
            out[(fact_id, stage)] = list(dict.fromkeys(earlier))
    return out


def edit_chain(records: Iterable[Record], fact_id: str) -> list[Record]:
    """The training records of one fact, stage by stage: its answer and every edit of it."""
    return sorted((r for r in records if r.fact_id == fact_id and r.split == "train"), key=lambda r: r.stage)


def benchmark_counts(folder: str | Path):
    """A pandas table: records per stream, stage, domain and split, plus how many are edits."""
    import pandas as pd
    rows = [(r.stream, r.stage, r.domain, r.split, r.edited) for s in STREAMS for r in read_stream(folder, s)]
    df = pd.DataFrame(rows, columns=["stream", "stage", "domain", "split", "edited"])
    return (df.groupby(["stream", "stage", "domain", "split"], sort=False)
              .agg(records=("edited", "size"), edited=("edited", "sum")).reset_index())


