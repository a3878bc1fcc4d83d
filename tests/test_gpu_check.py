"""make gpu-check (mscl/perf/gpu_check.py): on a CPU it refuses; its 8B-shaped precision check runs on a tiny
shape here."""
from __future__ import annotations

import os
import subprocess
import sys

from mscl.common.paths import REPO_ROOT
from mscl.perf import gpu_check


def test_on_a_cpu_it_says_there_is_no_gpu_and_fails():
    # a GPU is hidden from the child, so the refusal is checked on any machine
    out = subprocess.run([sys.executable, "-m", "mscl.perf.gpu_check"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 2 and "no GPU" in out.stderr and "torch.cuda.is_available() is False" in out.stderr
    assert not (REPO_ROOT / "reports" / "gpu_check.json").exists() or "gpu_check.json" not in out.stdout


def test_the_precision_check_runs_every_precision_on_a_tiny_shape():
    shape = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                 max_position_embeddings=256)
    report = gpu_check.precision_check(layers=1, device="cpu", batch=2, length=16, decode_rows=2, decode_tokens=3,
                                       shape=shape)
    assert set(report["precisions"]) == {"fp32", "tf32", "bf16"}
    for r in report["precisions"].values():
        assert r["loss_finite"] and r["train_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0
    assert gpu_check.LLAMA3_8B["hidden_size"] == 4096 and gpu_check.LLAMA3_8B["num_key_value_heads"] == 8


def test_the_paper_scale_estimate_grows_with_the_model_and_states_its_assumptions():
    small, large = (gpu_check.paper_scale_estimate(n, 34.0, 4.0) for n in (135e6, 8e9))
    assert 0 < small["gpu_hours"] < large["gpu_hours"]
    assert small["stages"] == large["stages"] > 100 and small["train_tokens"] == large["train_tokens"] > 0
    assert {"train_mfu", "min_decode_step_s", "prompt_tokens"} <= set(large["assumptions"])
