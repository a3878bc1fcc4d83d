"""One stage under ``accelerate launch`` with two CPU processes gives the single-process result.

Both runs train CIT's stage 1 of the smoke profile (tiny random model, 12 training records, global
batch 4: three steps of 2 + 2 records in the two-process run) from the same seed through
``python -m mscl run``. Stated tolerance: the metrics are identical; every logged training loss
and every adapter weight agree within ``ATOL`` (the two runs differ only in the order of float
additions: per-process padding and the gradient all-reduce).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mscl.common.io import read_json
from mscl.common.paths import REPO_ROOT

ATOL = 1e-5
STAGE = ["run", "--profile", "smoke", "--stream", "domain_independent", "--method", "cit", "--stage", "1"]
ACCELERATE_CONFIGS = REPO_ROOT / "params" / "accelerate"


def _run(command: list[str], artifacts: Path) -> None:
    env = {**os.environ, "MSCL_ARTIFACTS": str(artifacts), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        (artifacts / "failed.log").write_text(done.stdout + "\n" + done.stderr)
        first_error = [line for line in done.stderr.splitlines() if "Error" in line][:5]
        pytest.fail(f"{' '.join(command)} failed (full log: {artifacts / 'failed.log'}):\n" + "\n".join(first_error)
                    + f"\n...\n{done.stderr[-2000:]}")


def _stage_dir(artifacts: Path) -> Path:
    return artifacts / "runs" / "smoke" / "tiny-random" / "seed0" / "domain_independent" / "cit" / "stage1"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    one, two = root / "one", root / "two"
    shared_models = REPO_ROOT / "artifacts" / "models"
    shared_models.mkdir(parents=True, exist_ok=True)
    for artifacts in (one, two):  # the converted backbones shared; the same benchmark files (built once)
        artifacts.mkdir()
        (artifacts / "models").symlink_to(shared_models, target_is_directory=True)
    _run([sys.executable, "-m", "mscl", *STAGE], one)
    shutil.copytree(one / "data", two / "data")
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                  str(ACCELERATE_CONFIGS / "cpu_ddp.yaml"), "--num_processes", "2", "-m", "mscl"]
    _run(accelerate + STAGE, two)
    return _stage_dir(one), _stage_dir(two)


@pytest.mark.trains
def test_two_processes_give_the_single_process_stage(two_runs):
    one, two = two_runs
    m1, m2 = read_json(one / "manifest.json"), read_json(two / "manifest.json")
    assert (m1["processes"], m2["processes"]) == (1, 2)
    assert m1["config_hash"] == m2["config_hash"]  # the same stage: reusable whatever ran it
    assert m1["metrics"] == m2["metrics"]
    losses1 = [h["loss"] for h in read_json(one / "train_log.json") if "loss" in h]
    losses2 = [h["loss"] for h in read_json(two / "train_log.json") if "loss" in h]
    from mscl import benchmark

    records = len(benchmark.stage_sets(one.parents[6] / "data" / "smoke", "domain_independent", 1)["train"])
    assert len(losses1) == len(losses2) == -(-records // 4)  # the global batch stayed 4
    assert losses1 == pytest.approx(losses2, abs=ATOL)
    w1 = load_file(str(one / "adapter" / "adapter_model.safetensors"))
    w2 = load_file(str(two / "adapter" / "adapter_model.safetensors"))
    assert w1.keys() == w2.keys() and w1
    moved = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert moved <= ATOL, f"adapters differ by up to {moved}"
    # training moved the adapter (LoRA's B starts at zero): the comparison is not of two untrained ones
    assert max(w1[k].abs().max().item() for k in w1 if "lora_B" in k) > 10 * ATOL
    assert not list(two.glob("rank*")), "the other process's scratch folder was left behind"


@pytest.mark.trains
def test_predictions_are_written_once_and_match(two_runs):
    """Under the launcher greedy evaluation is split over the two processes and gathered
    (mscl.common.dist.shard): the answers are those of the single process."""
    one, two = two_runs
    assert (one / "predictions.jsonl").read_text() == (two / "predictions.jsonl").read_text()


@pytest.mark.parametrize("config", sorted(p.name for p in ACCELERATE_CONFIGS.glob("*.yaml")))
def test_shipped_accelerate_configs_load(config):
    """Each config under params/accelerate/ is one accelerate itself accepts."""
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ACCELERATE_CONFIGS / config))
    raw = yaml.safe_load((ACCELERATE_CONFIGS / config).read_text())
    assert str(cfg.distributed_type).split(".")[-1] == raw["distributed_type"]
    assert cfg.num_processes == raw["num_processes"] >= 2


def test_global_batch_must_split_over_the_processes(monkeypatch):
    from mscl.common import dist

    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="train.batch_size=4 does not split over 3 processes"):
        dist.per_device_batch_size(4)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert dist.per_device_batch_size(4) == 2
    assert dist.global_count(torch.tensor(5)) == 5  # no process group: the count itself


# --------------------------------------------------------------------------- the loss shares, without processes
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_process_shares_of_the_loss_average_to_the_single_process_loss(tiny, monkeypatch, reduction):
    """Split one global batch over two "processes": the mean of their losses (what DDP's gradient
    averaging optimises) is the single-process loss, for the NLL and the preference term, although
    the halves differ in gold tokens and in responses. Without the global counts it would not be."""
    import copy
    import dataclasses
    from collections import defaultdict
    from types import SimpleNamespace

    from mscl.common import dist
    from mscl.common.params import load_params
    from mscl.core.losses import PreferenceObjective
    from mscl.engine.training import StageTrainer, build_examples, pack_examples
    from tests.conftest import make_record

    model, tok = tiny
    model = copy.deepcopy(model)
    records = [make_record(0, "What is the capital of France?", "Paris"),
               make_record(1, "Which currency does Japan use?", "The Japanese yen, JPY"),
               make_record(2, "What is the chemical symbol of iron?", "Fe"),
               make_record(3, "Which city has the airport CDG?", "Paris, France")]
    responses = {"r0": ["Paris", "Lyon", "Nice"], "r1": ["Yen"], "r2": ["Fe", "Iron", "Au", "Ag"],
                 "r3": ["Paris", "CDG"]}
    # reference log-probs far apart between the halves, so per-response losses differ between them
    rows = [{"id": rid, "responses": [{"response": text, "aligned": j == 0, "ref_logp": -2.0 - 15 * int(rid[1]) - j}
                                       for j, text in enumerate(texts)]} for rid, texts in responses.items()]
    examples = build_examples(tok, records, 128, rows)
    bias = PreferenceObjective.from_params(
        dataclasses.replace(load_params("smoke", "training").pbl, reduction=reduction, variant="sigmoid"))
    trainer = object.__new__(StageTrainer)  # compute_loss needs only these attributes
    trainer.bias, trainer._metrics, trainer.state = bias, defaultdict(list), SimpleNamespace(global_step=0)
    trainer._tokens, trainer._since = 0, 0.0

    with torch.no_grad():
        single = trainer.compute_loss(model, pack_examples(examples, tok.pad_token_id)).item()
        halves = [pack_examples(examples[:2], tok.pad_token_id), pack_examples(examples[2:], tok.pad_token_id)]
        naive = sum(trainer.compute_loss(model, h).item() for h in halves) / 2
        totals = [sum(int(h["n_tokens"][h["is_gold"]].sum()) for h in halves),
                  sum(int((~h["is_gold"]).sum()) for h in halves)]
        monkeypatch.setattr(dist, "world_size", lambda: 2)
        shares = []
        for h in halves:  # global_count is asked for the gold tokens, then for the responses
            answers = iter(totals)
            monkeypatch.setattr(dist, "global_count", lambda count: torch.tensor(next(answers)))
            shares.append(trainer.compute_loss(model, h).item())
    assert sum(shares) / 2 == pytest.approx(single, rel=1e-5)
    assert abs(naive - single) > 5e-3 * abs(single)  # the halves really are unequal: the test can fail


def test_a_gpu_profile_refuses_to_start_without_cuda_within_seconds(scratch):
    import time

    from mscl.common.paths import REPO_ROOT

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MSCL_ARTIFACTS": str(scratch)}
    tic = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mscl.pipeline.reproduce", "--profile", "gpu"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and time.perf_counter() - tic < 60
    assert "require_cuda" in out.stderr and "torch.version.cuda" in out.stderr and "nvidia-smi" in out.stderr
    assert not (scratch / "data" / "gpu").exists()   # nothing built
    run = subprocess.run([sys.executable, "-m", "mscl", "run", "--profile", "gpu", "--stream", "domain_independent",
                          "--method", "cit", "--stage", "1"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0 and "require_cuda" in run.stderr


def test_one_process_that_sees_several_gpus_refuses(monkeypatch):
    from mscl.common import dist

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(dist.DeviceError, match="accelerate launch"):
        dist.check_devices(False)
    monkeypatch.setenv("WORLD_SIZE", "4")   # under a launcher each process takes its own GPU
    dist.check_devices(False)


def test_shards_cover_the_items_once_and_gather_back_in_order(monkeypatch):
    from mscl.common import dist

    items = list(range(11))
    monkeypatch.setenv("WORLD_SIZE", "3")
    shares = []
    for r in range(3):
        monkeypatch.setenv("RANK", str(r))
        shares.append(dist.shard(items))
    assert sorted(x for s in shares for x in s) == items and [len(s) for s in shares] == [4, 4, 3]
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert dist.shard(items) == items and dist.gather_shards(items, items) == items
