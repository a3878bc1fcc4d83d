"""``make gpu-check`` (``python -m mscl.perf.gpu_check``): the GPU path end to end, in minutes, offline.

On a machine with a CUDA GPU and no network it checks, and writes to ``reports/gpu_check.json``:

1. **The device**: its name and memory, torch and its CUDA build, the precision ``train.dtype: auto``
   resolves to.
2. **The stage loop**: every main-table method and PBL through :func:`mscl.pipeline.stages.run_stage` with
   the gpu profile's ``training.yaml`` (its first training seed), on a slice of the gpu benchmark
   (the first ``--facts`` facts of the domain-independent base set, stages 1 and 2), under a scratch
   artifacts folder; per method the stage's phase timings and the peak GPU memory. The backbone is
   the gpu profile's when it loads; when it cannot be brought (no network, little room), SmolLM2's
   real config and tokenizer with seeded random weights, and the report says so.
3. **An 8B-shaped model**: Llama-3-8B's widths (4096 hidden, 14336 MLP, 32 heads, 8 KV heads, a
   128,256 vocabulary) with ``--layers`` random layers: one LoRA training step and a batched greedy
   decode in fp32, fp32 with TF32 and bf16, with training and generation tokens per second and the
   peak memory of each.

On a CPU it says there is no GPU and exits with status 2. The figures are the machine's, measured
in the run; nothing is typed in.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

from mscl.common.paths import artifacts_dir, reports_dir

MAIN_METHODS = ("cit", "pbl", "mocl", "flearning", "ours", "cit+matched", "replay", "dpo", "osf")
LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                 vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0)


def no_gpu_message() -> str:
    """Why the check cannot run here, printed before it exits with status 2."""
    return (f"no GPU: torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees none "
            "(torch.cuda.is_available() is False); make gpu-check runs on a machine with a CUDA GPU")


def device_info() -> dict:
    """The first CUDA device: name, memory, torch and CUDA versions and the precision ``auto`` resolves to."""
    from mscl.engine.models import resolve_dtype

    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "devices": torch.cuda.device_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "auto_dtype": str(resolve_dtype("auto", "cuda")).removeprefix("torch."),
            "bf16_supported": torch.cuda.is_bf16_supported()}


@contextlib.contextmanager
def _peak_memory():
    """Yields a dict that holds the peak GPU memory (GiB) of the block once it ends."""
    out: dict = {}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    tic = time.perf_counter()
    try:
        yield out
    finally:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["seconds"] = time.perf_counter() - tic


def random_backbone_fallback(folder: Path) -> Path | None:
    """A backbone folder with SmolLM2's config and tokenizer and seeded random weights, built from
    the config and tokenizer files in ``folder`` (what can be carried where the weights cannot);
    ``None`` if they are not there."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not (folder / "config.json").is_file():
        return None
    out = folder.parent / f"{folder.name}-random"
    if not (out / "model.safetensors").is_file():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder, local_files_only=True))
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(folder, local_files_only=True).save_pretrained(out)
    return out


def stage_loop_check(facts: int, backbone: str | None) -> dict:
    """Every method of :data:`MAIN_METHODS` through the real stage loop at reduced size (module
    docstring, 2). Runs under the current ``$MSCL_ARTIFACTS``."""
    from mscl.common.params import load_params
    from mscl.engine.models import BackboneError, cached_backbone_dir, load_backbone
    from mscl.pipeline import pilot
    from mscl.pipeline.stages import run_stage

    training = load_params("gpu", "training")
    params = training.with_seed(training.seeds[0])
    weights = "the profile's backbone"
    try:
        load_backbone(backbone or params.backbone)
    except (BackboneError, OSError, ImportError) as exc:
        fallback = random_backbone_fallback(cached_backbone_dir(params.backbone))
        if fallback is None:
            raise
        backbone, weights = (str(fallback),
                             f"seeded random weights with {params.backbone}'s config ({exc.__class__.__name__})")
    backbone = backbone or params.backbone
    data_dir = pilot.sweep_data("gpu", facts, params.data_seed, folder=pilot.sweep_root("gpu") / f"gpu-check-{facts}")
    rows = {}
    for method in MAIN_METHODS:
        with _peak_memory() as measured:
            manifest = run_stage("gpu", "domain_independent", method, 2, params=params, backbone=backbone,
                                 data_dir=data_dir, runs_root=artifacts_dir() / "gpu-check-runs", verbose=False)
        rows[method] = {**measured, "timings_s": {k: round(v, 2) for k, v in manifest["timings_s"].items()},
                        "precision": manifest["precision"], "generation_backend": manifest["generation_backend"],
                        "acc": manifest["metrics"]["eval"].get("acc")}
    return {"backbone": backbone, "weights": weights, "facts": facts, "methods": rows}


