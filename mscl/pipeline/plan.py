"""A stage asked for, before anything runs: its folder, its identity, what it depends on.

:func:`plan_stage` checks the device, the method, the data and the stage number, and returns a
:class:`StagePlan`; :func:`stage_identity` is what the stage's results depend on (hashed into its
manifest's ``config_hash``); :func:`stage_seed` seeds everything random in it.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from mscl import benchmark
from mscl.benchmark.probe import ensure_benchmark
from mscl.common import dist
from mscl.common.io import read_json, sha256_json
from mscl.common.params import TrainingParams, load_params
from mscl.common.paths import SHARED_METHOD, run_dir
from mscl.engine import vllm_backend
from mscl.engine.models import resolve_dtype
from mscl.methods import Method, get_method
from mscl.pipeline import integrity


def check_devices(profile: str, params: TrainingParams | None = None) -> None:
    """:func:`mscl.common.dist.check_devices` for ``profile``'s ``training.yaml`` (``require_cuda``)."""
    params = params or load_params(profile, "training")
    dist.check_devices(params.require_cuda, f"params/{profile}/training.yaml")


def stage_seed(training_seed: int, stage: int) -> int:
    """The seed of everything random in one stage (sampling, rewrites, the trainer)."""
    return training_seed * 1000 + stage


def stage_identity(profile: str, stream: str, method_name: str, stage: int, backbone: str, params,
                   data_manifest: dict) -> dict:
    """What a stage's results depend on, hashed into its manifest's ``config_hash``: values only (the
    params the method reads, the data files' hashes, the precision and generation backend resolved
    here), never a module path, so moving code never invalidates a finished stage."""
    return {"profile": profile, "stream": stream, "method": method_name, "stage": stage,
            "backbone": backbone, "params": get_method(method_name, params).identity(),
            "data": data_manifest.get("files", {}),
            "precision": str(resolve_dtype(params.train.dtype, dist.device())).removeprefix("torch."),
            "generation": vllm_backend.expected_backend()}


@dataclasses.dataclass
class StagePlan:
    """One stage asked for: where it lives, what it depends on, and its identity."""
    profile: str
    stream: str
    method_name: str
    stage: int
    params: TrainingParams
    backbone: str
    runs_root: Path | None
    data_dir: Path | None
    data_folder: Path
    stages: list[int]             # every stage of the stream
    folder: Path
    identity: dict
    verbose: bool

    @functools.cached_property
    def method(self) -> Method:
        """The one method object that builds the start model and trains the stage."""
        return get_method(self.method_name, self.params)

    @property
    def shared(self) -> list[int]:
        return self.stages[:self.params.shared_stages]

    @property
    def config_hash(self) -> str:
        return sha256_json(self.identity)

    @property
    def label(self) -> str:
        return f"[{self.method_name} | {self.stream} stage {self.stage} | seed {self.params.seed}]"

    def stage_dir(self, stage: int) -> Path:
        """The folder of an earlier stage of this chain (CIT's for a shared stage)."""
        method = SHARED_METHOD if stage in self.shared else self.method_name
        return run_dir(self.profile, self.backbone, self.stream, method, stage, self.runs_root, seed=self.params.seed)

    def retrain_command(self, stage: int | None = None) -> str:
        """The command that removes this stage (or an earlier ``stage`` of its chain) and its
        dependants, for an error's advice."""
        stage = self.stage if stage is None else stage
        method = SHARED_METHOD if stage in self.shared else self.method_name
        own_backbone = load_params(self.profile, "training").backbone
        return integrity.clean_command(self.profile, self.stream, method, stage, self.params.seed,
                                       None if self.backbone == own_backbone else self.backbone, self.runs_root)

    def say(self, message: str) -> None:
        if self.verbose and dist.is_main():
            print(f"{self.label} {message}", flush=True)


def plan_stage(profile: str, stream: str, method_name: str, stage: int, params: TrainingParams | None = None,
               backbone: str | None = None, runs_root: Path | None = None, data_dir: Path | None = None,
               verbose: bool = True) -> StagePlan:
    """The :class:`StagePlan` of one stage; checks the device, the method, the data and the stage number."""
    params = params or load_params(profile, "training")
    check_devices(profile, params)
    backbone = backbone or params.backbone
    get_method(method_name, params)  # an unknown method stops here, before any data is built
    data_folder = ensure_benchmark(profile, params.data_seed, data_dir)
    stages = benchmark.stream_stages(data_folder, stream)
    if stage not in stages:
        raise ValueError(f"stream {stream!r} of profile {profile!r} has stages {stages}, not {stage}")
    identity = stage_identity(profile, stream, method_name, stage, backbone, params,
                              read_json(data_folder / "manifest.json"))
    return StagePlan(profile, stream, method_name, stage, params, backbone, runs_root, data_dir, data_folder, stages,
                     run_dir(profile, backbone, stream, method_name, stage, runs_root, seed=params.seed), identity,
                     verbose)
