"""``python -m mscl.pipeline.verify --profile cpu``: do the saved numbers reproduce under this environment?

Recomputes, with whatever library versions are installed, everything a run derives without a
model, and compares it with what the run saved:

- **the benchmark**: rebuilt from the fact packages into a scratch folder (the facts the backbone
  knew are read from the data manifest, so no model is asked) and every file's sha256 compared
  with the data manifest's;
- **every finished stage's metrics**: recomputed from its saved ``predictions.jsonl``
  (:func:`mscl.core.metrics.stage_metrics`, the bootstrap intervals included) and compared with its
  manifest;
- **every finished stage's config hash**: recomputed by this checkout's code from the params, data
  hashes and backbone its manifest recorded (:func:`mscl.pipeline.stages.stage_identity`), so a
  change of code (moving a module, say) that would make finished stages stale shows here first;
- **every finished stage's files**: each file its manifest recorded, present with its sha256
  (:func:`mscl.pipeline.integrity.problems`), and a readable manifest;
- **the code that trained each stage**: stages trained by code other than this checkout's are
  listed as warnings (the change may have touched nothing they ran).

It prints a JSON summary and exits 1 when anything differs (warnings alone do not fail it). Used to
check that a change of pins (numpy for the vLLM extra, say) does not move the cpu results.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from mscl import benchmark
from mscl.common.io import read_json, read_jsonl, sha256_json
from mscl.common.params import TrainingParams, build, load_params, to_dict
from mscl.common.paths import artifacts_dir
from mscl.core.metrics import stage_metrics
from mscl.pipeline import integrity
from mscl.pipeline.stages import EVAL_SETS, stage_identity


def data_matches(profile: str) -> dict:
    """The benchmark rebuilt under this environment against the saved one (file sha256s)."""
    folder = artifacts_dir() / "data" / profile
    manifest = read_json(folder / benchmark.MANIFEST)
    known = manifest.get("known") or {}
    with tempfile.TemporaryDirectory() as tmp:
        benchmark.build_benchmark(profile, manifest["seed"], Path(tmp),
                                  known=set(known["fact_ids"]) if known.get("fact_ids") is not None else None,
                                  known_by=known.get("backbone"))
        rebuilt = read_json(Path(tmp) / benchmark.MANIFEST)["files"]
    return {name: rebuilt.get(name, {}).get("sha256") == info["sha256"] for name, info in manifest["files"].items()}


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and bool(np.isclose(a, b, rtol=0, atol=1e-12, equal_nan=True))
    return a == b


RUN_ROOTS = ("runs", "sweep", "choices", "budgets")  # every folder of <artifacts> that holds stages


def manifests(profile: str) -> list[Path]:
    """Every finished stage's manifest of ``profile``: the main runs, the sweep, the choices, the budget axis."""
    return sorted({path.resolve(): path for root in RUN_ROOTS
                   for path in (artifacts_dir() / root / profile).glob("**/stage*/manifest.json")}.values())


def _name(path: Path) -> str:
    return str(path.parent.relative_to(artifacts_dir()))


def stage_files_match(profile: str) -> dict[str, str]:
    """Every finished stage of ``profile`` whose manifest is unreadable or whose files are missing or
    changed, with what is wrong."""
    return {f"{_name(path)} (files)": " ".join(found) for path in manifests(profile)
            if (found := integrity.problems(path.parent))}


def other_code(profile: str) -> dict[str, str]:
    """Every finished stage of ``profile`` trained by code other than this checkout's, and by which."""
    out = {}
    for path in manifests(profile):
        try:
            note = integrity.code_note(read_json(path))
        except ValueError:
            continue  # an unreadable manifest is reported by stage_files_match
        if "other code" in note:
            out[_name(path)] = note
    return out


def stage_metrics_match(profile: str) -> dict[str, bool]:
    """Every finished stage of ``profile``: its metrics recomputed from its predictions equal its manifest's."""
    out = {}
    for path in manifests(profile):
        try:
            manifest = read_json(path)
        except ValueError:
            out[_name(path)] = False
            continue
        rows = read_jsonl(path.parent / "predictions.jsonl")
        # the sets the stage scored (a stage may predate one of EVAL_SETS)
        predictions = {name: [r for r in rows if r["set"] == name] for name in EVAL_SETS if name in manifest["metrics"]}
        first_correct = None
        if manifest["previous_stages"]:
            first = path.parents[1] / f"stage{manifest['previous_stages'][0]}"
            if not (first / "predictions.jsonl").is_file():  # a shared first stage lives under cit
                first = path.parents[2] / "cit" / f"stage{manifest['previous_stages'][0]}"
            first_correct = {r["id"]: r["new_correct"] for r in read_jsonl(first / "predictions.jsonl")
                             if r["set"] in ("retention", "heldout")}
        params = manifest["params"]
        again = stage_metrics(predictions, first_correct, params["eval"]["bootstrap"], seed=manifest["run_seed"])
        out[str(path.parent.relative_to(artifacts_dir()))] = _close(json.loads(json.dumps(again)), manifest["metrics"])
    return out


def _overlay(base: dict, recorded: dict) -> dict:
    """``recorded`` over ``base``, key by key in nested mappings."""
    out = dict(base)
    for key, value in recorded.items():
        out[key] = _overlay(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def config_hashes_match(profile: str) -> dict[str, bool]:
    """Every finished stage of ``profile``: the config hash this code computes from what its manifest
    recorded equals the one it was saved under (so ``run_stage`` would reuse it)."""
    out, today = {}, to_dict(load_params(profile, "training"))
    for path in manifests(profile):
        try:
            m = read_json(path)
        except ValueError:
            out[f"{_name(path)} (config hash)"] = False
            continue
        # keys added to the schema after the stage ran take today's values: if one of them is part of
        # the identity, the recomputed hash differs, as run_stage's would
        params = build(TrainingParams, _overlay(today, m["params"]), path=str(path))
        identity = stage_identity(m["profile"], m["stream"], m["method"], m["stage"], m["backbone"], params,
                                  {"files": m["data_manifest"]})
        out[f"{path.parent.relative_to(artifacts_dir())} (config hash)"] = sha256_json(identity) == m["config_hash"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    args = parser.parse_args(argv)
    files = data_matches(args.profile)
    stages = stage_metrics_match(args.profile)
    hashes = config_hashes_match(args.profile)
    damaged = stage_files_match(args.profile)
    summary = {"numpy": np.__version__, "data_files_equal": sum(files.values()), "data_files": len(files),
               "stages_equal": sum(stages.values()), "stages": len(stages),
               "config_hashes_equal": sum(hashes.values()),
               "differ": [k for k, v in {**files, **stages, **hashes}.items() if not v] + list(damaged),
               "problems": damaged,
               "warnings": [f"{stage}: {note}" for stage, note in other_code(args.profile).items()]}
    print(json.dumps(summary, indent=2))
    return 0 if not summary["differ"] else 1


if __name__ == "__main__":
    sys.exit(main())
