"""The stage loop: one loop shared by every method, the same evaluation for all of them.

For stage N of a stream the loop

1. builds the model at the stage's start (``method.start_model``: the backbone plus stages 1..N-1),
2. answers the stage's evaluation and edited-knowledge questions with it (the "old" model),
3. lets the method learn the stage's training records (``method.train_stage``),
4. answers the evaluation, edited, stage-1 retention and general sets with the result ("new"),
5. computes ACC, KGR, KRR and general accuracy with bootstrap confidence intervals, and saves
   predictions, metrics, the method's state and, last, ``manifest.json`` under
   ``artifacts/runs/<profile>/<backbone>/seed<S>/<stream>/<method>/stage<N>/`` (``S``: the training
   seed; the notebooks run every seed in ``training.yaml``'s ``seeds`` and report the mean).

A stage is finished exactly when its manifest exists (it is written atomically, after everything
else), so a rerun skips finished stages and a killed stage restarts cleanly. The manifest records
a hash of everything the stage depends on; asking for a finished stage with other parameters is an
error instead of a silent reuse of stale results.
"""
from __future__ import annotations

import platform
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from mscl import benchmark as benchmark
from mscl.common import dist
from mscl.common.io import read_json, read_jsonl, sha256_json, write_json, write_jsonl
from mscl.common.params import EVAL_MODES, TrainingParams, load_params, to_dict
from mscl.core import metrics
from mscl.engine import vllm_backend
from mscl.engine.generation import answer_questions, resolve, sample_responses
from mscl.engine.models import (
    BackboneError,
    artifacts_dir,
    load_adapter,
    load_backbone,
    lora_target_weights,
    merge_lora,
    prepare_backbone,
    resolve_dtype,
    to_compute_dtype,
)
from mscl.engine.training import ContextLengthError
from mscl.methods import StageContext, get_method

EVAL_SETS = ("eval", "edited", "retention", "history", "general")
SHARED_METHOD = "cit"  # trains the stages every method shares (training.yaml: shared_stages)


class StaleRunError(RuntimeError):
    """A finished stage exists but was produced with different parameters or data."""


def backbone_slug(backbone: str) -> str:
    """A folder name for a backbone name, id or path."""
    return backbone.strip("/").replace("/", "__")


def run_dir(profile: str, backbone: str, stream: str, method: str, stage: int, root: Path | None = None, *,
            seed: int) -> Path:
    """``artifacts/runs/<profile>/<backbone>/seed<S>/<stream>/<method>/stage<N>`` (``S``: training seed)."""
    root = root or artifacts_dir() / "runs"
    return root / profile / backbone_slug(backbone) / f"seed{seed}" / stream / method / f"stage{stage}"


def is_finished(folder: Path) -> bool:
    return (folder / "manifest.json").is_file()


def finished_stage_dir(profile: str, backbone: str, stream: str, method: str, stage: int,
                       runs_root: Path | None = None, *, seed: int) -> Path:
    """The folder holding ``method``'s finished stage for training seed ``seed`` (CIT's for a stage
    every method shares)."""
    own = run_dir(profile, backbone, stream, method, stage, runs_root, seed=seed)
    if (own / "manifest.json").is_file():
        return own
    shared = run_dir(profile, backbone, stream, SHARED_METHOD, stage, runs_root, seed=seed)
    if (shared / "manifest.json").is_file():
        params = read_json(shared / "manifest.json")["params"]
        if stage <= params.get("shared_stages", 0):
            return shared
    raise FileNotFoundError(f"no finished stage at {own}: run `python -m mscl run --profile {profile} "
                            f"--stream {stream} --method {method} --stage {stage} --seed {seed}` first")


def check_devices(profile: str, params: TrainingParams | None = None) -> None:
    """:func:`mscl.common.dist.check_devices` for ``profile``'s ``training.yaml`` (``require_cuda``)."""
    params = params or load_params(profile, "training")
    dist.check_devices(params.require_cuda, f"params/{profile}/training.yaml")


