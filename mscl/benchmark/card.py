"""The data card: a built benchmark described in Markdown (sizes, sources, counts, edit chains)."""

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

from mscl.benchmark.build import default_data_dir, write_atomic
from mscl.benchmark.records import DOMAINS, MANIFEST, SPLITS, STREAMS, Record, edit_chain, read_stream
from mscl.benchmark.relations import RELATION_BY_NAME, RELATIONS, candidate_facts
from mscl.benchmark.revisions import real_facts
from mscl.benchmark.sources import _HOP, SOURCE_SEPARATOR


def default_data_card_path(profile: str) -> Path:
    """``reports/data_card.md`` for cpu, ``reports/data_card_gpu.md`` for gpu; a smoke run writes
    beside its data under artifacts so it never overwrites a committed card."""
    from mscl.common.params import PARAMS_ROOT
    reports = PARAMS_ROOT.parent / "reports"
    return {"cpu": reports / "data_card.md", "gpu": reports / "data_card_gpu.md"}.get(
        profile, default_data_dir(profile) / "data_card.md")


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _design_section() -> list[str]:
    """How the benchmark is built, for a reader of the card."""
    return ["## Design", "",
            "- Facts are real entries of pinned packages; each record's `source` names package, version and key, "
            "and `mscl.benchmark.rederive(source)` recomputes the real answer.",
            "- Each fact has one training question (the relation's first template) and is evaluated in every other "
            "wording of the relation (never a training question).",
            "- `general` (stage 0): well-known facts, disjoint from both streams, to check general knowledge survives.",
            "- `domain_independent` (5 stages), the paper's revised dataset: stage 1 learns a base set mixing all "
            "seven domains; every later stage retrains the same facts, `revised_share` of them with a revised answer "
            "(`edited`, `previous_answer`: the fact's answers form a chain A -> B -> C -> D -> E), the rest with "
            "their unchanged answer (the retention set, KRR). Part of the base set is facts the backbone already "
            "answers before any training (below), so revisions also fight pre-trained knowledge.",
            "- Splits of the domain-independent stream: `eval` (the held-out wordings of the evaluation facts, "
            "the items every claim is scored on), `validation` (the held-out wordings of validation facts, trained "
            "alike; every choice made by rule reads them and no claim does) and `heldout` (the held-out wordings of "
            "facts learned at stage 1 only, which no later stage revises or retrains: held-out retention, KRR). "
            "The three share no fact and no wording.",
            "- `cross_domain` (7 stages, stage k = domain k): domain-independent examples of domain k plus conflicts: "
            "facts of domain k-1's shared relations asked in domain k's framing with an edited answer "
            "(`shared_with` = domain k-1). Stage 1 (natural_sciences) has no earlier domain: it holds as many "
            "facts as a later stage, all domain-independent, `cross_conflict_per_stage` of which come back edited "
            "in stage 2.",
            "- `real_revisions` (5 stages, one date each): the domain-independent stream's shape with the world's "
            "edits: facts whose answer really changed (a territory's legal-tender currency, a time zone's standard "
            "UTC offset), each asked at every stage with its real answer on the stage's date (`edited` when it "
            "changed since the date before), and facts that did not change in the window (the retention set). Its "
            "`validation` and `heldout` splits work as in the domain-independent stream (below: `Real revisions`).",
            "- Facts shared by consecutive domains (older -> newer: relations): " + "; ".join(
                f"{a} -> {b}: " + ", ".join(r.name for r in RELATIONS if r.domain == a and r.shared_with == b)
                for a, b in zip(DOMAINS, DOMAINS[1:])) + ".",
            "- Edits are real answers of other facts of the same relation, never equal to, a substring of, or a "
            "superstring of any earlier answer of the fact (case ignored); answers are at least two characters "
            "and never appear in their question, because the metric is substring containment.",
            "- Both streams draw the best-known facts of each domain, so they may share facts (they are trained "
            "separately); neither shares a fact with the general set.", ""]


