"""`python -m mscl.perf` on the smoke profile: every figure is measured and written, with its bar."""
from __future__ import annotations

import json
import time

import pytest
import torch

from mscl import perf
from mscl.engine import packed_linear


@pytest.mark.trains
def test_bench_measures_and_writes_every_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("MSCL_ARTIFACTS", str(tmp_path / "artifacts"))
    results = perf.run("smoke", records=8, epochs=1, repeats=1, stage_method="pbl", stage_number=2,
                        out_dir=tmp_path / "reports")
    saved = json.loads((tmp_path / "reports" / "benchmarks.json").read_text())
    for key in perf.BARS:  # the keys the issue names, each a measured positive number
        assert saved[key] == pytest.approx(results["figures"][key]) and saved[key] > 0
        assert saved["met"][key] == perf.meets(key, saved[key])
    details = saved["details"]
    assert details["training throughput vs TRL"]["tokens"] > 0
    assert details["peak memory of a stage"]["stage"] == "pbl stage 2"
    whole = details["whole stages"]
    assert list(whole["phases_s"]) == ["ours", "cit+matched", "pbl", "cit"]
    assert whole["cost_vs_cit"]["cit"] == 1 and whole["cost_vs_cit"]["ours"] > 0
    for method, phases in whole["phases_s"].items():  # the phases add up to the stage's total
        parts = sum(v for k, v in phases.items() if k not in ("stage", "process", "wall"))
        assert parts == pytest.approx(phases["stage"], rel=0.05) and phases["gradient_steps"] > 0, method
    assert whole["phases_s"]["ours"]["sample"] > 0 and whole["phases_s"]["cit"]["sample"] == 0
    assert saved["ours_vs_matched_stage_ratio"] == pytest.approx(whole["ours_seconds"] / whole["cit+matched_seconds"])
    assert "## A stage, phase by phase" in (tmp_path / "reports" / "benchmarks.md").read_text()
    assert details["PBL vs CIT training"]["train_stage_ratio"] > 0
    assert saved["parallel_jobs_throughput"] > 0 and saved["pbl_vs_cit_train_stage_ratio"] > 0
    gen = details["batched generation"]
    assert gen["batched_matmul_flops"] > 0 and saved["batched_generation_ceiling"] == pytest.approx(
        gen["one_at_a_time_seconds"] / (gen["batched_matmul_flops"] / details["matmul peak"]["matmul_flops_per_s"]))
    assert 0 < gen["batched_linear_share"] < 1 and gen["batched_linear_calls"] > 0
    assert saved["batched_generation_linear_bound"] == pytest.approx(
        gen["one_at_a_time_seconds"] / gen["batched_linear_seconds"])
    peak = details["matmul peak"]
    assert peak["matmul_flops_per_s"] == max(peak["best_by_backend"].values()) > 0
    if packed_linear.available():  # both backends, each shape at both row counts, whole forwards both ways
        assert set(peak["best_by_backend"]) == {"torch.mm", "onednn packed"}
        by_shape = details["linear backends"]["by_shape"]
        assert by_shape and all(e["packed_flops_per_s"] > 0 and e["f_linear_flops_per_s"] > 0
                                for e in by_shape.values())
        forward = details["linear backends"]["model_forward"]["one_token_rows"]
        assert saved["packed_linear_step_forward_speedup"] == pytest.approx(
            forward["f_linear_seconds"] / forward["packed_seconds"])
    assert 0 < saved["peak_rss_gib"] < 24
    report = (tmp_path / "reports" / "benchmarks.md").read_text()
    assert "`train_throughput_ratio_vs_trl`" in report and saved["machine"]["cpu_count"] >= 1


def test_bars():
    assert perf.meets("train_throughput_ratio_vs_trl", 1.0) and not perf.meets("train_throughput_ratio_vs_trl", 0.99)
    assert perf.meets("peak_rss_gib", 5.9) and not perf.meets("peak_rss_gib", 6.1)


class _Sleep(torch.nn.Module):
    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


class _Nested(torch.nn.Linear):
    """A linear computing through another one inside it."""

    def __init__(self, fail: bool = False):
        super().__init__(4, 4)
        self.inner, self.fail = torch.nn.Linear(4, 4), fail

    def forward(self, x):
        time.sleep(0.02)
        if self.fail:
            raise RuntimeError("boom")
        return super().forward(x) + self.inner(x)


def test_linear_timer_times_linears_only_counting_nested_ones_once():
    nested = _Nested()
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), _Sleep(0.03), nested)
    x = torch.randn(2, 4)
    with perf.LinearTimer(model) as timer:
        model(x)
        model(x)
        nested.fail = True
        with pytest.raises(RuntimeError):
            model(x)
        nested.fail = False
        model(x)
    # 2 calls a forward, the nested linear counted once, the failed forward's too (its interval
    # ends); 0.02 s a forward inside the linears, and the 0.03 s a forward outside them not counted
    assert timer.calls == 8
    assert 0.08 <= timer.seconds < 0.08 + 0.08
    # 2 x rows x in x out for every nn.Linear entered, inner ones too: 3 a forward, the failed one 2
    one = 2 * 2 * 4 * 4
    assert timer.flops == 3 * 3 * one + 2 * one
    model(x)
    assert timer.calls == 8 and all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_linear_timer_counts_a_lora_layer_once():
    from peft import LoraConfig, inject_adapter_in_model

    model = inject_adapter_in_model(LoraConfig(r=2, target_modules=["0"]),
                                    torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)))
    with perf.LinearTimer(model) as timer:
        model(torch.randn(5, 4))
    # LoRA's layer (base, A and B inside) and the plain linear; FLOPs of base, A, B and the plain one
    assert timer.calls == 2 and timer.flops == 2 * 5 * (4 * 4 + 4 * 2 + 2 * 4 + 4 * 3)