def ensure_benchmark(profile: str, seed: int, data_dir: Path | None = None) -> Path:
    """The benchmark folder of ``profile``, built first if it is not there (or not complete).

    When the profile asks for facts the backbone already knows (``known_share`` in
    ``01_data_build.yaml``), the profile's backbone is asked :func:`mscl.benchmark.probe_candidates`
    first (:func:`known_facts`)."""
    folder = Path(data_dir) if data_dir else artifacts_dir() / "data" / profile
    if not (folder / "manifest.json").is_file():
        sizes = load_params(profile, "01_data_build").sizes
        known, known_by = None, None
        if sizes.known_share > 0:
            check_devices(profile)
            known_by = load_params(profile, "training").backbone
            known = known_facts(known_by, benchmark.probe_candidates(sizes), load_params(profile, "training"))
        benchmark.build_benchmark(profile, seed, folder, known=known, known_by=known_by)
    manifest = read_json(folder / "manifest.json")
    if manifest.get("seed") != seed:
        raise ValueError(f"{folder} holds the benchmark built with seed {manifest.get('seed')}, but data_seed is "
                         f"{seed}; remove {folder} (and the runs trained on it) to rebuild it")
    probed_by = manifest.get("known", {}).get("backbone")
    if probed_by and probed_by != load_params(profile, "training").backbone:
        raise ValueError(f"{folder} holds a benchmark whose known facts backbone {probed_by!r} was asked for, but "
                         f"params/{profile}/training.yaml names {load_params(profile, 'training').backbone!r}; "
                         f"remove {folder} (and the runs trained on it) to rebuild it")
    return folder


# a fact counts as known when the backbone answers at least this share of its wordings
KNOWN_WORDINGS = 2 / 3


def known_facts(backbone: str, facts: list, params: TrainingParams) -> set[str]:
    """The ids of ``facts`` that ``backbone`` answers before any training: greedy answers (so the
    probe is deterministic whatever ``eval.mode``) correct on at least ``KNOWN_WORDINGS`` of the
    fact's wordings."""
    model, tokenizer = load_backbone(backbone, seed=params.data_seed,
                                   dtype=resolve_dtype(params.train.dtype, _device()))
    model = model.to(_device())
    asked = [(f, t.format(label=f.label)) for f in facts for t in benchmark.relation_of(f.fact_id).templates]
    answers = _answers(model, tokenizer, [q for _, q in asked], params, "probe: facts the backbone knows",
                       mode="greedy")
    right: dict[str, list[bool]] = {}
    for (f, _), a in zip(asked, answers):
        right.setdefault(f.fact_id, []).append(metrics.is_correct(a, f.answer))
    return {fact_id for fact_id, flags in right.items() if np.mean(flags) >= KNOWN_WORDINGS - 1e-9}


def library_versions() -> dict:
    import peft
    import transformers
    import trl

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "trl": trl.__version__,
            "numpy": np.__version__}


def _limit(records: list, n: int) -> list:
    return records if n <= 0 else records[:n]


def stage_seed(training_seed: int, stage: int) -> int:
    """The seed of everything random in one stage (sampling, rewrites, the trainer)."""
    return training_seed * 1000 + stage


def device() -> torch.device:
    """Where stages compute: this process's GPU, or the CPU (:func:`_device`)."""
    return _device()


def _device() -> torch.device:
    """This process's GPU (``LOCAL_RANK`` under a launcher), or the CPU. On a GPU, fp32 matmuls may
    use TF32 (bf16 is the default precision there; ``train.dtype: float32`` asks for fp32)."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda", dist.local_rank())
    return torch.device("cpu")


# The authors' released evaluation script (eval.mode "authors"): one answer sampled at temperature
# 0.8 and top-p 0.95, up to 256 new tokens, from a bare user turn (no system prompt).
AUTHORS_EVAL = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256}


def _answers(model, tokenizer, questions: list[str], params: TrainingParams, desc: str, mode: str | None = None,
             seed: int = 0) -> list[str]:
    """One answer per question: greedy under the system prompt (``eval.mode: greedy``), or sampled
    as the authors' script does (``authors``, :data:`AUTHORS_EVAL`, seeded)."""
    if (mode or params.eval.mode) == "authors":
        return [o[0] for o in sample_responses(model, tokenizer, questions, k=1, **AUTHORS_EVAL,
                                               batch_size=params.eval.batch_size, seed=seed, desc=desc, system=None)]
    return answer_questions(model, tokenizer, questions,
                            max_new_tokens=params.eval.max_new_tokens, batch_size=params.eval.batch_size,
                            desc=desc)