def _known_section(manifest: dict) -> list[str]:
    """What the probe found the backbone knows, or that the profile asks no probe."""
    known = manifest.get("known", {})
    lines = ["## Facts the backbone knows before stage 1", ""]
    if not known.get("backbone"):
        return lines + ["No probe (`known_share` is 0 in this profile): the base set is drawn without asking the "
                        "backbone.", ""]
    share = known["known_in_base_set"] / max(known["base_set"], 1)
    return lines + [f"`{known['backbone']}` was asked the {known['probed']} best-known candidate facts in all their "
                    f"wordings (greedy, the evaluation decoding; known: right in at least two thirds of them, "
                    f"`mscl.benchmark.probe.known_facts`): it knows {known['known_in_probe']}. "
                    f"The domain-independent base set "
                    f"holds {known['known_in_base_set']} of them among its {known['base_set']} facts "
                    f"({100 * share:.0f}%; `known_share` asks {100 * manifest['sizes']['known_share']:.0f}%).", ""]


def _relations_section(manifest: dict, streams: dict[str, list[Record]]) -> list[str]:
    """One row per relation: its domain, sources, how many facts it has and how many were used."""
    used = Counter(r.fact_id.split(":", 1)[0] for records in streams.values() for r in records if r.split == "train")
    rows = []
    for name, info in manifest["relations"].items():
        relation = RELATION_BY_NAME[name]
        example = candidate_facts(name)[0] if candidate_facts(name) else None
        packages = sorted({m.group("pkg") for hop in (example.source.split(SOURCE_SEPARATOR) if example else [])
                           if (m := _HOP.match(hop))})
        rows.append([info["domain"], name, info["description"], info["shared_with"] or "", ", ".join(packages),
                     info["available"], used[name],
                     f"{relation.templates[0].format(label=example.label)} → {example.answer}" if example else ""])
    return ["## Relations", "",
            "`available`: usable facts in the sources; `used`: training records (all streams and stages) asking it; "
            "`shared with`: the next domain that re-asks these facts, edited, in the cross-domain stream.", "",
            _md_table(["domain", "relation", "what", "shared with", "packages", "available", "used", "example"],
                      rows), ""]


def _counts_section(streams: dict[str, list[Record]]) -> list[str]:
    """Records per stream, stage, domain and split, with the edits among them."""
    lines = ["## Counts", "", "Records per stream, stage, domain and split (`edits` among the training records).",
             ""]
    for stream, records in streams.items():
        count = Counter((r.stage, r.domain, r.split) for r in records)
        edits = Counter((r.stage, r.domain, r.split) for r in records if r.edited)
        splits = [split for split in SPLITS if any(key[2] == split for key in count)]
        rows = [[stage, domain, *(count[(stage, domain, split)] for split in splits), edits[(stage, domain, "train")]]
                for stage, domain in sorted({(key[0], key[1]) for key in count},
                                            key=lambda key: (key[0], _domain_rank(key[1])))]
        total = [sum(row[i] for row in rows) for i in range(2, len(splits) + 3)]
        lines += [f"### {stream} ({len(records)} records)", "",
                  _md_table(["stage", "domain", *splits, "edits"], rows + [["all", "", *total]]), ""]
    return lines


def _examples_section(streams: dict[str, list[Record]]) -> list[str]:
    """The first record of each stream, the first edit of each staged stream, and an edit chain."""
    lines = ["## Examples", ""]
    for stream, records in streams.items():
        lines += [f"- `{stream}`: " + json.dumps(dataclasses.asdict(records[0]), ensure_ascii=False)]
    for stream in ("domain_independent", "cross_domain", "real_revisions"):
        edited = [r for r in streams[stream] if r.edited and r.split == "train"]
        if edited:
            lines += [f"- `{stream}` edit: " + json.dumps(dataclasses.asdict(edited[0]), ensure_ascii=False)]
    chain_fact = most_edited_fact(streams["domain_independent"])
    if chain_fact:
        lines += ["", f"Edit chain of `{chain_fact}` (domain-independent stream, training questions):", ""]
        lines += [_md_table(["stage", "question", "answer", "previous_answer"],
                            [[r.stage, r.question, r.answer, r.previous_answer or ""]
                             for r in edit_chain(streams["domain_independent"], chain_fact)])]
    return lines


