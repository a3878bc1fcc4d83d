"""The staged benchmark: real facts from pinned PyPI packages, counterfactual edits, stages, JSONL.

The paper's data set is not public, so we build one with the same shape from facts that ship inside
pinned packages; nothing is invented, and every record's ``source`` recomputes its answer. The
package reads in this order:

- :mod:`~mscl.benchmark.sources`: the package tables, loaded once per process, and ``rederive``;
- :mod:`~mscl.benchmark.relations`: the catalogue of relations, their question templates (the first
  trains, the others evaluate) and the candidate facts of each, best-known first;
- :mod:`~mscl.benchmark.revisions`: the real-revisions catalogue, facts whose answer really changed,
  read at the stage dates;
- :mod:`~mscl.benchmark.build`: edits, revision chains and the four streams (``general``,
  ``domain_independent``: the paper's revised dataset, ``cross_domain``, ``real_revisions``), written
  atomically;
- :mod:`~mscl.benchmark.records`: the one :class:`Record` schema, its checked reader and the stage
  sets the stage loop trains and evaluates on;
- :mod:`~mscl.benchmark.card`: the data card;
- :mod:`~mscl.benchmark.hub`: the benchmark as a ``datasets.DatasetDict`` and its parquet export
  (``load(profile)``); :mod:`~mscl.benchmark.probe` builds a profile's benchmark on first use.

The names below are the public interface; import them from ``mscl.benchmark``.
"""
from mscl.benchmark.build import (
    build_benchmark,
    default_data_dir,
    edited_answer,
    probe_candidates,
    revision_chain,
)
from mscl.benchmark.card import default_data_card_path, most_edited_fact, write_data_card
from mscl.benchmark.hub import load
from mscl.benchmark.records import (
    CROSS_DOMAIN_STAGES,
    DOMAIN_INDEPENDENT_STAGES,
    DOMAINS,
    FIELDS,
    FILES,
    GENERAL_DOMAIN,
    MANIFEST,
    REAL_REVISIONS_STAGES,
    REAL_STAGE_DATES,
    SPLITS,
    STREAM_STAGES,
    STREAMS,
    DataError,
    Record,
    benchmark_counts,
    earlier_answers,
    edit_chain,
    load_benchmark,
    read_records,
    read_stream,
    stage_sets,
    stream_stages,
)
from mscl.benchmark.relations import (
    MIN_ANSWER_CHARS,
    RELATION_BY_NAME,
    RELATIONS,
    Fact,
    Relation,
    answer_pool,
    candidate_facts,
    relation_of,
)
from mscl.benchmark.revisions import REAL_RELATIONS, RealFact, real_facts
from mscl.benchmark.sources import package_versions, rederive

__all__ = [
    "CROSS_DOMAIN_STAGES", "DOMAIN_INDEPENDENT_STAGES", "DOMAINS", "FIELDS", "FILES", "GENERAL_DOMAIN",
    "MANIFEST", "MIN_ANSWER_CHARS", "REAL_RELATIONS", "REAL_REVISIONS_STAGES", "REAL_STAGE_DATES", "RELATIONS",
    "RELATION_BY_NAME", "SPLITS", "STREAMS", "STREAM_STAGES",
    "DataError", "Fact", "RealFact", "Record", "Relation", "answer_pool", "benchmark_counts", "build_benchmark",
    "candidate_facts", "default_data_card_path", "default_data_dir", "earlier_answers", "edit_chain",
    "edited_answer", "load", "load_benchmark", "most_edited_fact", "package_versions", "probe_candidates",
    "read_records", "read_stream", "real_facts", "rederive", "relation_of", "revision_chain", "stage_sets",
    "stream_stages", "write_data_card",
]