def _answer_sets(model, tokenizer, sets: dict[str, list], names: list[str], params: TrainingParams,
                 desc: str, seed: int = 0) -> dict[str, list[str]]:
    """Answers to the questions of each named set (:func:`_answers`), every distinct question asked
    once (the edited and retention sets are parts of the evaluation set). Under a launcher greedy
    evaluation is split across the processes and gathered on each (:func:`mscl.common.dist.shard`)."""
    questions = list(dict.fromkeys(r.question for name in names for r in sets[name]))
    if params.eval.mode == "greedy":  # greedy answers do not depend on the batch: split over the processes
        answered = dist.gather_shards(questions, _answers(model, tokenizer, dist.shard(questions), params, desc))
    else:  # sampled ones are seeded by batch: every process asks all, as one would
        answered = _answers(model, tokenizer, questions, params, desc, seed=seed)
    answers = dict(zip(questions, answered))
    return {name: [answers[r.question] for r in sets[name]] for name in names}


def _fact_clusters(rows: list[dict]) -> list[str] | None:
    """The bootstrap's units: a fact with all its questions, when every fact has the same number of
    them (every built stage; a cluster bootstrap needs equal sizes); single questions otherwise (an
    ``eval.max_items`` cut can split a fact)."""
    sizes = Counter(r["fact_id"] for r in rows)
    return [r["fact_id"] for r in rows] if len(set(sizes.values())) == 1 else None


def stage_metrics(predictions: dict[str, list[dict]], first_correct: dict[str, bool] | None,
                  n_resamples: int, seed: int) -> dict:
    """ACC/KGR of the stage's questions, edited-knowledge, retention (KRR) and general metrics.

    ``first_correct`` maps retention item ids to whether they were right after stage 1
    (None at stage 1, where it is this stage's own result).
    """
    out: dict = {}
    for name, rows in predictions.items():
        if not rows:
            out[name] = {"n": 0}
            continue
        answers = [r["answer"] for r in rows]
        new = [r["new_prediction"] for r in rows]
        facts = _fact_clusters(rows)
        entry = {"n": len(rows)}
        entry["acc"] = metrics.accuracy(new, answers)
        entry["acc_lo"], entry["acc_hi"] = metrics.accuracy_ci(new, answers, n_resamples, seed=seed, clusters=facts)
        if rows[0].get("old_prediction") is not None:
            old = [r["old_prediction"] for r in rows]
            entry["acc_old"] = metrics.accuracy(old, answers)
            entry["kgr"] = metrics.knowledge_gain_ratio(old, new, answers)
            entry["kgr_lo"], entry["kgr_hi"] = metrics.knowledge_gain_ratio_ci(old, new, answers, n_resamples,
                                                                              seed=seed, clusters=facts)
        sources = [metrics.answer_source(r["new_prediction"], r["answer"], r.get("earlier_answers", []))
                   for r in rows]
        for source in metrics.ANSWER_SOURCES:  # current, stale (an answer an edit replaced), neither
            entry[f"source_{source}"] = sources.count(source) / len(rows)
        if name == "edited":
            # still giving the answer the edit replaced: the conflict the paper is about
            entry["acc_previous"] = float(np.mean([metrics.is_correct(r["new_prediction"], r["previous_answer"])
                                                   for r in rows]))
        if name == "retention":
            now = [bool(r["new_correct"]) for r in rows]
            first = now if first_correct is None else [bool(first_correct.get(r["id"], False)) for r in rows]
            entry["krr"] = metrics.knowledge_retention_rate(first, now)
            entry["krr_lo"], entry["krr_hi"] = metrics.knowledge_retention_rate_ci(first, now, n_resamples,
                                                                                  seed=seed, clusters=facts)
        out[name] = entry
    return out


def stage_identity(profile: str, stream: str, method_name: str, stage: int, backbone: str, params,
                   data_manifest: dict) -> dict:
    """What a stage's results depend on, hashed into its manifest's ``config_hash``: values only (the
    params the method reads, the data files' hashes, the precision and generation backend resolved
    here), never a module path, so moving code never invalidates a finished stage."""
    return {"profile": profile, "stream": stream, "method": method_name, "stage": stage,
            "backbone": backbone, "params": get_method(method_name, params).identity(),
            "data": data_manifest.get("files", {}),
            "precision": str(resolve_dtype(params.train.dtype, _device())).removeprefix("torch."),
            "generation": vllm_backend.expected_backend()}


