"""``make gpu-check`` (``python -m mscl.gpu_check``): the GPU path end to end, in minutes, offline.

On a machine with a CUDA GPU and no network it checks, and writes to ``reports/gpu_check.json``:

1. **The device**: its name and memory, torch and its CUDA build, the precision ``train.dtype: auto``
   resolves to.
2. **The stage loop**: every main-table method and PBL through :func:`mscl.stages.run_stage` with
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

from mscl.paths import artifacts_dir, reports_dir

MAIN_METHODS = ("cit", "pbl", "mocl", "flearning", "ours", "cit+matched")
LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                 vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0)


def no_gpu_message() -> str:
    return (f"no GPU: torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees none "
            "(torch.cuda.is_available() is False); make gpu-check runs on a machine with a CUDA GPU")


def device_info() -> dict:
    from mscl.models import resolve_dtype

    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1), "devices": torch.cuda.device_count(),
            "torch": torch.__version__, "cuda": torch.version.cuda,
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
    from mscl import pilot
    from mscl.models import BackboneError, cached_backbone_dir, load_backbone
    from mscl.params import load_params
    from mscl.stages import run_stage

    training = load_params("gpu", "training")
    params = training.with_seed(training.seeds[0])
    weights = "the profile's backbone"
    try:
        load_backbone(backbone or params.backbone)
    except (BackboneError, OSError, ImportError) as exc:
        fallback = random_backbone_fallback(cached_backbone_dir(params.backbone))
        if fallback is None:
            raise
        backbone, weights = str(fallback), f"seeded random weights with {params.backbone}'s config ({exc.__class__.__name__})"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=20, help="facts of the base set the stage loop check trains on")
    parser.add_argument("--layers", type=int, default=8, help="layers of the 8B-shaped random model (8B has 32)")
    parser.add_argument("--backbone", default=None, help="override the gpu profile's backbone")
    parser.add_argument("--out", default=None, help="where the JSON goes (default: reports/gpu_check.json)")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
