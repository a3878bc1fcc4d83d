"""The pilot's budget sweep: how much training CIT gets, chosen by a rule stated before looking.

Whether knowledge conflict shows at all depends on the training budget: a budget that overwrites
everything a stage learned leaves no stale answer for any method to fight, and one too small learns
nothing. Notebook 02 therefore runs CIT over the domain-independent stream at reduced size
(``sweep.facts`` facts of the base set; its first ``sweep.stages`` stages, 0 for all) for every
setting of epochs x learning rate x LoRA target modules in ``params/<profile>/02_pilot.yaml``, and
records for each its stage-1 ACC, its ACC at the later stages and its stale-answer rate (the share
of evaluation answers that give an answer an edit replaced, :func:`mscl.core.metrics.answer_source`).

The rule, fixed in the params file before the sweep ran: order the settings by budget (epochs, then
learning rate, then the number of LoRA target modules) and take the first whose stage-1 ACC reaches
``sweep.min_stage1_acc``: the lowest budget that learns the facts, as a practitioner would choose
(close to the paper's LLaMA-Factory defaults of a few epochs at a small learning rate). The profile's
``training.yaml`` cites the pick; :func:`check_training_regime` stops ``make reproduce`` when it does
not match.

Each setting's stages live under ``artifacts/sweep/<profile>/<setting>/``, are resumable like every
stage, and are reused by later runs of the notebook (``python -m mscl sweep`` runs one setting).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mscl import benchmark as benchmark
from mscl.benchmark.probe import ensure_benchmark
from mscl.common.io import atomic_write_text
from mscl.common.params import PilotParams, TrainingParams, load_params
from mscl.common.paths import artifacts_dir
from mscl.pipeline.stages import run_stage

SWEEP_STREAM = "domain_independent"


@dataclass(frozen=True)
class Setting:
    """One training budget of the sweep."""
    epochs: float
    learning_rate: float
    targets: str                  # a name in ``sweep.target_modules``
    target_modules: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"e{self.epochs:g}-lr{self.learning_rate:g}-{self.targets}"

    def budget(self) -> tuple:
        """The rule's order: epochs, then learning rate, then how many module kinds LoRA adapts."""
        return (self.epochs, self.learning_rate, len(self.target_modules))

    def apply(self, params: TrainingParams) -> TrainingParams:
        """``params`` with this setting's epochs, learning rate and LoRA targets."""
        lora = dataclasses.replace(params.train.lora, target_modules=list(self.target_modules))
        train = dataclasses.replace(params.train, epochs=self.epochs, learning_rate=self.learning_rate, lora=lora)
        return dataclasses.replace(params, train=train)


def settings(pilot: PilotParams) -> list[Setting]:
    """Every setting of the sweep's grid, in the rule's budget order (lowest first)."""
    grid = [Setting(e, lr, name, tuple(modules)) for e in pilot.sweep.epochs for lr in pilot.sweep.learning_rates
            for name, modules in pilot.sweep.target_modules.items()]
    return sorted(grid, key=Setting.budget)


def sweep_root(profile: str) -> Path:
    return artifacts_dir() / "sweep" / profile