def run_stage(profile: str, stream: str, method_name: str, stage: int, *, params: TrainingParams | None = None,
              backbone: str | None = None, runs_root: Path | None = None, data_dir: Path | None = None,
              verbose: bool = True) -> dict:
    """Run (or reuse) stage ``stage`` of ``stream`` for a method; returns the stage's manifest.

    Earlier stages that are not finished are run first. The first ``params.shared_stages`` stages
    are CIT's for every method (asking for one returns CIT's manifest); a method's later stages start
    from them. ``params`` defaults to ``params/<profile>/training.yaml``; ``backbone`` overrides its
    backbone.
    """
    params = params or load_params(profile, "training")
    check_devices(profile, params)
    backbone = backbone or params.backbone
    method = get_method(method_name, params)
    data_folder = ensure_benchmark(profile, params.data_seed, data_dir)
    stages = benchmark.stream_stages(data_folder, stream)
    if stage not in stages:
        raise ValueError(f"stream {stream!r} of profile {profile!r} has stages {stages}, not {stage}")
    shared = stages[:params.shared_stages]
    if stage in shared and method_name != SHARED_METHOD:
        # the paper's setting: every method starts from the same CIT-trained first stage(s)
        manifest = run_stage(profile, stream, SHARED_METHOD, stage, params=params, backbone=backbone,
                             runs_root=runs_root, data_dir=data_dir, verbose=verbose)
        return {**manifest, "method": method_name, "trained_by": SHARED_METHOD}
    folder = run_dir(profile, backbone, stream, method_name, stage, runs_root, seed=params.seed)
    data_manifest = read_json(data_folder / "manifest.json")
    identity = stage_identity(profile, stream, method_name, stage, backbone, params, data_manifest)
    config_hash = sha256_json(identity)
    if is_finished(folder):
        manifest = read_json(folder / "manifest.json")
        if manifest["config_hash"] != config_hash:
            raise StaleRunError(
                f"{folder} was produced with other parameters, data or backbone than asked for now "
                f"(config hash {manifest['config_hash'][:12]} vs {config_hash[:12]}); remove it with "
                f"`make clean-runs PROFILE={profile}` or run the new configuration under another profile"
            )
        return manifest
    previous = [run_stage(profile, stream, method_name, s, params=params, backbone=backbone, runs_root=runs_root,
                          data_dir=data_dir, verbose=verbose) for s in stages if s < stage]
    previous_dirs = [run_dir(profile, backbone, stream, m.get("trained_by", m["method"]), m["stage"], runs_root,
                             seed=params.seed) for m in previous]
    shared_dirs = [d for m, d in zip(previous, previous_dirs) if m["stage"] in shared]
    for earlier, prev_dir in zip(previous, previous_dirs):
        if earlier["backbone"] != backbone:  # adapters only fit the backbone they were trained on
            raise BackboneError(f"{prev_dir} holds a stage trained on backbone {earlier['backbone']!r}, "
                                f"not {backbone!r}; its adapter cannot be applied to this backbone")
    # a killed attempt leaves partial files; only caches written atomically (preference.jsonl) survive
    if dist.is_main():
        prepare_backbone(backbone)  # a first GGUF conversion happens once, before the others load it
        if folder.exists():
            for child in folder.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                elif ".tmp" in child.name:
                    child.unlink()
        folder.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    final_folder = folder
    if not dist.is_main():  # under a launcher, only process 0 writes the stage folder (mscl.common.dist)
        folder = final_folder / f"rank{dist.rank()}"
        folder.mkdir(parents=True, exist_ok=True)
        for cache in final_folder.iterdir():  # a restarted stage: the same caches as process 0
            if cache.is_file():
                shutil.copy2(cache, folder / cache.name)

    seed = stage_seed(params.seed, stage)
    raw_sets = benchmark.stage_sets(data_folder, stream, stage)
    sets = {name: _limit(raw_sets[name], params.eval.max_items) for name in EVAL_SETS}
    sets["train"] = raw_sets["train"]
    timings: dict[str, float] = {}
    if verbose and dist.is_main():
        print(f"[{method_name} | {stream} stage {stage}] train {len(sets['train'])} records; "
              + ", ".join(f"{k} {len(sets[k])}" for k in EVAL_SETS))

    tic = time.perf_counter()
    # fp32 first: the earlier stages are merged in fp32, then the model is cast once (to_compute_dtype)
    base, tokenizer = load_backbone(backbone, seed=params.data_seed)  # tiny-random: one init for every seed
    context = getattr(base.config, "max_position_embeddings", None)
    if context is not None and params.train.max_length > context:
        raise ContextLengthError(f"train.max_length={params.train.max_length} exceeds the context of backbone "
                                 f"{backbone!r} ({context} positions); lower train.max_length")
    backbone_weights = (lora_target_weights(base, params.train.lora.target_modules)
                        if method.needs_backbone_weights() else None)
    for shared_dir in shared_dirs:  # the shared CIT stages are plain LoRA adapters merged in order
        base = merge_lora(load_adapter(base, shared_dir / "adapter"))
    own_dirs = [d for d in previous_dirs if d not in shared_dirs]
    records = benchmark.read_stream(data_folder, stream)
    earlier = benchmark.earlier_answers(records)
    ctx = StageContext(stream=stream, stage=stage, stage_dir=folder, previous_dirs=own_dirs, params=params,
                       tokenizer=tokenizer, sets=sets, seed=seed, backbone_weights=backbone_weights,
                       earlier_answers={r.fact_id: earlier.get((r.fact_id, r.stage), []) for r in sets["train"]},
                       earlier_train=sorted((r for r in records if r.stage < stage and r.split == "train"),
                                            key=lambda r: r.stage))
    model = to_compute_dtype(method.start_model(base, ctx), resolve_dtype(params.train.dtype, _device()))
    model = model.to(_device())
    timings["load"] = time.perf_counter() - tic

    tic = time.perf_counter()
    old_sets = ["eval", "edited"] + (["retention", "general"] if stage == stages[0] else [])
    old = _answer_sets(model, tokenizer, sets, old_sets, params, "old model", seed=seed)
    timings["eval_old"] = time.perf_counter() - tic

    tic = time.perf_counter()
    model = method.train_stage(model, ctx)
    timings["train"] = time.perf_counter() - tic

    tic = time.perf_counter()
    predictions: dict[str, list[dict]] = {}
    new_answers = _answer_sets(model, tokenizer, sets, list(EVAL_SETS), params, "new model", seed=seed)
    for name in EVAL_SETS:
        rows = []
        for i, (r, pred) in enumerate(zip(sets[name], new_answers[name])):
            rows.append({"set": name, "id": r.id, "fact_id": r.fact_id, "origin_stage": r.stage, "domain": r.domain,
                         "question": r.question, "answer": r.answer, "previous_answer": r.previous_answer,
                         "earlier_answers": earlier.get((r.fact_id, r.stage), []),
                         "old_prediction": old[name][i] if name in old else None,
                         "new_prediction": pred, "new_correct": metrics.is_correct(pred, r.answer)})
        predictions[name] = rows
    timings["eval_new"] = time.perf_counter() - tic

    first_correct = None
    if previous_dirs:
        first_rows = read_jsonl(previous_dirs[0] / "predictions.jsonl")
        first_correct = {r["id"]: r["new_correct"] for r in first_rows if r["set"] == "retention"}
    result = stage_metrics(predictions, first_correct, params.eval.bootstrap, seed=params.seed)
    write_jsonl(folder / "predictions.jsonl", [row for name in EVAL_SETS for row in predictions[name]])
    log_history = ctx.info.pop("log_history", [])
    write_json(folder / "train_log.json", log_history)
    timings["total"] = sum(timings.values())
    manifest = {
        "profile": profile, "stream": stream, "method": method_name, "stage": stage, "backbone": backbone,
        "seed": seed, "run_seed": params.seed, "config_hash": config_hash, "params": to_dict(params), "metrics": result,
        "timings_s": timings, "versions": library_versions(), "data_manifest": data_manifest.get("files", {}),
        "previous_stages": [p["stage"] for p in previous], "method_info": ctx.info,
        "device": str(_device()), "precision": identity["precision"], "threads": torch.get_num_threads(),
        "processes": dist.world_size(),
        "generation_backend": resolve(model),
    }
    write_json(folder / "manifest.json", manifest)
    dist.barrier()  # every process is done with the stage before any goes on to the next
    if dist.world_size() > 1 and dist.is_main():
        for scratch in final_folder.glob("rank[0-9]*"):
            shutil.rmtree(scratch)
    if verbose and dist.is_main():
        ev = result["eval"]
        print(f"[{method_name} | {stream} stage {stage}] ACC {ev.get('acc', 0):.3f} KGR {ev.get('kgr', 0):.3f} "
              f"general {result['general'].get('acc', 0):.3f} in {timings['total']:.0f}s")
    return manifest


