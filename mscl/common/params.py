"""Parameter files: one YAML per notebook and profile, validated against a typed schema.

Every notebook reads ``params/<profile>/<notebook>.yaml``; the stage-training knobs shared by every
notebook that trains (so that a stage trained once is reused by all of them) live in
``params/<profile>/training.yaml``. A file is checked strictly: an unknown key, a missing key or a
value of the wrong type is a :class:`ParamsError` naming the file, the dotted key and what was
expected. There are no silent defaults: what a run used is what its file says.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml

PARAMS_ROOT = Path(__file__).resolve().parents[2] / "params"
PROFILES = ("smoke", "cpu", "gpu")


class ParamsError(ValueError):
    """A params file that does not match its schema; the message names the file and the key."""


# --------------------------------------------------------------------------- schemas
@dataclasses.dataclass(frozen=True)
class LoraParams:
    r: int
    alpha: int
    dropout: float
    target_modules: list[str]


@dataclasses.dataclass(frozen=True)
class QuickstartParams:
    """notebooks/00_quickstart.ipynb"""
    backbone: str
    questions: list[str]
    max_new_tokens: int
    lora: LoraParams


@dataclasses.dataclass(frozen=True)
class BenchmarkSizes:
    """How many facts each part of the benchmark draws (mscl/benchmark/); the paper's proportions at
    paper scale in profile gpu. One cross-domain stage is one domain: its facts are
    ``cross_independent_per_stage + cross_conflict_per_stage`` (paper: 2,000 + 1,000 = 3,000 per
    domain) and ``cross_conflict_per_stage`` is also how many facts two consecutive domains share
    (paper: 1,000)."""
    general: int                       # general-purpose facts, stage 0 (paper: 6,000)
    stage1_facts: int                  # domain-independent stream: the base set, retrained at every stage
    revised_share: float               # domain-independent stream: share of the base set revised at each of stages 2-5
    known_share: float                 # domain-independent stream: share of the base set the backbone knows beforehand
    probe_pool: int                    # facts the backbone is asked before the build, to find known ones
    cross_independent_per_stage: int   # cross-domain stream: domain-independent examples per stage (paper: 2,000)
    cross_conflict_per_stage: int      # cross-domain stream: conflict examples per stage (paper: 1,000)


@dataclasses.dataclass(frozen=True)
class DataBuildParams:
    """notebooks/01_data_build.ipynb"""
    profile: str                       # must name the profile folder the file is in
    seed: int                          # the seed the benchmark is built with by default
    sizes: BenchmarkSizes


@dataclasses.dataclass(frozen=True)
class TrainParams:
    epochs: float
    batch_size: int
    grad_accum: int
    learning_rate: float
    warmup_ratio: float
    weight_decay: float
    max_length: int
    lora: LoraParams
    # the backbone's precision: auto (bf16 on a CUDA GPU that has it, else fp32), bfloat16, float32
    dtype: str = "auto"

    def problems(self) -> list[tuple[str, str]]:
        if self.dtype not in DTYPES:
            return [("dtype", f"one of {', '.join(DTYPES)}, got {self.dtype!r}")]
        return []


DTYPES = ("auto", "bfloat16", "float32")


EVAL_MODES = ("greedy", "authors")


@dataclasses.dataclass(frozen=True)
class EvalParams:
    mode: str                      # "greedy" (the system prompt, greedy decoding) or "authors" (their released script)
    max_new_tokens: int            # greedy mode (the authors' mode generates up to 256)
    batch_size: int
    max_items: int                 # cap per evaluation set; 0 means all
    bootstrap: int                 # bootstrap resamples for confidence intervals

    def problems(self) -> list[tuple[str, str]]:
        if self.mode not in EVAL_MODES:
            return [("mode", f"one of {', '.join(EVAL_MODES)}, got {self.mode!r}")]
        return []


@dataclasses.dataclass(frozen=True)
class PBLParams:
    """The preference-based learning bias (paper section 'learning bias')."""
    k: int                         # responses sampled per training question
    temperature: float
    top_p: float
    max_new_tokens: int
    alpha: float                   # weight of L_PP (aligned)
    beta: float                    # weight of L_NP (conflicting)
    variant: str                   # "paper" (exact, unbounded) or "sigmoid" (bounded)
    scale: float                   # log-ratio scale inside the bounded variant
    clamp: float                   # |log-ratio| clamp guarding the paper variant; 0 disables
    reduction: str                 # "sum" (the printed formula) or "mean" over the batch's responses
    nll_weight: float              # weight of the gold answer's NLL in the total objective
    preference_weight: float       # weight of the preference-bias loss in the total objective


@dataclasses.dataclass(frozen=True)
class MoCLParams:
    """The MoCL baseline (mscl/methods/mocl.py; Wang et al., NAACL 2024). Modules use train.lora."""
    temperature: float             # alpha_i = softmax(cos(q, k_i) / temperature); authors' code: scale 8, i.e. 0.125
    learn_keys: bool               # the newest key learns through the task loss (as in the original); false: prototypes


@dataclasses.dataclass(frozen=True)
class FLearningParams:
    """The F-Learning baseline (mscl/methods/flearning.py; Ni et al., 2023, arXiv 2311.08011)."""
    forgetting_lambda: float       # theta' = theta - lambda * delta_old, delta_old the old-knowledge LoRA's delta
    forgetting_epochs: float       # epochs of the old-knowledge LoRA (train.lora, train.batch_size)
    forgetting_learning_rate: float


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Self-distillation augmentation and dynamic data selection (mscl/core/augment.py, mscl/core/selection.py).
    Which strategies and which selection mode a method uses is its name (``pbl+bki``, ``ours``...)."""
    count: int                     # outputs sampled per question, per strategy and round
    temperature: float
    top_p: float
    max_new_tokens: int
    rounds: int                    # round r > 1 rewrites the x' selected in round r - 1
    max_length_ratio: float        # an x' longer than this many times its original question (characters) is dropped
    mi_quantile: float             # dynamic selection: MI(x'; x) >= this quantile of its (strategy, round) group
    mi_min: float                  # dynamic selection: ... and at least this many nats
    indication: bool               # dynamic selection: the LLM must also answer x' with y or as it answers x
    indication_f1: float           # ... "as it answers x": token F1 of the two answers at least this (1.0: identical)
    preference: bool               # augmented pairs also get PBL's sampled responses (false: gold NLL only)
    # the model rewrites with this share of its fine-tuning delta since the backbone: 1.0 is the
    # model at the stage's start (the paper), 0.0 the backbone before stage 1 (see mscl/core/augment.py)
    rewriter_scale: float

    def problems(self) -> list[tuple[str, str]]:
        out = []
        for key in ("rewriter_scale", "top_p", "mi_quantile", "indication_f1"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                out.append((key, f"a number in [0, 1], got {getattr(self, key)}"))
        for key in ("count", "rounds", "max_new_tokens"):
            if getattr(self, key) < 1:
                out.append((key, f"an integer of at least 1, got {getattr(self, key)}"))
        return out


@dataclasses.dataclass(frozen=True)
class TrainingParams:
    """params/<profile>/training.yaml: everything a stage run depends on."""
    backbone: str
    seed: int                          # the training seed of a stage run (`python -m mscl run --seed` overrides it)
    seeds: list[int]                   # the training seeds the notebooks run and report (mean and spread over them)
    data_seed: int                     # the seed the benchmark data is built with (the same for every training seed)
    # the first `shared_stages` stages of every stream are trained once with CIT and are every
    # method's starting point (the paper's table: methods differ from stage 2 on); 0 = none shared
    shared_stages: int
    train: TrainParams
    eval: EvalParams
    pbl: PBLParams
    mocl: MoCLParams
    flearning: FLearningParams
    augment: AugmentParams
    require_cuda: bool = False         # refuse to start without a CUDA GPU (the gpu profile), before any data or model
    # an augmenting stage that keeps no rewrite is an error (smoke's random model: false)
    require_kept_rewrites: bool = True

    def problems(self) -> list[tuple[str, str]]:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            return [("seeds", f"a non-empty list of distinct integers, got {self.seeds}")]
        return []

    def with_seed(self, seed: int) -> "TrainingParams":
        """These parameters with training seed ``seed`` (the data stays ``data_seed``'s)."""
        return dataclasses.replace(self, seed=seed)


@dataclasses.dataclass(frozen=True)
class StageTrainingParams:
    """notebooks/03_stage_training.ipynb: one stage of one method."""
    stream: str
    stage: int
    method: str


@dataclasses.dataclass(frozen=True)
class SweepParams:
    """notebooks/02_pilot.ipynb: CIT's training budget swept on a reduced stream (mscl/pipeline/pilot.py)."""
    facts: int                         # the first this many facts of the base set, at every stage
    epochs: list[float]
    learning_rates: list[float]
    target_modules: dict[str, list[str]]   # named LoRA target sets
    min_stage1_acc: float              # the rule: the lowest budget whose stage-1 ACC (%) reaches this

    def problems(self) -> list[tuple[str, str]]:
        if self.facts < 1:
            return [("facts", f"at least 1, got {self.facts}")]
        if not (self.epochs and self.learning_rates and self.target_modules):
            return [("epochs", "non-empty lists of epochs, learning rates and target-module sets")]
        return []


@dataclasses.dataclass(frozen=True)
class PilotParams:
    """notebooks/02_pilot.ipynb: plain continual fine-tuning over a stream, and its budget sweep."""
    stream: str
    method: str
    sweep: SweepParams


@dataclasses.dataclass(frozen=True)
class MainTableParams:
    """notebooks/04_domain_independent.ipynb: the paper's main table."""
    stream: str
    methods: list[str]             # the first is the baseline the changes are measured against
    backbones: list[str]


@dataclasses.dataclass(frozen=True)
class StreamMethodsParams:
    """notebooks/05_cross_domain.ipynb and 07_retention.ipynb: one stream, several methods."""
    stream: str
    methods: list[str]


@dataclasses.dataclass(frozen=True)
class ChoiceParams:
    """One knob chosen by measurement (mscl/pipeline/choices.py): ``method`` trained up to ``stage`` under each
    setting, with every training seed; ties go to ``default``."""
    method: str
    stage: int
    default: str                                  # the setting a tie goes to (the paper's form)
    settings: dict[str, dict[str, float | str]]   # name -> dotted training.yaml keys and their values

    def problems(self) -> list[tuple[str, str]]:
        if self.default not in self.settings:
            return [("default", f"one of the settings ({', '.join(self.settings)}), got {self.default!r}")]
        if self.stage < 2:
            return [("stage", f"a stage after the shared first one (2 or later), got {self.stage}")]
        for name, overrides in self.settings.items():
            bad = [k for k in overrides if k.count(".") != 1]
            if bad or not overrides:
                return [(f"settings.{name}", f"a non-empty mapping of `section.field` keys, got {overrides!r}")]
        return []


@dataclasses.dataclass(frozen=True)
class AblationParams:
    """notebooks/06_ablations.ipynb: tables of method variants compared at one stage, and the
    knobs chosen by measurement (``choices``)."""
    stream: str
    stage: int
    tables: dict[str, list[str]]   # table name -> the variants it compares, in order
    seeds: list[int]               # the training seeds the ablations run (of training.yaml's seeds)
    choices: dict[str, ChoiceParams]           # study name -> its settings and rule (mscl/pipeline/choices.py)
    split_settings: list[list[float]]          # [K, temperature] pairs the preference split is sampled under


SCHEMAS: dict[str, type] = {
    "00_quickstart": QuickstartParams,
    "01_data_build": DataBuildParams,
    "02_pilot": PilotParams,
    "03_stage_training": StageTrainingParams,
    "04_domain_independent": MainTableParams,
    "05_cross_domain": StreamMethodsParams,
    "06_ablations": AblationParams,
    "07_retention": StreamMethodsParams,
    "training": TrainingParams,
}


# --------------------------------------------------------------------------- loading
def params_path(profile: str, name: str) -> Path:
    """Where the params file ``name`` of ``profile`` lives; an unknown profile is an error."""
    if profile not in PROFILES:
        raise ParamsError(f"unknown profile {profile!r}; known profiles: {', '.join(PROFILES)}")
    return PARAMS_ROOT / profile / f"{name}.yaml"


def load_params(profile: str, name: str, schema: type | None = None) -> Any:
    """Load and validate ``params/<profile>/<name>.yaml`` against its schema."""
    return load_params_file(params_path(profile, name), schema or SCHEMAS.get(name))


def load_params_file(path: str | Path, schema: type | None) -> Any:
    """Load a YAML file and build ``schema`` from it, strictly (see the module docstring)."""
    path = Path(path)
    if schema is None:
        raise ParamsError(f"{path}: no schema is registered for {path.stem!r}; known: {sorted(SCHEMAS)}")
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    return build(schema, raw, path=str(path))


def build(schema: type, raw: Any, path: str = "<params>", prefix: str = "") -> Any:
    """Build dataclass ``schema`` from a mapping, checking keys and types; errors name path and key."""
    where = f"{path}: "
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}{prefix.rstrip('.') or 'the file'}: expected a mapping of keys, "
                          f"got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(f"{where}unknown key {prefix + unknown[0]!r}; expected keys: {', '.join(fields)}")
    missing = [k for k in fields if k not in raw]
    if missing:
        raise ParamsError(f"{where}missing key {prefix + missing[0]!r} (expected {_type_name(hints[missing[0]])})")
    values = {k: _coerce(hints[k], raw[k], path, f"{prefix}{k}") for k in fields}
    obj = schema(**values)
    for key, expected in getattr(obj, "problems", lambda: [])():  # range checks a schema declares
        raise ParamsError(f"{where}key {prefix + key!r} expected {expected}")
    return obj


def _coerce(tp: Any, value: Any, path: str, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path, prefix=f"{key}.")
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        for option in get_args(tp):
            if option is type(None):
                continue
            try:
                return _coerce(option, value, path, key)
            except ParamsError:
                continue
        raise _type_error(tp, value, path, key)
    if origin is list:
        (item,) = get_args(tp)
        if not isinstance(value, list):
            raise _type_error(tp, value, path, key)
        return [_coerce(item, v, path, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(tp, value, path, key)
        _, vt = get_args(tp)
        return {k: _coerce(vt, v, path, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(tp, value, path, key)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(tp, value, path, key)
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise _type_error(tp, value, path, key)
        return value
    if tp is Any:
        return value
    raise ParamsError(f"{path}: {key}: unsupported schema type {tp!r}")


def _type_name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return getattr(tp, "__name__", None) if get_origin(tp) is None else str(tp).replace("typing.", "")


def _type_error(tp: Any, value: Any, path: str, key: str) -> ParamsError:
    return ParamsError(f"{path}: key {key!r} expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def to_dict(params: Any) -> dict:
    """The plain-data form of a params object (saved with every run's results)."""
    return dataclasses.asdict(params)
