"""The bench's common ground: the bars, the machine description, and the shared setup."""
from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path

import torch

BARS = {  # key: (comparison, bar)
    "train_throughput_ratio_vs_trl": (">=", 1.0),
    "pbl_vs_cit_cost_ratio": ("<=", 2.0),
    "ours_vs_matched_stage_ratio": ("<=", 2.0),
    "matmul_peak_share": (">=", 0.4),
    "batched_generation_speedup": (">=", 8.0),
    "peak_rss_gib": ("<=", 6.0),
}


def meets(key: str, value: float) -> bool:
    op, bar = BARS[key]
    return value >= bar if op == ">=" else value <= bar


def machine() -> dict:
    """What the figures were measured on."""
    cpu, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    cpu = cpu or platform.processor()
    # the widest vector units: machines sold under one name differ here, and oneDNN's speed with them
    # (reports/benchmarks.md is comparable only between runs on the same)
    vector = next((isa for isa in ("avx512f", "avx2", "avx") if isa in flags), None)
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_vector_isa": vector, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    for name in ("transformers", "trl", "peft"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            pass
    return info


@dataclasses.dataclass
class Setup:
    profile: str
    params: object            # TrainingParams
    model: object             # the backbone, never modified (every benchmark copies it)
    tokenizer: object
    records: list


def setup(profile: str, n_records: int, backbone: str | None = None) -> Setup:
    from mscl import benchmark
    from mscl.benchmark.probe import ensure_benchmark
    from mscl.common.params import load_params
    from mscl.engine.models import load_backbone

    params = load_params(profile, "training")
    if backbone:
        params = dataclasses.replace(params, backbone=backbone)
    records = benchmark.stage_sets(ensure_benchmark(profile, params.data_seed), "domain_independent", 1)["train"]
    if len(records) < n_records:
        raise ValueError(f"--records {n_records}: profile {profile!r} has only {len(records)} stage-1 training records")
    model, tokenizer = load_backbone(params.backbone, seed=params.data_seed)
    model.eval()
    return Setup(profile, params, model, tokenizer, records[:n_records])


def _token_count(examples: list[dict]) -> int:
    return sum(len(s["input_ids"]) for ex in examples for s in ex["sequences"] if s["kind"] == "gold")