def run_stream(profile: str, stream: str, method_name: str, *, seeds: list[int] | None = None, **kwargs) -> list[dict]:
    """Every stage of ``stream`` for a method, in order, for every training seed in ``seeds`` (default:
    ``params.seeds``), seed by seed (finished stages are reused)."""
    params = kwargs.pop("params", None) or load_params(profile, "training")
    folder = ensure_benchmark(profile, params.data_seed, kwargs.get("data_dir"))
    return [run_stage(profile, stream, method_name, s, params=params.with_seed(seed), **kwargs)
            for seed in (seeds if seeds is not None else params.seeds)
            for s in benchmark.stream_stages(folder, stream)]


def finished_model(profile: str, stream: str, method_name: str, stage: int, *, params: TrainingParams,
                   backbone: str | None = None, runs_root: Path | None = None):
    """``(model, tokenizer)``: ``method_name``'s model after its finished stage ``stage`` (the
    backbone, the shared stages merged, then the method's own stages up to ``stage``), rebuilt as the
    next stage's start would be, to be asked again."""
    backbone = backbone or params.backbone
    method = get_method(method_name, params)
    stages = benchmark.stream_stages(ensure_benchmark(profile, params.data_seed), stream)
    shared = stages[:params.shared_stages]
    dirs = {s: finished_stage_dir(profile, backbone, stream, method_name, s, runs_root, seed=params.seed)
            for s in stages if s <= stage}
    base, tokenizer = load_backbone(backbone, seed=params.data_seed)  # fp32: merges in fp32, then one cast
    for s in shared:
        if s in dirs:
            base = merge_lora(load_adapter(base, dirs[s] / "adapter"))
    ctx = StageContext(stream=stream, stage=stage + 1, stage_dir=dirs[stage], params=params, tokenizer=tokenizer,
                       previous_dirs=[d for s, d in dirs.items() if s not in shared], sets={}, seed=0)
    model = to_compute_dtype(method.start_model(base, ctx), resolve_dtype(params.train.dtype, _device()))
    return model.to(_device()), tokenizer