def precision_check(layers: int, device: str = "cuda", batch: int = 4, length: int = 512, decode_rows: int = 32,
                    decode_tokens: int = 32, shape: dict | None = None) -> dict:
    """One LoRA training step and one batched greedy decode of a random Llama with ``shape``
    (default: Llama-3-8B's widths) and ``layers`` layers, in fp32, fp32 with TF32 and bf16: tokens
    per second of each and the peak memory (module docstring, 3)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = shape or LLAMA3_8B
    results = {}
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("bf16", torch.bfloat16, False)):
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.cuda.empty_cache()
        config = LlamaConfig(num_hidden_layers=layers, **shape)
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM(config).to(dtype)
        lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"], task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, lora)
        optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
        ids = torch.randint(0, shape["vocab_size"], (batch, length), device=device)
        peft_model.train()
        with _peak_memory() as step:
            loss = peft_model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        peft_model.eval()
        prompt = torch.randint(0, shape["vocab_size"], (decode_rows, 64), device=device)
        with torch.no_grad(), _peak_memory() as decode:
            peft_model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=decode_tokens,
                                min_new_tokens=decode_tokens, do_sample=False, pad_token_id=0)
        results[name] = {"train_step": step, "train_tokens_per_s": batch * length / step["seconds"],
                         "loss_finite": bool(torch.isfinite(loss.detach()).item()),
                         "decode": decode, "decode_tokens_per_s": decode_rows * decode_tokens / decode["seconds"]}
        del model, peft_model, optimizer
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    return {"layers": layers, "shape": shape, "batch": batch, "length": length, "decode_rows": decode_rows,
            "decode_tokens": decode_tokens, "precisions": results}


def estimate_table(profile: str = "cpu", sizes_of: tuple[float, ...] = (135e6, 8e9)) -> dict:
    """:func:`paper_scale_estimate` for a 135M and an 8B backbone, with the mean prompt and answer
    lengths measured on ``profile``'s built benchmark (domain-independent training questions,
    SmolLM2's tokenizer, the prompt as the stage loop encodes it)."""
    import numpy as np

    from mscl import benchmark
    from mscl.common.params import load_params
    from mscl.engine.models import encode_prompt, load_tokenizer

    folder = artifacts_dir() / "data" / profile
    records = [r for r in benchmark.read_stream(folder, "domain_independent") if r.split == "train"]
    tokenizer = load_tokenizer(load_params(profile, "training").backbone)
    prompt = float(np.mean([len(encode_prompt(tokenizer, r.question)) for r in records]))
    answer = float(np.mean([len(tokenizer(r.answer, add_special_tokens=False)["input_ids"]) + 1 for r in records]))
    return {f"{n / 1e9:g}B": paper_scale_estimate(n, prompt, answer) for n in sizes_of}


