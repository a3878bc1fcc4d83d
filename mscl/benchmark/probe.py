"""The benchmark folder of a profile, built on first use, and the probe of facts the backbone knows.

When a profile asks for facts the backbone already knows (``known_share`` in ``01_data_build.yaml``),
the backbone is asked every candidate fact's wordings before the benchmark is built
(:func:`known_facts`); the data manifest records which backbone answered.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from mscl.benchmark.build import build_benchmark, build_code, probe_candidates
from mscl.benchmark.relations import relation_of
from mscl.common import dist
from mscl.common.answers import is_correct
from mscl.common.io import read_json, write_json
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
    """The folder's benchmark was built with ``seed`` and the profile's sizes, probed with its
    backbone, and by code that builds the same files as this checkout's (:func:`_same_as_rebuilt`)."""
    manifest = read_json(folder / "manifest.json")
    backbone = load_params(profile, "training").backbone
    sizes = dataclasses.asdict(load_params(profile, "01_data_build").sizes)
    if manifest.get("sizes") != sizes:
        raise ValueError(f"{folder} holds the benchmark built with sizes {manifest.get('sizes')}, but "
                         f"params/{profile}/01_data_build.yaml now gives {sizes}; remove {folder} (and the runs "
                         "trained on it) to rebuild it")
    if manifest.get("seed") != seed:
        raise ValueError(f"{folder} holds the benchmark built with seed {manifest.get('seed')}, but data_seed is "
                         f"{seed}; remove {folder} (and the runs trained on it) to rebuild it")
    probed_by = manifest.get("known", {}).get("backbone")
    if probed_by and probed_by != backbone:
        raise ValueError(f"{folder} holds a benchmark whose known facts backbone {probed_by!r} was asked for, but "
                         f"params/{profile}/training.yaml names {backbone!r}; "
                         f"remove {folder} (and the runs trained on it) to rebuild it")
    # a reduced copy (the pilot's and the budget axis's) is tied to its checked source by hashes
    if "sweep" not in manifest and manifest.get("build_code") != build_code():
        _same_as_rebuilt(folder, profile, manifest)


def _same_as_rebuilt(folder: Path, profile: str, manifest: dict) -> None:
    """Data built by other benchmark code is rebuilt in a scratch folder by this code: equal files
    are kept (the manifest records this code), different ones are an error naming what to remove."""
    known = manifest.get("known") or {}
    with tempfile.TemporaryDirectory() as scratch:
        build_benchmark(profile, manifest["seed"], Path(scratch),
                        known=set(known["fact_ids"]) if known.get("fact_ids") is not None else None,
                        known_by=known.get("backbone"))
        rebuilt = read_json(Path(scratch) / "manifest.json")
    # a file this code writes and the folder lacks (a stream added since) differs too
    differ = sorted(name for name, info in rebuilt["files"].items()
                    if manifest["files"].get(name, {}).get("sha256") != info["sha256"])
    if differ:
        raise ValueError(f"{folder} was built by other benchmark code, and this checkout builds other data "
                         f"({', '.join(differ)} differ); remove {folder} and the runs trained on it (make clean-runs "
                         f"PROFILE={profile}) to rebuild it")
    write_json(folder / "manifest.json", {**manifest, "build_code": rebuilt["build_code"]})


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
