"""Parameter files: one YAML per notebook and profile, validated against a typed schema.

Every notebook reads ``params/<profile>/<notebook>.yaml``; the stage-training knobs shared by every
notebook that trains (so that a stage trained once is reused by all of them) live in
``params/<profile>/training.yaml``. A file is checked strictly: an unknown key, a missing key, a
key given twice, a value of the wrong type or a number outside its allowed range is a
:class:`ParamsError` naming the file, the dotted key and what was expected, when the file is loaded
(every entry point loads its params before any data or model). There are no silent defaults: what a
run used is what its file says.

A numeric field's allowed range is declared next to it, as an interval: ``batch_size: int =
within("[1, inf)")``; a list field's range applies to each element.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml

from mscl.common.ranges import (  # noqa: F401  (re-exported: the schemas' vocabulary)
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    UNIT,
    ParamsError,
    Range,
    nonempty,
    within,
)

PARAMS_ROOT = Path(__file__).resolve().parents[2] / "params"
PROFILES = ("smoke", "cpu", "gpu")


# --------------------------------------------------------------------------- schemas
@dataclasses.dataclass(frozen=True)
class LoraParams:
    r: int = within(POSITIVE_INT)
    alpha: int = within(POSITIVE)
    dropout: float = within("[0, 1)")
    target_modules: list[str] = nonempty()


@dataclasses.dataclass(frozen=True)
class QuickstartParams:
    """notebooks/00_quickstart.ipynb"""
    backbone: str
    questions: list[str] = nonempty()
    max_new_tokens: int = within(POSITIVE_INT)
    lora: LoraParams


@dataclasses.dataclass(frozen=True)
class BenchmarkSizes:
    """How many facts each part of the benchmark draws (mscl/benchmark/); the paper's proportions at
    paper scale in profile gpu. One cross-domain stage is one domain: its facts are
    ``cross_independent_per_stage + cross_conflict_per_stage`` (paper: 2,000 + 1,000 = 3,000 per
    domain) and ``cross_conflict_per_stage`` is also how many facts two consecutive domains share
    (paper: 1,000)."""
    general: int = within(POSITIVE_INT)           # general-purpose facts, stage 0 (paper: 6,000)
    stage1_facts: int = within(POSITIVE_INT)      # domain-independent stream: the base set, retrained at every stage
    # domain-independent stream: more base facts, trained alike, whose held-out wordings are the
    # validation split (every choice by rule reads them; no claim does)
    validation_facts: int = within(COUNT)
    # domain-independent stream: stage-1 facts no later stage revises or retrains (held-out retention, KRR)
    heldout_facts: int = within(COUNT)
    # domain-independent stream: share of the base set revised at each of stages 2-5
    revised_share: float = within(UNIT)
    # domain-independent stream: share of the base set the backbone knows beforehand
    known_share: float = within(UNIT)
    probe_pool: int = within(COUNT)               # facts the backbone is asked before the build, to find known ones
    # cross-domain stream: domain-independent examples per stage (paper: 2,000)
    cross_independent_per_stage: int = within(POSITIVE_INT)
    # cross-domain stream: conflict examples per stage (paper: 1,000)
    cross_conflict_per_stage: int = within(POSITIVE_INT)
    # real-revisions stream (mscl/benchmark/revisions.py; no counterpart in the paper): evaluation
    # facts, a cap (the sources hold about 120 facts whose answer changes between the stage dates)
    real_facts: int = within(POSITIVE_INT)
    # real-revisions stream: validation facts (trained alike) and stage-1-only facts (held-out retention)
    real_validation_facts: int = within(COUNT)
    real_heldout_facts: int = within(COUNT)
    # real-revisions stream: share of its facts whose answer never changes (the retention set)
    real_stable_share: float = within(UNIT)


@dataclasses.dataclass(frozen=True)
class DataBuildParams:
    """notebooks/01_data_build.ipynb"""
    profile: str                       # must name the profile folder the file is in
    seed: int = within(SEED)           # the seed the benchmark is built with by default
    sizes: BenchmarkSizes


@dataclasses.dataclass(frozen=True)
class TrainParams:
    epochs: float = within(POSITIVE)
    batch_size: int = within(POSITIVE_INT)
    grad_accum: int = within(POSITIVE_INT)
    learning_rate: float = within(POSITIVE)
    warmup_ratio: float = within("[0, 1)")
    weight_decay: float = within(NON_NEGATIVE)
    max_length: int = within(POSITIVE_INT)
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
    max_new_tokens: int = within(POSITIVE_INT)    # greedy mode (the authors' mode generates up to 256)
    batch_size: int = within(POSITIVE_INT)
    max_items: int = within(COUNT)                # cap per evaluation set; 0 means all
    bootstrap: int = within(POSITIVE_INT)         # bootstrap resamples for confidence intervals

    def problems(self) -> list[tuple[str, str]]:
        if self.mode not in EVAL_MODES:
            return [("mode", f"one of {', '.join(EVAL_MODES)}, got {self.mode!r}")]
        return []


RESAMPLE = ("stage_start", "every_epoch")  # when PBL's K samples are drawn


@dataclasses.dataclass(frozen=True)
class PBLParams:
    """The preference-based learning bias (paper section 'learning bias')."""
    k: int = within(POSITIVE_INT)                 # responses sampled per training question
    temperature: float = within(POSITIVE)
    top_p: float = within("(0, 1]")
    max_new_tokens: int = within(POSITIVE_INT)
    alpha: float = within(NON_NEGATIVE)           # weight of L_PP (aligned)
    beta: float = within(NON_NEGATIVE)            # weight of L_NP (conflicting)
    variant: str                   # "paper" (exact, unbounded) or "sigmoid" (bounded)
    scale: float = within(POSITIVE)               # log-ratio scale inside the bounded variant
    clamp: float = within(NON_NEGATIVE)           # |log-ratio| clamp guarding the paper variant; 0 disables
    reduction: str                 # "sum" (the printed formula) or "mean" over the batch's responses
    nll_weight: float = within(NON_NEGATIVE)      # weight of the gold answer's NLL in the total objective
    preference_weight: float = within(NON_NEGATIVE)  # weight of the preference-bias loss in the total objective
    # log each term's gradient norm (NLL, L_PP, L_NP) every this many optimizer steps; 0: never
    grad_norms_every: int = within(COUNT)
    # when the K samples are drawn (the paper does not say): "stage_start", once from the model at the
    # stage's start; "every_epoch", redrawn from the model being trained before each later epoch
    resample: str

    def problems(self) -> list[tuple[str, str]]:
        if self.resample not in RESAMPLE:
            return [("resample", f"one of {', '.join(RESAMPLE)}, got {self.resample!r}")]
        return []


@dataclasses.dataclass(frozen=True)
class MoCLParams:
    """The MoCL baseline (mscl/methods/mocl.py; Wang et al., NAACL 2024). Modules use train.lora."""
    # alpha_i = softmax(cos(q, k_i) / temperature); authors' code: scale 8, i.e. 0.125
    temperature: float = within(POSITIVE)
    learn_keys: bool               # the newest key learns through the task loss (as in the original); false: prototypes


@dataclasses.dataclass(frozen=True)
class FLearningParams:
    """The F-Learning baseline (mscl/methods/flearning.py; Ni et al., 2023, arXiv 2311.08011)."""
    # theta' = theta - lambda * delta_old, delta_old the old-knowledge LoRA's delta (0: plain fine-tuning)
    forgetting_lambda: float = within(NON_NEGATIVE)
    forgetting_epochs: float = within(POSITIVE)   # epochs of the old-knowledge LoRA (train.lora, train.batch_size)
    forgetting_learning_rate: float = within(POSITIVE)


@dataclasses.dataclass(frozen=True)
class ReplayParams:
    """The replay baseline (mscl/methods/replay.py): the share of earlier stages' facts rehearsed."""
    share: float = within(UNIT)   # of the distinct facts earlier stages trained (06_ablations chooses it)


