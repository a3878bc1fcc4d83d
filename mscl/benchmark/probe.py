"""The benchmark folder of a profile, built on first use, and the probe of facts the backbone knows.

When a profile asks for facts the backbone already knows (``known_share`` in ``01_data_build.yaml``),
the backbone is asked every candidate fact's wordings before the benchmark is built
(:func:`known_facts`); the data manifest records which backbone answered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mscl.benchmark.build import build_benchmark, probe_candidates
from mscl.benchmark.relations import relation_of
from mscl.common import dist
from mscl.common.answers import is_correct
from mscl.common.io import read_json
from mscl.common.params import TrainingParams, load_params
from mscl.common.paths import artifacts_dir
from mscl.engine.generation import evaluation_answers
from mscl.engine.models import load_backbone, resolve_dtype

# a fact counts as known when the backbone answers at least this share of its wordings
KNOWN_WORDINGS = 2 / 3


def known_facts(backbone: str, facts: list, params: TrainingParams) -> set[str]:
    """The ids of ``facts`` that ``backbone`` answers before any training: greedy answers (so the
    probe is deterministic whatever ``eval.mode``) correct on at least ``KNOWN_WORDINGS`` of the
    fact's wordings."""
    device = dist.device()
    model, tokenizer = load_backbone(backbone, seed=params.data_seed, dtype=resolve_dtype(params.train.dtype, device))
    asked = [(f, t.format(label=f.label)) for f in facts for t in relation_of(f.fact_id).templates]
    answers = evaluation_answers(model.to(device), tokenizer, [q for _, q in asked], params.eval,
                                 "probe: facts the backbone knows", mode="greedy")
    right: dict[str, list[bool]] = {}
    for (f, _), a in zip(asked, answers):
        right.setdefault(f.fact_id, []).append(is_correct(a, f.answer))
    return {fact_id for fact_id, flags in right.items() if np.mean(flags) >= KNOWN_WORDINGS - 1e-9}


def _check_built(folder: Path, profile: str, seed: int) -> None:
    """The folder's benchmark was built with ``seed`` and probed with the profile's backbone."""
    manifest = read_json(folder / "manifest.json")
    backbone = load_params(profile, "training").backbone
    if manifest.get("seed") != seed:
        raise ValueError(f"{folder} holds the benchmark built with seed {manifest.get('seed')}, but data_seed is "
                         f"{seed}; remove {folder} (and the runs trained on it) to rebuild it")
    probed_by = manifest.get("known", {}).get("backbone")
    if probed_by and probed_by != backbone:
        raise ValueError(f"{folder} holds a benchmark whose known facts backbone {probed_by!r} was asked for, but "
                         f"params/{profile}/training.yaml names {backbone!r}; "
                         f"remove {folder} (and the runs trained on it) to rebuild it")


def ensure_benchmark(profile: str, seed: int, data_dir: Path | None = None) -> Path:
    """The benchmark folder of ``profile``, built first if it is not there (or not complete)."""
    folder = Path(data_dir) if data_dir else artifacts_dir() / "data" / profile
    if not (folder / "manifest.json").is_file():
        sizes = load_params(profile, "01_data_build").sizes
        known, known_by = None, None
        if sizes.known_share > 0:
            training = load_params(profile, "training")
            dist.check_devices(training.require_cuda, f"params/{profile}/training.yaml")
            known_by = training.backbone
            known = known_facts(known_by, probe_candidates(sizes), training)
        build_benchmark(profile, seed, folder, known=known, known_by=known_by)
    _check_built(folder, profile, seed)
    return folder
