"""The stage loop: one loop shared by every method, the same evaluation for all of them.

For stage N of a stream :func:`run_stage`

1. builds the model at the stage's start (the backbone, the shared CIT stages, then
   ``method.start_model``: the method's own stages 1..N-1),
2. answers the stage's evaluation and edited-knowledge questions with it (the "old" model),
3. lets the method learn the stage's training records (``method.train_stage``),
4. answers the evaluation, edited, stage-1 retention and general sets with the result ("new"),
5. scores them (ACC, KGR, KRR, general accuracy, with bootstrap intervals) and saves predictions,
   the method's state and, last, ``manifest.json`` under
   ``artifacts/runs/<profile>/<backbone>/seed<S>/<stream>/<method>/stage<N>/``.

A stage is finished exactly when its manifest exists. The manifest records the stage's identity
(a hash of everything its results depend on), the sha256 of every file it wrote and the code that
trained it (:mod:`mscl.pipeline.integrity`). Asking for a finished stage with other parameters is a
:class:`StaleRunError`; a finished stage whose files changed is a
:class:`~mscl.pipeline.integrity.StageIntegrityError`; both say which command retrains it.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import torch

from mscl import benchmark
from mscl.benchmark.probe import ensure_benchmark
from mscl.common import dist
from mscl.common.answers import is_correct
from mscl.common.io import read_jsonl, write_json, write_jsonl
from mscl.common.locks import stage_lock
from mscl.common.params import TrainingParams, load_params, to_dict
from mscl.common.paths import SHARED_METHOD, finished_stage_dir, is_finished
from mscl.common.provenance import code_version, library_versions
from mscl.common.timing import timed
from mscl.core.metrics import stage_metrics
from mscl.engine.compute import backbone_parameters, counting
from mscl.engine.generation import evaluation_answer_sets, resolve
from mscl.engine.models import (
    BackboneError,
    load_adapter,
    load_backbone,
    lora_target_weights,
    merge_lora,
    prepare_backbone,
    resolve_dtype,
    to_compute_dtype,
)
from mscl.engine.training import ContextLengthError
from mscl.methods import Method, StageContext, get_method
from mscl.pipeline import integrity
from mscl.pipeline.plan import StagePlan, check_devices, plan_stage, stage_identity, stage_seed

# the sets every stage answers (mscl.benchmark.stage_sets); "validation" is read by the choices alone
__all__ = ["EVAL_SETS", "StaleRunError", "StagePlan", "check_devices", "finished_model", "plan_stage", "run_stage",
           "run_stream", "stage_identity", "stage_seed"]

EVAL_SETS = ("eval", "edited", "validation", "retention", "heldout", "history", "general")


class StaleRunError(RuntimeError):
    """A finished stage exists but was produced with different parameters or data."""


def run_stage(profile: str, stream: str, method_name: str, stage: int, *, params: TrainingParams | None = None,
              backbone: str | None = None, runs_root: Path | None = None, data_dir: Path | None = None,
              verbose: bool = True) -> dict:
    """Run (or reuse) stage ``stage`` of ``stream`` for a method; returns the stage's manifest.

    Earlier stages that are not finished are run first. The first ``params.shared_stages`` stages
    are CIT's for every method (asking for one returns CIT's manifest); a method's later stages start
    from them. ``params`` defaults to ``params/<profile>/training.yaml``; ``backbone`` overrides its
    backbone. One process writes a stage at a time (:func:`mscl.common.locks.stage_lock`).
    """
    plan = plan_stage(profile, stream, method_name, stage, params, backbone, runs_root, data_dir, verbose)
    if stage in plan.shared and method_name != SHARED_METHOD:  # every method starts from CIT's stage(s)
        manifest = run_stage(profile, stream, SHARED_METHOD, stage, params=plan.params, backbone=plan.backbone,
                             runs_root=runs_root, data_dir=data_dir, verbose=verbose)
        return {**manifest, "method": method_name, "trained_by": SHARED_METHOD}
    if is_finished(plan.folder):
        return reuse_stage(plan)
    previous = [run_stage(profile, stream, method_name, s, params=plan.params, backbone=plan.backbone,
                          runs_root=runs_root, data_dir=data_dir, verbose=verbose) for s in plan.stages if s < stage]
    with stage_lock(plan.folder) if dist.is_main() else contextlib.nullcontext():
        if is_finished(plan.folder):  # another process finished it while this one waited
            return reuse_stage(plan)
        return train_stage(plan, previous)


def reuse_stage(plan: StagePlan) -> dict:
    """A finished stage's manifest, once its identity, its files and its predecessors' check out."""
    manifest = integrity.read_manifest(plan.folder, plan.retrain_command())
    if manifest["config_hash"] != plan.config_hash:
        raise StaleRunError(
            f"{plan.folder} was produced with other parameters, data or backbone than asked for now (config hash "
            f"{manifest['config_hash'][:12]} vs {plan.config_hash[:12]}); remove it and the stages that depend on it "
            f"with `{plan.retrain_command()}`, then run again")
    integrity.check_files(plan.folder, manifest, plan.retrain_command())
    for stage in plan.stages[:plan.stages.index(plan.stage)]:
        folder, retrain = plan.stage_dir(stage), plan.retrain_command(stage)
        integrity.check_files(folder, integrity.read_manifest(folder, retrain), retrain)
    plan.say(f"reused ({integrity.code_note(manifest)}): {plan.folder}")
    return manifest


def train_stage(plan: StagePlan, previous: list[dict]) -> dict:
    """Train one stage whose predecessors are finished: the algorithm box of the module docstring."""
    first_correct = first_stage_retention(plan, previous)  # read before training: a bad file stops here
    folder = prepare_folder(plan)
    sets = evaluation_sets(plan)
    plan.say(f"train {len(sets['train'])} records; " + ", ".join(f"{k} {len(sets[k])}" for k in EVAL_SETS))
    timings: dict[str, float] = {}
    with timed(timings, "load"):
        model, ctx = start_model(plan, sets, folder)
    with timed(timings, "eval_old"):
        old = old_answers(plan, model, ctx, sets, previous)
    with timed(timings, "train"), counting(model) as tokens:  # the method's own compute, evaluation aside
        parameters = backbone_parameters(model)
        model = plan.method.train_stage(model, ctx)
    ctx.info["compute"] = tokens.as_dict(parameters)
    with timed(timings, "eval_new"):
        new = evaluation_answer_sets(model, ctx.tokenizer, sets, list(EVAL_SETS), plan.params.eval, "new model",
                                     ctx.seed)
        predictions = prediction_rows(plan, sets, old, new)
    result = stage_metrics(predictions, first_correct, plan.params.eval.bootstrap, seed=plan.params.seed)
    manifest = write_stage(plan, folder, predictions, result, timings, ctx, model, previous)
    plan.say(f"trained in {timings['total']:.0f} s: ACC {result['eval'].get('acc', 0):.3f} "
             f"KGR {result['eval'].get('kgr', 0):.3f} general {result['general'].get('acc', 0):.3f}: {plan.folder}")
    return manifest


def old_answers(plan: StagePlan, model, ctx: StageContext, sets: dict[str, list],
                previous: list[dict]) -> dict[str, list[str]]:
    """The stage-start model's answers to the stage's evaluation, edited and validation questions
    (and, at the first stage, to the retention, held-out and general ones). Greedy answers the
    previous stage's finished model already gave to the same question are read from its
    predictions (that model is this stage's start model, :attr:`Method.start_is_previous_model`);
    only the others are asked."""
    names = ["eval", "edited", "validation"] + (["retention", "heldout", "general"]
                                                if plan.stage == plan.stages[0] else [])
    known = previous_answers(plan, previous)
    missing = {name: [r for r in sets[name] if r.question not in known] for name in names}
    asked = evaluation_answer_sets(model, ctx.tokenizer, missing, names, plan.params.eval, "old model", ctx.seed)
    answers = {r.question: a for name in names for r, a in zip(missing[name], asked[name])}
    return {name: [known.get(r.question, answers.get(r.question)) for r in sets[name]] for name in names}


def previous_answers(plan: StagePlan, previous: list[dict]) -> dict[str, str]:
    """Question -> the previous stage's finished model's greedy answer, when that model is this
    stage's start model; empty otherwise (the first stage, sampled answers, other methods)."""
    if not previous or plan.params.eval.mode != "greedy" or not plan.method.start_is_previous_model:
        return {}
    rows = read_jsonl(plan.stage_dir(previous[-1]["stage"]) / "predictions.jsonl")
    return {r["question"]: r["new_prediction"] for r in rows}


def first_stage_retention(plan: StagePlan, previous: list[dict]) -> dict[str, bool] | None:
    """Whether each retention item (held-out ones included) was right after the stream's first stage
    (None at the first stage); the earlier stages must be on this backbone."""
    for manifest in previous:
        if manifest["backbone"] != plan.backbone:  # adapters only fit the backbone they were trained on
            raise BackboneError(f"{plan.stage_dir(manifest['stage'])} holds a stage trained on backbone "
                                f"{manifest['backbone']!r}, not {plan.backbone!r}; its adapter cannot be applied")
    if not previous:
        return None
    rows = read_jsonl(plan.stage_dir(previous[0]["stage"]) / "predictions.jsonl")
    return {r["id"]: r["new_correct"] for r in rows if r["set"] in ("retention", "heldout")}


def prepare_folder(plan: StagePlan) -> Path:
    """The folder this process writes: a killed attempt's partial files removed, its caches kept
    only when they were made under this stage's identity (:func:`mscl.pipeline.integrity.keep_caches`).
    Under a launcher only process 0 writes the stage folder; the others write scratch copies."""
    if dist.is_main():
        prepare_backbone(plan.backbone)  # a first GGUF conversion happens once, before the others load it
        integrity.keep_caches(plan.folder, plan.config_hash, say=plan.say)
    dist.barrier()
    if dist.is_main():
        return plan.folder
    scratch = plan.folder / f"rank{dist.rank()}"
    scratch.mkdir(parents=True, exist_ok=True)
    for cache in plan.folder.iterdir():  # a restarted stage: the same caches as process 0
        if cache.is_file() and not cache.name.startswith("."):
            shutil.copy2(cache, scratch / cache.name)
    return scratch


def evaluation_sets(plan: StagePlan) -> dict[str, list]:
    """The stage's training records and its evaluation sets (each cut to ``eval.max_items``)."""
    raw = benchmark.stage_sets(plan.data_folder, plan.stream, plan.stage)
    limit = plan.params.eval.max_items
    sets = {name: raw[name] if limit <= 0 else raw[name][:limit] for name in EVAL_SETS}
    sets["train"] = raw["train"]
    return sets


def assemble_model(method: Method, backbone: str, params: TrainingParams, shared_dirs: list[Path], context):
    """``(model, ctx)``: a stage's start model. The backbone loads in fp32, the shared CIT stages'
    adapters are merged in order, ``method.start_model`` adds the method's own earlier stages, and the
    result is cast once to the compute dtype on this process's device. ``context(tokenizer,
    backbone_weights)`` builds the :class:`~mscl.methods.StageContext` the method sees."""
    base, tokenizer = load_backbone(backbone, seed=params.data_seed)  # tiny-random: one init for every seed
    positions = getattr(base.config, "max_position_embeddings", None)
    if positions is not None and params.train.max_length > positions:
        raise ContextLengthError(f"train.max_length={params.train.max_length} exceeds the context of backbone "
                                 f"{backbone!r} ({positions} positions); lower train.max_length")
    weights = lora_target_weights(base, params.train.lora.target_modules) if method.needs_backbone_weights() else None
    for folder in shared_dirs:
        base = merge_lora(load_adapter(base, folder / "adapter"))
    ctx = context(tokenizer, weights)
    model = to_compute_dtype(method.start_model(base, ctx), resolve_dtype(params.train.dtype, dist.device()))
    return model.to(dist.device()), ctx


def start_model(plan: StagePlan, sets: dict[str, list], folder: Path):
    """The model at the start of ``plan``'s stage and the context its method trains in."""
    earlier = [s for s in plan.stages if s < plan.stage]
    records = benchmark.read_stream(plan.data_folder, plan.stream)
    answers = benchmark.earlier_answers(records)

    def context(tokenizer, backbone_weights) -> StageContext:
        return StageContext(
            stream=plan.stream, stage=plan.stage, stage_dir=folder, params=plan.params, tokenizer=tokenizer,
            previous_dirs=[plan.stage_dir(s) for s in earlier if s not in plan.shared], sets=sets,
            seed=stage_seed(plan.params.seed, plan.stage), backbone_weights=backbone_weights,
            earlier_answers={r.fact_id: answers.get((r.fact_id, r.stage), []) for r in sets["train"]},
            earlier_train=sorted((r for r in records if r.stage < plan.stage and r.split == "train"),
                                 key=lambda r: r.stage))

    shared_dirs = [plan.stage_dir(s) for s in earlier if s in plan.shared]
    return assemble_model(plan.method, plan.backbone, plan.params, shared_dirs, context)


def prediction_rows(plan: StagePlan, sets: dict[str, list], old: dict[str, list[str]],
                    new: dict[str, list[str]]) -> dict[str, list[dict]]:
    """One saved row per evaluated record: the question, the gold and earlier answers, and both
    models' answers."""
    earlier = benchmark.earlier_answers(benchmark.read_stream(plan.data_folder, plan.stream))
    return {name: [{"set": name, "id": r.id, "fact_id": r.fact_id, "origin_stage": r.stage, "domain": r.domain,
                    "question": r.question, "answer": r.answer, "previous_answer": r.previous_answer,
                    "earlier_answers": earlier.get((r.fact_id, r.stage), []),
                    "old_prediction": old[name][i] if name in old else None,
                    "new_prediction": answer, "new_correct": is_correct(answer, r.answer)}
                   for i, (r, answer) in enumerate(zip(sets[name], new[name]))]
            for name in EVAL_SETS}


def write_stage(plan: StagePlan, folder: Path, predictions: dict, result: dict, timings: dict, ctx: StageContext,
                model, previous: list[dict]) -> dict:
    """Save the predictions and the training log, then, last, the manifest (process 0's); returns it."""
    write_jsonl(folder / "predictions.jsonl", [row for name in EVAL_SETS for row in predictions[name]])
    write_json(folder / "train_log.json", ctx.info.pop("log_history", []))
    timings["total"] = sum(timings.values())
    manifest = {
        "profile": plan.profile, "stream": plan.stream, "method": plan.method_name, "stage": plan.stage,
        "backbone": plan.backbone, "seed": ctx.seed, "run_seed": plan.params.seed, "config_hash": plan.config_hash,
        "params": to_dict(plan.params), "metrics": result, "timings_s": timings, "versions": library_versions(),
        "data_manifest": plan.identity["data"], "previous_stages": [p["stage"] for p in previous],
        "method_info": ctx.info, "device": str(dist.device()), "precision": plan.identity["precision"],
        "threads": torch.get_num_threads(), "processes": dist.world_size(), "generation_backend": resolve(model),
        "code": code_version(), "files": integrity.file_hashes(folder), "compute": ctx.info.pop("compute", None),
    }
    write_json(folder / "manifest.json", manifest)
    dist.barrier()  # every process is done with the stage before any goes on to the next
    if dist.world_size() > 1 and dist.is_main():
        for scratch in plan.folder.glob("rank[0-9]*"):
            shutil.rmtree(scratch)
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
    """``(model, tokenizer)``: ``method_name``'s model after its finished stage ``stage``, rebuilt as
    the next stage's start would be (:func:`assemble_model`), to be asked again."""
    backbone = backbone or params.backbone
    stages = benchmark.stream_stages(ensure_benchmark(profile, params.data_seed), stream)
    shared = stages[:params.shared_stages]
    dirs = {s: finished_stage_dir(profile, backbone, stream, method_name, s, runs_root, seed=params.seed)
            for s in stages if s <= stage}

    def context(tokenizer, backbone_weights) -> StageContext:
        return StageContext(stream=stream, stage=stage + 1, stage_dir=dirs[stage], params=params, tokenizer=tokenizer,
                            previous_dirs=[d for s, d in dirs.items() if s not in shared], sets={}, seed=0,
                            backbone_weights=backbone_weights)

    model, ctx = assemble_model(get_method(method_name, params), backbone, params,
                                [d for s, d in dirs.items() if s in shared], context)
    return model, ctx.tokenizer