@dataclasses.dataclass(frozen=True)
class DPOParams:
    """DPO on revisions (mscl/methods/dpo.py): ``nll_weight * NLL + preference_weight * L_DPO(beta)``."""
    beta: float = within(POSITIVE)                 # trl.DPOConfig's default is 0.1
    nll_weight: float = within(NON_NEGATIVE)
    preference_weight: float = within(NON_NEGATIVE)


@dataclasses.dataclass(frozen=True)
class OSFParams:
    """PEFT's OSF, stage after stage (mscl/methods/osf.py); target modules are train.lora's."""
    effective_rank: float = within("(0, 1]")       # the frozen share of the first stage after the shared ones
    rank_step: float = within(UNIT)                # ... grows by this at every later stage
    max_effective_rank: float = within("(0, 1]")   # ... up to this
    learning_rate: float = within(POSITIVE)        # full fine-tuning of the singular factors, not LoRA's


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Self-distillation augmentation and dynamic data selection (mscl/core/augment.py, mscl/core/selection.py).
    Which strategies and which selection mode a method uses is its name (``pbl+bki``, ``ours``...)."""
    count: int = within(POSITIVE_INT)             # outputs sampled per question, per strategy and round
    temperature: float = within(POSITIVE)
    top_p: float = within("(0, 1]")
    max_new_tokens: int = within(POSITIVE_INT)
    rounds: int = within(POSITIVE_INT)            # round r > 1 rewrites the x' selected in round r - 1
    # an x' longer than this many times its original question (characters) is dropped
    max_length_ratio: float = within(POSITIVE)
    # dynamic selection: MI(x'; x) >= this quantile of its (strategy, round) group
    mi_quantile: float = within(UNIT)
    mi_min: float = within(NON_NEGATIVE)          # dynamic selection: ... and at least this many nats
    indication: bool               # dynamic selection: the LLM must also answer x' with y or as it answers x
    # ... "as it answers x": token F1 of the two answers at least this (1.0: identical)
    indication_f1: float = within(UNIT)
    preference: bool               # augmented pairs also get PBL's sampled responses (false: gold NLL only)
    # the model rewrites with this share of its fine-tuning delta since the backbone: 1.0 is the
    # model at the stage's start (the paper), 0.0 the backbone before stage 1 (see mscl/core/augment.py)
    rewriter_scale: float = within(UNIT)


@dataclasses.dataclass(frozen=True)
class TrainingParams:
    """params/<profile>/training.yaml: everything a stage run depends on."""
    backbone: str
    # the training seed of a stage run (`python -m mscl run --seed` overrides it)
    seed: int = within(SEED)
    # the training seeds the notebooks run and report (mean and spread over them)
    seeds: list[int] = within(SEED, nonempty=True)
    # the seed the benchmark data is built with (the same for every training seed)
    data_seed: int = within(SEED)
    # the first `shared_stages` stages of every stream are trained once with CIT and are every
    # method's starting point (the paper's table: methods differ from stage 2 on); 0 = none shared
    shared_stages: int = within(COUNT)
    train: TrainParams
    eval: EvalParams
    pbl: PBLParams
    mocl: MoCLParams
    flearning: FLearningParams
    augment: AugmentParams
    replay: ReplayParams
    dpo: DPOParams
    osf: OSFParams
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
    stage: int = within(POSITIVE_INT)
    method: str


@dataclasses.dataclass(frozen=True)
class SweepParams:
    """notebooks/02_pilot.ipynb: CIT's training budget swept on a reduced stream (mscl/pipeline/pilot.py)."""
    facts: int = within(POSITIVE_INT)             # the first this many facts of the base set, at every stage
    epochs: list[float] = within(POSITIVE, nonempty=True)
    learning_rates: list[float] = within(POSITIVE, nonempty=True)
    target_modules: dict[str, list[str]] = nonempty()   # named LoRA target sets
    # the rule: the lowest budget whose stage-1 ACC (%) reaches this
    min_stage1_acc: float = within("[0, 100]", "a percentage")
    stages: int = within(COUNT, "the first this many stages of the stream; 0: every stage")

    def problems(self) -> list[tuple[str, str]]:
        if self.stages == 1:  # the sweep's table reads the stale answers of a stage after the first
            return [("stages", "0 (every stage) or at least 2, got 1")]
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
    methods: list[str] = nonempty()    # the first is the baseline the changes are measured against
    backbones: list[str] = nonempty()