def main(argv: list[str] | None = None) -> int:
    """``python -m mscl.perf.gpu_check``: the checks on this GPU (or, with ``--estimate``, the paper-scale cost)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=20, help="facts of the base set the stage loop check trains on")
    parser.add_argument("--layers", type=int, default=8, help="layers of the 8B-shaped random model (8B has 32)")
    parser.add_argument("--backbone", default=None, help="override the gpu profile's backbone")
    parser.add_argument("--out", default=None, help="where the JSON goes (default: reports/gpu_check.json)")
    parser.add_argument("--estimate", action="store_true",
                        help="print the paper-scale cost on paper "
                             "(no GPU needed; token lengths from the cpu benchmark)")
    args = parser.parse_args(argv)
    if args.estimate:
        print(json.dumps(estimate_table(), indent=2))
        return 0
    if not torch.cuda.is_available():
        print(no_gpu_message(), file=sys.stderr)
        return 2
    report = {"device": device_info()}
    tic = time.perf_counter()
    with _peak_memory() as total:
        report["stage_loop"] = stage_loop_check(args.facts, args.backbone)
        report["eight_b_shaped"] = precision_check(args.layers)
    report["total"] = {**total, "wall_s": round(time.perf_counter() - tic, 1)}
    out = Path(args.out) if args.out else reports_dir("cpu") / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0



# --------------------------------------------------------------------------- the paper-scale cost, on paper
# Assumptions of :func:`paper_scale_estimate` (no GPU was measured for them): the H200's dense bf16
# peak and memory bandwidth, the share of the peak LoRA training reaches, and decode as a
# memory-bound pass over the weights per step (a batch of rows shares it).
H200 = {"bf16_flops": 790e12, "bandwidth_bytes_per_s": 4.8e12}
TRAIN_MFU = 0.35
TRAIN_FLOPS_PER_TOKEN = 4   # x parameters: forward 2N, backward to the activations 2N (frozen weights)
SCORE_FLOPS_PER_TOKEN = 2   # forward only (reference log-probs)
MIN_DECODE_STEP_S = 0.02    # a decode step's floor: kernel launches and Python, whatever the model's size
MIN_TRAIN_STEP_S = 0.1      # an optimizer step's floor, likewise


def _stage_cost(training, parameters: float, tokens: dict[str, float], method: str, facts: int,
                eval_questions: int) -> dict:
    """Tokens trained and decoded by one stage of ``method`` on ``facts`` training questions and
    ``eval_questions`` evaluation questions, and its seconds under the assumptions above. ``tokens``:
    the mean ``prompt``, gold ``answer``, sampled ``response`` and ``eval_answer`` lengths."""
    pbl, aug = training.pbl, training.augment
    response, answer_eval = tokens["response"], tokens["eval_answer"]
    pref = method.startswith(("pbl", "ours"))
    augments = method == "ours" or "+" in method and method != "cit+matched"
    examples = facts * (2 if augments else 1) * (2 if method == "cit+matched" else 1)
    per_example = tokens["prompt"] + tokens["answer"] + (pbl.k * response if pref else 0)
    train_tokens = training.train.epochs * examples * per_example
    if method == "flearning":
        train_tokens *= 1 + training.flearning.forgetting_epochs / training.train.epochs
    decode_tokens = 2 * eval_questions * answer_eval                              # old and new model
    decode_tokens += facts * pbl.k * response if pref else 0                      # K samples
    if augments:
        decode_tokens += facts * 3 * aug.count * aug.rounds * (aug.max_new_tokens / 2 + answer_eval)
    score_tokens = facts * pbl.k * response if pref else 0
    flops = (TRAIN_FLOPS_PER_TOKEN * train_tokens + SCORE_FLOPS_PER_TOKEN * score_tokens) * parameters
    steps = training.train.epochs * examples / training.train.batch_size
    step_s = 2 * parameters / H200["bandwidth_bytes_per_s"]          # one decode step reads the bf16 weights
    seconds = (max(flops / (TRAIN_MFU * H200["bf16_flops"]), steps * MIN_TRAIN_STEP_S)
               + decode_tokens / training.eval.batch_size * max(step_s, MIN_DECODE_STEP_S))
    return {"train_tokens": train_tokens, "decode_tokens": decode_tokens, "seconds": seconds}


def _paper_scale_jobs(profile: str, training) -> list[tuple[str, str, int]]:
    """(stream, method, stage) of every stage ``make reproduce`` trains: every main-table method, the
    cross-domain methods, the real-revision stream's, PBL to stage 3 and the ablations at their stage
    on their seeds."""
    from mscl import benchmark
    from mscl.common.params import load_params

    main = load_params(profile, "04_domain_independent").methods
    cross = load_params(profile, "05_cross_domain").methods
    real = load_params(profile, "05b_real_revisions").methods
    ablations = load_params(profile, "06_ablations")
    stages = benchmark.STREAM_STAGES
    jobs = []
    for _ in training.seeds:
        jobs += [("domain_independent", m, s) for m in main for s in stages["domain_independent"][1:]]
        jobs += [("cross_domain", m, s) for m in cross for s in stages["cross_domain"][1:]]
        jobs += [("real_revisions", m, s) for m in real for s in stages["real_revisions"][1:]]
        jobs += [("domain_independent", "cit", 1), ("cross_domain", "cit", 1), ("real_revisions", "cit", 1),
                 ("domain_independent", "pbl", 2),
                 ("domain_independent", "pbl", 3)]
    for _ in ablations.seeds:
        jobs += [("domain_independent", m, ablations.stage)
                 for m in dict.fromkeys(x for table in ablations.tables.values() for x in table)]
    return jobs


def paper_scale_estimate(parameters: float, prompt_tokens: float, answer_tokens: float, profile: str = "gpu",
                         response_tokens: float | None = None, eval_tokens: float | None = None) -> dict:
    """GPU-hours of ``make reproduce PROFILE=<profile>`` on one H200 for a backbone of ``parameters`` weights,
    from the profile's sizes, epochs, K, rounds and seeds and the assumptions above. Tokens: the
    mean prompt and gold answer of a question (measure them on the built benchmark), a sampled
    response (default ``pbl.max_new_tokens`` / 2) and an evaluation answer (default: half the
    evaluation's token budget, 128 of the authors' 256). Every main-table method, the cross-domain
    methods, the real-revision stream's, PBL to stage 3 and the ablations at stage 2 on their seeds; the
    budget sweep and the budget axis are left out."""
    from mscl.common.params import load_params

    training = load_params(profile, "training")
    sizes = load_params(profile, "01_data_build").sizes
    response = response_tokens if response_tokens is not None else training.pbl.max_new_tokens / 2
    answer_eval = eval_tokens if eval_tokens is not None else (128 if training.eval.mode == "authors"
                                                               else training.eval.max_new_tokens / 2)
    tokens = {"prompt": prompt_tokens, "answer": answer_tokens, "response": response, "eval_answer": answer_eval}
    cross_facts = sizes.cross_independent_per_stage + sizes.cross_conflict_per_stage
    real_facts = sizes.real_facts + sizes.real_validation_facts
    # training questions and evaluation questions (held-out wordings and the general set) of a stage
    questions = {"domain_independent": (sizes.stage1_facts, sizes.stage1_facts * 2 + sizes.general),
                 "cross_domain": (cross_facts, 2 * cross_facts + sizes.general),
                 "real_revisions": (real_facts, 2 * real_facts + sizes.general)}
    jobs = _paper_scale_jobs(profile, training)
    total = {"train_tokens": 0.0, "decode_tokens": 0.0, "seconds": 0.0}
    for stream, method, _ in jobs:
        cost = _stage_cost(training, parameters, tokens, method, *questions[stream])
        for key in total:
            total[key] += cost[key]
    return {"parameters": parameters, "stages": len(jobs), "train_tokens": total["train_tokens"],
            "decode_tokens": total["decode_tokens"], "gpu_hours": total["seconds"] / 3600,
            "assumptions": {"h200": H200, "train_mfu": TRAIN_MFU, "rows_per_decode_step": training.eval.batch_size,
                            "min_decode_step_s": MIN_DECODE_STEP_S, "min_train_step_s": MIN_TRAIN_STEP_S,
                            "prompt_tokens": prompt_tokens, "answer_tokens": answer_tokens,
                            "response_tokens": response, "eval_answer_tokens": answer_eval}}


if __name__ == "__main__":
    sys.exit(main())