def mode_predictions(profile: str, stream: str, method: str, stage: int, mode: str, *, params: TrainingParams,
                     backbone: str | None = None, runs_root: Path | None = None) -> list[dict]:
    """The evaluation rows of ``method``'s finished ``stage`` (training seed ``params.seed``) under
    evaluation mode ``mode``: the saved predictions for the profile's own mode, otherwise the rebuilt
    model (:func:`finished_model`) asked the stage's evaluation questions again, cached in the stage
    folder as ``predictions_<mode>.jsonl`` (``python -m mscl evaluate`` fills it)."""
    if mode not in EVAL_MODES:
        raise ValueError(f"unknown evaluation mode {mode!r}; known: {', '.join(EVAL_MODES)}")
    backbone, stage = backbone or params.backbone, int(stage)
    folder = finished_stage_dir(profile, backbone, stream, method, stage, runs_root, seed=params.seed)
    if mode == params.eval.mode:
        return [{"id": r["id"], "answer": r["answer"], "prediction": r["new_prediction"], "correct": r["new_correct"]}
                for r in read_jsonl(folder / "predictions.jsonl") if r["set"] == "eval"]
    cache = folder / f"predictions_{mode}.jsonl"
    if not cache.is_file():
        records = benchmark.stage_sets(ensure_benchmark(profile, params.data_seed), stream, stage)["eval"]
        records = _limit(records, params.eval.max_items)
        model, tokenizer = finished_model(profile, stream, method, stage, params=params, backbone=backbone,
                                          runs_root=runs_root)
        answers = _answers(model, tokenizer, [r.question for r in records], params,
                           f"{method} seed {params.seed}: {mode} evaluation", mode=mode,
                           seed=stage_seed(params.seed, stage))
        write_jsonl(cache, [{"id": r.id, "answer": r.answer, "prediction": a,
                             "correct": metrics.is_correct(a, r.answer)} for r, a in zip(records, answers)])
    return read_jsonl(cache)