@dataclasses.dataclass(frozen=True)
class StreamMethodsParams:
    """notebooks/05_cross_domain.ipynb and 07_retention.ipynb: one stream, several methods."""
    stream: str
    methods: list[str] = nonempty()


@dataclasses.dataclass(frozen=True)
class ChoiceParams:
    """One knob chosen by measurement (mscl/pipeline/choices.py): ``method`` trained up to ``stage`` under each
    setting, with every training seed; ties go to ``default``."""
    method: str
    stage: int = within("[2, inf)", "a stage after the shared first one")
    default: str                                  # the setting a tie goes to (the paper's form)
    settings: dict[str, dict[str, float | str]]   # name -> dotted training.yaml keys and their values

    def problems(self) -> list[tuple[str, str]]:
        if self.default not in self.settings:
            return [("default", f"one of the settings ({', '.join(self.settings)}), got {self.default!r}")]
        return _override_problems("settings", self.settings)


def _override_problems(where: str, named: dict[str, dict]) -> list[tuple[str, str]]:
    """Each named mapping of dotted ``training.yaml`` keys is non-empty, and each value obeys the
    range of the key it sets."""
    for name, overrides in named.items():
        bad = [k for k in overrides if k.count(".") != 1]
        if bad or not overrides:
            return [(f"{where}.{name}", f"a non-empty mapping of `section.field` keys, got {overrides!r}")]
        for key, value in overrides.items():
            rule = _training_range(key)
            if rule is not None and isinstance(value, (int, float)) and value not in rule:
                return [(f"{where}.{name}.{key}", f"{rule.describe(value)}, got {value!r}")]
    return []