def _real_section(manifest: dict, records: list[Record]) -> list[str]:
    """The real-revisions stream: its stage dates, its sources with their pinned versions, and the
    answer chains of the facts that change most often."""
    real = manifest["real_revisions"]
    used = Counter(r.fact_id.split(":", 1)[0] for r in records if r.stage == 1 and r.split == "train")
    rows = []
    for name, info in real["relations"].items():
        package = _HOP.match(real_facts(name)[0].sources[0]).group("pkg")
        rows.append([info["domain"], name, info["description"], f"{package}=={manifest['packages'][package]}",
                     info["revised"], info["stable"], used[name]])
    dates = real["stage_dates"]
    lines = ["## Real revisions", "",
             "Stage dates: " + ", ".join(f"stage {stage}: {day}" for stage, day in dates.items()) + ". "
             "`revised`/`stable`: facts in the sources whose answer changes / does not change between the dates "
             "(a fact with two answers on a date, a currency changeover or daylight saving time, is left out); "
             "`used`: facts of the stream.", "",
             _md_table(["domain", "relation", "what", "source", "revised", "stable", "used"], rows), "",
             "Answer chains of the facts that change most (training questions, one column per stage date):", ""]
    return lines + [_md_table(["question", *dates.values()], _real_chains(records)), ""]


def _real_chains(records: list[Record], n: int = 3) -> list[list[str]]:
    """The training question and the stage-by-stage answers of the ``n`` facts edited most often."""
    changes = Counter(r.fact_id for r in records if r.edited and r.split == "train")
    chosen = sorted(changes, key=lambda fact_id: -changes[fact_id])[:n]   # stable sort: file order on ties
    return [[chain[0].question, *(r.answer for r in chain)] for chain in (edit_chain(records, f) for f in chosen)]


def write_data_card(folder: str | Path, path: str | Path) -> Path:
    """Write a markdown data card for a built benchmark: sizes, sources with versions, counts per
    stream, stage, domain and split, shortfalls, and example records including an edit chain."""
    folder, path = Path(folder), Path(path)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    streams = {s: read_stream(folder, s) for s in STREAMS}
    lines = [
        f"# Data card: staged benchmark, profile `{manifest['profile']}`, seed {manifest['seed']}", "",
        "Generated by `mscl.benchmark.write_data_card` from the files in "
        f"`{folder.name}/` (`mscl.benchmark.build_benchmark`); every number below is counted from them.", "",
        *_design_section(),
        "## Sizes", "", _md_table(["parameter", "value"], [[k, v] for k, v in manifest["sizes"].items()]), "",
        *_known_section(manifest),
        "## Sources", "", _md_table(["package", "version"], [[k, v] for k, v in manifest["packages"].items()]), "",
        *_relations_section(manifest, streams),
        *_real_section(manifest, streams["real_revisions"]),
        "## Shortfalls", "",
        *([f"- {s}" for s in manifest["shortfalls"]] or ["None: every requested count was met."]), "",
        *_counts_section(streams),
        *_examples_section(streams),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def _domain_rank(domain: str) -> int:
    return DOMAINS.index(domain) if domain in DOMAINS else -1


def most_edited_fact(records: list[Record]) -> str | None:
    """The fact id edited most often (ties: the first in file order); ``None`` if none is edited."""
    counts = Counter(r.fact_id for r in records if r.edited and r.split == "train")
    if not counts:
        return None
    most = max(counts.values())
    return next(r.fact_id for r in records if counts.get(r.fact_id) == most)