def evaluation_modes(profile: str, stream: str, methods: list[str], stage: int, *, params: TrainingParams,
                     backbone: str | None = None, runs_root: Path | None = None):
    """ACC (%) of each method's finished ``stage`` under both evaluation modes, per training seed
    (:func:`mode_predictions`)."""
    import pandas as pd

    rows = []
    for method in methods:
        for seed in params.seeds:
            for mode in EVAL_MODES:
                predictions = mode_predictions(profile, stream, method, stage, mode, params=params.with_seed(seed),
                                               backbone=backbone, runs_root=runs_root)
                rows.append({"method": method, "seed": seed, "mode": mode,
                             "ACC": 100 * float(np.mean([bool(r["correct"]) for r in predictions]))})
    return pd.DataFrame(rows)


METRICS = ("ACC", "KGR", "ACC_edited", "previous_answer_edited", "KRR", "ACC_general", "current", "stale", "neither")


def results_table(manifests: list[dict], per_seed: bool = False):
    """One row per (method, stage) with the paper's metrics in percent and the stage's wall time;
    ``trained_by`` names the method that trained the stage (CIT for a shared stage).

    Manifests of several training seeds are averaged (:func:`aggregate_seeds`) unless ``per_seed``,
    which keeps one row per seed with a ``seed`` column.
    """
    import pandas as pd

    rows = []
    for m in manifests:
        r = m["metrics"]
        rows.append({
            "method": m["method"], "stream": m["stream"], "stage": m["stage"], "backbone": m["backbone"],
            "trained_by": m.get("trained_by", m["method"]),
            "ACC": 100 * r["eval"].get("acc", float("nan")), "KGR": 100 * r["eval"].get("kgr", float("nan")),
            "ACC_edited": 100 * r["edited"].get("acc", float("nan")),
            "previous_answer_edited": 100 * r["edited"].get("acc_previous", float("nan")),
            "KRR": 100 * r["retention"].get("krr", float("nan")),
            "KRR_lo": 100 * r["retention"].get("krr_lo", float("nan")),
            "KRR_hi": 100 * r["retention"].get("krr_hi", float("nan")),
            "ACC_general": 100 * r["general"].get("acc", float("nan")),
            # where the stage's evaluation answers come from (mscl.core.metrics.answer_source)
            **{source: 100 * r["eval"].get(f"source_{source}", float("nan")) for source in metrics.ANSWER_SOURCES},
            "wall_s": m["timings_s"]["total"],
            "seed": m.get("run_seed", m["params"]["seed"]),
        })
    table = pd.DataFrame(rows)
    if per_seed or table.empty:
        return table
    if table["seed"].nunique() > 1:
        return aggregate_seeds(table)
    return table.drop(columns="seed")


def aggregate_seeds(per_seed):
    """Mean over training seeds of each (backbone, stream, method, stage), in first-seen order.

    ``<metric>_sd``: the across-seed standard deviation (ddof 1); ``KRR_lo``/``KRR_hi``: a 95%
    t-interval of the mean KRR across seeds (with one seed a row's item-bootstrap interval is
    kept instead); ``wall_s``: the mean stage time; ``seeds``: how many seeds the row averages.
    """
    import pandas as pd

    keys = ["method", "stream", "stage", "backbone", "trained_by"]
    rows = []
    for key, group in per_seed.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        n = len(group)
        for metric in METRICS:
            row[metric] = group[metric].mean()
            row[f"{metric}_sd"] = group[metric].std(ddof=1) if n > 1 else float("nan")
        if n > 1:
            half = metrics.t_quantile_975(n - 1) * row["KRR_sd"] / n ** 0.5
            row["KRR_lo"], row["KRR_hi"] = row["KRR"] - half, row["KRR"] + half
        else:
            row["KRR_lo"], row["KRR_hi"] = group["KRR_lo"].iloc[0], group["KRR_hi"].iloc[0]
        row["wall_s"] = group["wall_s"].mean()
        row["seeds"] = n
        rows.append(row)
    return pd.DataFrame(rows)