@dataclasses.dataclass(frozen=True)
class BudgetAxisParams:
    """notebooks/04b_budget_axis.ipynb: the main comparison at several training budgets on a reduced
    stream (mscl/pipeline/budgets.py), every method with every training seed."""
    stream: str
    methods: list[str] = nonempty()
    facts: int = within(POSITIVE_INT)              # evaluation facts kept (every validation fact is kept too)
    stages: int = within("[2, inf)", "a number of stages, the first shared")   # the first this many stages
    budgets: dict[str, dict[str, float | str]] = nonempty()   # name -> training.yaml overrides, lowest first

    def problems(self) -> list[tuple[str, str]]:
        return _override_problems("budgets", self.budgets)


@dataclasses.dataclass(frozen=True)
class AblationParams:
    """notebooks/06_ablations.ipynb: tables of method variants compared at one stage, and the
    knobs chosen by measurement (``choices``)."""
    stream: str
    stage: int = within(POSITIVE_INT)
    tables: dict[str, list[str]]   # table name -> the variants it compares, in order
    # the training seeds the ablations run (of training.yaml's seeds)
    seeds: list[int] = within(SEED, nonempty=True)
    choices: dict[str, ChoiceParams]           # study name -> its settings and rule (mscl/pipeline/choices.py)
    split_settings: list[list[float]]          # [K, temperature] pairs the preference split is sampled under

    def problems(self) -> list[tuple[str, str]]:
        k_range, t_range = _field_range(PBLParams, "k"), _field_range(PBLParams, "temperature")
        for i, pair in enumerate(self.split_settings):
            if len(pair) != 2 or not pair[0].is_integer() or pair[0] not in k_range or pair[1] not in t_range:
                return [(f"split_settings[{i}]", f"a [K, temperature] pair, K an integer in {k_range.spec} and "
                                                 f"temperature in {t_range.spec}, got {pair!r}")]
        return []