def sweep_data(profile: str, facts: int, data_seed: int, folder: Path | None = None) -> Path:
    """The benchmark reduced to every validation fact of the domain-independent stream (the rule reads
    them) and the first ``facts`` of its other stage-1 facts (file order, which the data seed
    shuffles), every stage; the other streams are copied unchanged.
    Written once under ``folder`` (default ``artifacts/sweep/<profile>/data``); a reduction of
    another benchmark or size is an error naming the folder to remove."""
    source = ensure_benchmark(profile, data_seed)
    folder = Path(folder) if folder else sweep_root(profile) / "data"
    origin = {"source_sha256": {name: info["sha256"] for name, info in
                                json.loads((source / benchmark.MANIFEST).read_text(encoding="utf-8"))["files"].items()},
              "facts": facts}
    if (folder / benchmark.MANIFEST).is_file():
        built = json.loads((folder / benchmark.MANIFEST).read_text(encoding="utf-8")).get("sweep")
        if built == origin:
            return folder
        raise ValueError(f"{folder} was reduced from another benchmark or to another size than asked now "
                         f"({built} vs {origin}); remove {folder} to rebuild it")
    folder.mkdir(parents=True, exist_ok=True)
    records = benchmark.read_stream(source, SWEEP_STREAM)
    validation = {r.fact_id for r in records if r.split == "validation"}
    others = [fact for fact in dict.fromkeys(r.fact_id for r in records if r.stage == 1) if fact not in validation]
    keep = list(validation) + others[:facts]
    manifest = json.loads((source / benchmark.MANIFEST).read_text(encoding="utf-8"))
    for stream, name in benchmark.FILES.items():
        # one record a line: split on "\n" only (JSON text may hold U+2028, which splitlines splits)
        lines = [line + "\n" for line in (source / name).read_text(encoding="utf-8").split("\n") if line]
        if stream == SWEEP_STREAM:
            kept = set(keep)
            lines = [line for line, r in zip(lines, records) if r.fact_id in kept]
        text = "".join(lines)
        atomic_write_text(folder / name, text)
        manifest["files"][name] = {"records": len(lines), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    manifest["sweep"] = origin
    atomic_write_text(folder / benchmark.MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return folder


def run_setting(profile: str, setting: Setting, backbone: str | None = None) -> list[dict]:
    """CIT over the reduced stream under one setting, with the profile's first training seed; returns
    the stage manifests (finished stages are reused)."""
    pilot = load_params(profile, "02_pilot")
    training = load_params(profile, "training")
    params = setting.apply(training.with_seed(training.seeds[0]))
    data_dir = sweep_data(profile, pilot.sweep.facts, training.data_seed)
    return [run_stage(profile, SWEEP_STREAM, pilot.method, stage, params=params, backbone=backbone,
                      runs_root=sweep_root(profile) / setting.name, data_dir=data_dir, verbose=False)
            for stage in sweep_stages(profile)]


def sweep_stages(profile: str) -> list[int]:
    """The stages the sweep trains: the stream's first ``sweep.stages`` (0: every stage)."""
    pilot = load_params(profile, "02_pilot")
    training = load_params(profile, "training")
    stages = benchmark.stream_stages(ensure_benchmark(profile, training.data_seed,
                                                      sweep_data(profile, pilot.sweep.facts, training.data_seed)),
                                     SWEEP_STREAM)
    return stages[:pilot.sweep.stages] if pilot.sweep.stages else stages


def stage1_validation_acc(profile: str, setting: Setting, backbone: str | None = None) -> float:
    """A setting's stage-1 ACC (%) on the validation split, the number the rule reads (its stage 1
    is trained first if it is not finished)."""
    pilot = load_params(profile, "02_pilot")
    training = load_params(profile, "training")
    params = setting.apply(training.with_seed(training.seeds[0]))
    manifest = run_stage(profile, SWEEP_STREAM, pilot.method, sweep_stages(profile)[0], params=params,
                         backbone=backbone, runs_root=sweep_root(profile) / setting.name,
                         data_dir=sweep_data(profile, pilot.sweep.facts, training.data_seed), verbose=False)
    return 100 * manifest["metrics"]["validation"]["acc"]


def picked_setting(profile: str, backbone: str | None = None) -> Setting | None:
    """The rule: the first setting in budget order whose stage-1 validation ACC reaches
    ``sweep.min_stage1_acc``; None if none does."""
    pilot = load_params(profile, "02_pilot")
    return next((s for s in settings(pilot)
                 if stage1_validation_acc(profile, s, backbone) >= pilot.sweep.min_stage1_acc), None)


class RegimeError(RuntimeError):
    """``training.yaml`` trains with another budget than the sweep's rule picks."""


def check_training_regime(profile: str, backbone: str | None = None) -> Setting | None:
    """Raise :class:`RegimeError`, naming the keys to set, when ``params/<profile>/training.yaml``
    does not train with the rule's pick; return the pick (None: no setting reaches the threshold,
    and training.yaml keeps its budget). ``make reproduce`` runs the sweep first and calls this
    before it trains anything else, so that no stage is trained at a budget the rule did not pick."""
    pick = picked_setting(profile, backbone)
    if pick is None:
        return None
    train = load_params(profile, "training").train
    if (train.epochs, train.learning_rate, set(train.lora.target_modules)) != (
            pick.epochs, pick.learning_rate, set(pick.target_modules)):
        threshold = load_params(profile, "02_pilot").sweep.min_stage1_acc
        raise RegimeError(
            f"params/{profile}/training.yaml trains {train.epochs:g} epochs at learning rate "
            f"{train.learning_rate:g} on {list(train.lora.target_modules)}, but the budget sweep's rule (the lowest "
            f"budget whose stage-1 validation ACC reaches {threshold:g}%, params/{profile}/02_pilot.yaml) picks "
            f"{pick.name}: set train.epochs: {pick.epochs:g}, train.learning_rate: {pick.learning_rate:g} and "
            f"train.lora.target_modules: {list(pick.target_modules)} (and the keys its comments tie to them, "
            "flearning.forgetting_epochs and forgetting_learning_rate), then run make reproduce again (the "
            "finished sweep is reused)")
    return pick