SCHEMAS: dict[str, type] = {
    "00_quickstart": QuickstartParams,
    "01_data_build": DataBuildParams,
    "02_pilot": PilotParams,
    "03_stage_training": StageTrainingParams,
    "04_domain_independent": MainTableParams,
    "04b_budget_axis": BudgetAxisParams,
    "05_cross_domain": StreamMethodsParams,
    "05b_real_revisions": StreamMethodsParams,
    "06_ablations": AblationParams,
    "07_retention": StreamMethodsParams,
    "training": TrainingParams,
}


def _field_range(schema: type, name: str) -> Range | None:
    """The declared range of field ``name`` of dataclass ``schema`` (``None``: none declared)."""
    field = {f.name: f for f in dataclasses.fields(schema)}.get(name)
    return field.metadata.get("range") if field is not None else None


def _training_range(key: str) -> Range | None:
    """The declared range of a ``section.field`` key of training.yaml (``None``: none, or no such key)."""
    section, _, name = key.partition(".")
    tp = typing.get_type_hints(TrainingParams).get(section)
    return _field_range(tp, name) if dataclasses.is_dataclass(tp) else None


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
    return build(schema, load_yaml(path), path=str(path))


MERGE_TAG = "tag:yaml.org,2002:merge"


def load_yaml(path: str | Path) -> Any:
    """A YAML file read with ``yaml.SafeLoader``, strictly: invalid YAML is a :class:`ParamsError`
    naming the file, the line and the column, and so is a key given twice in one mapping (plain
    YAML silently keeps the second), naming the dotted key and both lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, path)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        where = exc.problem_mark or exc.context_mark
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        context = ""
        if exc.context and exc.problem:
            started = exc.context_mark
            context = f" ({exc.context}" + (f" that starts at line {started.line + 1}, column {started.column + 1})"
                                            if started and started is not where else ")")
        raise ParamsError(f"{path}: not valid YAML{at}: {exc.problem or exc.context}{context}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.Node, path: Path, prefix: str = "", seen: set | None = None) -> None:
    """Walk a composed YAML document: a scalar key given twice in one mapping is a :class:`ParamsError`."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue  # `<<: *anchor` keys are meant to be overridden; complex keys are not params
            key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if key in lines:
                raise ParamsError(f"{path}: key {prefix + key_node.value!r} is given twice, at line {lines[key]} "
                                  f"and line {line} (YAML would silently keep the second): keep one")
            lines[key] = line
            _refuse_duplicate_keys(value_node, path, f"{prefix}{key_node.value}.", seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, path, f"{prefix.rstrip('.')}[{i}].", seen)


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
    for name, field in fields.items():
        _check_range(field, values[name], path, f"{prefix}{name}")
    obj = schema(**values)
    for key, expected in getattr(obj, "problems", lambda: [])():  # checks a schema declares in code
        raise ParamsError(f"{where}key {prefix + key!r} expected {expected}")
    return obj


def _check_range(field: dataclasses.Field, value: Any, path: str, key: str) -> None:
    """The range (and non-emptiness) a field declares; a list's range applies to each element."""
    if field.metadata.get("nonempty") and not value:
        raise ParamsError(f"{path}: key {key!r} expected a non-empty {type(value).__name__}, got {value!r}")
    rule = field.metadata.get("range")
    if rule is None:
        return
    items = enumerate(value) if isinstance(value, list) else [(None, value)]
    for i, item in items:
        if item not in rule:
            name = key if i is None else f"{key}[{i}]"
            raise ParamsError(f"{path}: key {name!r} expected {rule.describe(item)}, got {item!r}")


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
