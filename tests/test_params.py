"""Params files: every shipped file validates; malformed ones are errors naming the file and key (and
the line, the allowed range); damaged JSON/JSONL artifacts name the file, the line and the column."""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml

from mscl.common.io import CorruptFileError, read_json, read_jsonl, write_json, write_jsonl
from mscl.common.params import (
    PARAMS_ROOT,
    PROFILES,
    SCHEMAS,
    ParamsError,
    TrainingParams,
    load_params,
    load_params_file,
    load_yaml,
)

GOOD = Path(PARAMS_ROOT / "smoke" / "00_quickstart.yaml").read_text()
TRAINING = Path(PARAMS_ROOT / "smoke" / "training.yaml").read_text()


def _set(text: str, key: str, value: str) -> str:
    """``text`` (a params file) with the dotted ``key`` set to ``value`` (YAML)."""
    raw = yaml.safe_load(text)
    *sections, name = key.split(".")
    section = raw
    for part in sections:
        section = section[part]
    section[name] = yaml.safe_load(value)
    return yaml.safe_dump(raw, sort_keys=False)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_shipped_params_file_validates(profile):
    files = sorted((PARAMS_ROOT / profile).glob("*.yaml"))
    assert files
    for path in files:
        assert path.stem in SCHEMAS, f"{path} has no schema"
        load_params(profile, path.stem)


def test_profiles_have_the_same_files():
    names = [sorted(p.name for p in (PARAMS_ROOT / profile).glob("*.yaml")) for profile in PROFILES]
    assert names[0] == names[1] == names[2]


def _write(tmp_path, text, name="00_quickstart.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_key(tmp_path):
    path = _write(tmp_path, GOOD + "learning_rat: 0.1\n")
    with pytest.raises(ParamsError, match=rf"{path}.*unknown key 'learning_rat'"):
        load_params_file(path, SCHEMAS["00_quickstart"])


def test_unknown_nested_key(tmp_path):
    path = _write(tmp_path, GOOD.replace("  r: 8", "  r: 8\n  rank: 8"))
    with pytest.raises(ParamsError, match=r"unknown key 'lora.rank'"):
        load_params_file(path, SCHEMAS["00_quickstart"])


def test_missing_key(tmp_path):
    path = _write(tmp_path, GOOD.replace("max_new_tokens: 24\n", ""))
    with pytest.raises(ParamsError, match=rf"{path}.*missing key 'max_new_tokens'"):
        load_params_file(path, SCHEMAS["00_quickstart"])


def test_wrong_type(tmp_path):
    path = _write(tmp_path, GOOD.replace("max_new_tokens: 24", "max_new_tokens: many"))
    with pytest.raises(ParamsError, match=r"key 'max_new_tokens' expected int, got 'many'"):
        load_params_file(path, SCHEMAS["00_quickstart"])


def test_not_yaml(tmp_path):
    path = _write(tmp_path, "backbone: [unclosed\n")
    with pytest.raises(ParamsError, match=rf"{path}: not valid YAML at line 2, column 1: .*starts at line 1"):
        load_params_file(path, SCHEMAS["00_quickstart"])
    path = _write(tmp_path, GOOD.replace("  r: 8", "  r: 8: 9"))
    line = GOOD.splitlines().index("  r: 8") + 1
    with pytest.raises(ParamsError, match=rf"{path}: not valid YAML at line {line}, column 7: mapping values are not"):
        load_params_file(path, SCHEMAS["00_quickstart"])


def test_a_key_given_twice_names_both_lines(tmp_path):
    lines = TRAINING.splitlines()
    first = lines.index("  batch_size: 4") + 1
    path = _write(tmp_path, TRAINING + "train:\n  batch_size: 8\n", "training.yaml")  # a whole section twice
    with pytest.raises(ParamsError, match=rf"{path}: key 'train' is given twice, at line {lines.index('train:') + 1} "
                                          rf"and line {len(lines) + 1}"):
        load_params_file(path, TrainingParams)
    nested = TRAINING.replace("  batch_size: 4\n", "  batch_size: 4\n  grad_accum: 1\n  batch_size: 8\n")
    path = _write(tmp_path, nested, "training.yaml")
    with pytest.raises(ParamsError,
                       match=rf"key 'train.batch_size' is given twice, at line {first} and line {first + 2}"):
        load_params_file(path, TrainingParams)
    inside_a_list = "tables:\n  - {a: 1, a: 2}\n"
    path = _write(tmp_path, inside_a_list, "06_ablations.yaml")
    with pytest.raises(ParamsError, match=r"key 'tables\[0\].a' is given twice, at line 2 and line 2"):
        load_params_file(path, SCHEMAS["06_ablations"])
    anchors = "base: &b {x: 1}\nover:\n  <<: *b\n  x: 2\n"  # a merge key's value may be overridden
    assert load_yaml(_write(tmp_path, anchors, "anchors.yaml")) == {"base": {"x": 1}, "over": {"x": 2}}


@pytest.mark.parametrize("key, value, expected", [
    ("train.batch_size", "0", r"an integer in \[1, inf\), got 0"),
    ("train.learning_rate", "-5", r"a number in \(0, inf\), got -5"),
    ("train.learning_rate", ".nan", r"a number in \(0, inf\), got nan"),
    ("train.epochs", "0", r"a number in \(0, inf\)"),
    ("train.grad_accum", "0", r"an integer in \[1, inf\)"),
    ("train.warmup_ratio", "1.0", r"a number in \[0, 1\)"),
    ("train.weight_decay", "-0.1", r"a number in \[0, inf\)"),
    ("train.max_length", "0", r"an integer in \[1, inf\)"),
    ("train.lora.r", "0", r"an integer in \[1, inf\)"),
    ("train.lora.dropout", "1.0", r"a number in \[0, 1\)"),
    ("pbl.top_p", "0", r"a number in \(0, 1\]"),
    ("pbl.temperature", "0", r"a number in \(0, inf\)"),
    ("pbl.k", "0", r"an integer in \[1, inf\)"),
    ("eval.max_new_tokens", "0", r"an integer in \[1, inf\)"),
    ("augment.mi_quantile", "1.5", r"a number in \[0, 1\]"),
    ("seeds", "[0, -1]", r"an integer in \[0, inf\), got -1"),
    ("seeds", "[]", r"a non-empty list"),
])
def test_a_value_out_of_range_names_the_key_and_the_range(tmp_path, key, value, expected):
    path = _write(tmp_path, _set(TRAINING, key, value), "training.yaml")
    index = r"\[1\]" if value == "[0, -1]" else ""
    where = re.escape(f"{path}: key '{key}")
    with pytest.raises(ParamsError, match=rf"{where}{index}' expected {expected}"):
        load_params_file(path, TrainingParams)


def test_the_bounds_themselves_are_allowed(tmp_path):
    for key, value in [("train.warmup_ratio", "0.0"), ("pbl.top_p", "1.0"), ("augment.mi_quantile", "1.0"),
                       ("eval.max_items", "0"), ("shared_stages", "0"), ("pbl.clamp", "0.0")]:
        load_params_file(_write(tmp_path, _set(TRAINING, key, value), "training.yaml"), TrainingParams)


def test_every_numeric_field_declares_its_range():
    """A new numeric knob cannot slip in unchecked: every int/float field (or list of them) of every
    schema has a ``within(...)`` range."""
    def walk(schema):
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                yield from walk(tp)
            elif tp in (int, float) or tp in (list[int], list[float]):
                yield f"{schema.__name__}.{f.name}", f.metadata.get("range")
    for schema in SCHEMAS.values():
        for name, rule in walk(schema):
            assert rule is not None, f"{name} has no declared range"


def test_overrides_and_split_settings_obey_the_ranges():
    from mscl.common.params import AblationParams, ChoiceParams, build

    with pytest.raises(ParamsError, match=r"key 'settings.a.pbl.k' expected a number in \[1, inf\), got 0"):
        build(ChoiceParams, {"method": "pbl", "stage": 2, "default": "a", "settings": {"a": {"pbl.k": 0}}})
    with pytest.raises(ParamsError, match=r"key 'stage' expected an integer in \[2, inf\) \(a stage after"):
        build(ChoiceParams, {"method": "pbl", "stage": 1, "default": "a", "settings": {"a": {"pbl.k": 2}}})
    raw = yaml.safe_load((PARAMS_ROOT / "smoke" / "06_ablations.yaml").read_text())
    with pytest.raises(ParamsError, match=r"key 'split_settings\[1\]' expected a \[K, temperature\] pair"):
        build(AblationParams, {**raw, "split_settings": [[2, 1.0], [4, 0.0]]})


def test_a_params_error_comes_before_any_data_or_model(tmp_path, monkeypatch):
    """run_stage (under `python -m mscl run` and every notebook) loads its params first: a bad value is
    a ParamsError before the benchmark is built or a backbone is loaded."""
    from mscl.common import params as params_module
    from mscl.engine import models
    from mscl.pipeline import stages

    root = tmp_path / "params"
    (root / "smoke").mkdir(parents=True)
    for path in (PARAMS_ROOT / "smoke").glob("*.yaml"):
        (root / "smoke" / path.name).write_text(path.read_text())
    (root / "smoke" / "training.yaml").write_text(_set(TRAINING, "train.batch_size", "0"))
    monkeypatch.setattr(params_module, "PARAMS_ROOT", root)
    monkeypatch.setenv("MSCL_ARTIFACTS", str(tmp_path / "artifacts"))

    def refuse(*args, **kwargs):
        raise AssertionError("loaded a backbone before the params were checked")
    monkeypatch.setattr(models, "load_backbone", refuse)
    if hasattr(stages, "load_backbone"):
        monkeypatch.setattr(stages, "load_backbone", refuse)
    with pytest.raises(ParamsError, match=r"training.yaml: key 'train.batch_size' expected an integer in \[1, inf\)"):
        stages.run_stage("smoke", "domain_independent", "cit", 1, verbose=False)
    assert not (tmp_path / "artifacts").exists()  # no benchmark built, no stage folder made


def test_a_damaged_json_file_names_the_file_line_and_column(tmp_path):
    manifest = tmp_path / "stage" / "manifest.json"
    write_json(manifest, {"config_hash": "abc", "metrics": {"acc": 1.0}, "params": {"seed": 0}})
    text = manifest.read_text()
    manifest.write_text(text[:text.index('"acc"') + 3])  # a write cut short mid-string
    line = text[:text.index('"acc"')].count("\n") + 1
    with pytest.raises(CorruptFileError, match=rf"{re.escape(str(manifest))}, line {line}, column 5: not valid "
                                               r"JSON \(Unterminated string.*\)\. The file is damaged.*"
                                               r"remove or regenerate it"):
        read_json(manifest)
    assert issubclass(CorruptFileError, ValueError)
    manifest.write_text("")
    with pytest.raises(CorruptFileError, match=r"line 1, column 1: not valid JSON \(Expecting value\)"):
        read_json(manifest)
    manifest.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(CorruptFileError, match=r"line 1, column 8: not UTF-8"):
        read_json(manifest)
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "nope.json")


def test_a_damaged_jsonl_line_names_the_file_line_and_column(tmp_path):
    rows = tmp_path / "predictions.jsonl"
    write_jsonl(rows, [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    rows.write_text(rows.read_text()[:-6])  # the last row cut short
    with pytest.raises(CorruptFileError, match=rf"{re.escape(str(rows))}, line 3, column \d+: not valid JSON"):
        read_jsonl(rows)
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "nope.jsonl")


def test_unknown_profile_and_missing_file():
    with pytest.raises(ParamsError, match="unknown profile 'laptop'"):
        load_params("laptop", "training")
    with pytest.raises(ParamsError, match="params file not found"):
        load_params_file(PARAMS_ROOT / "smoke" / "nope.yaml", SCHEMAS["training"])


def test_precision_knob_and_the_stage_identity():
    import torch

    from mscl.common.params import TrainingParams, build, to_dict
    from mscl.engine.models import resolve_dtype

    assert resolve_dtype("auto", "cpu") == torch.float32       # the CPU computes in fp32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("half", "cpu")
    raw = to_dict(load_params("smoke", "training"))
    with pytest.raises(ParamsError, match="train.dtype"):
        build(TrainingParams, {**raw, "train": {**raw["train"], "dtype": "fp8"}})


def test_a_stage_run_in_another_precision_or_backend_is_not_reused(scratch, monkeypatch):
    from mscl.common.params import TrainingParams, build, to_dict
    from mscl.engine import vllm_backend
    from mscl.pipeline import stages

    params = load_params("smoke", "training")
    stages.run_stage("smoke", "domain_independent", "cit", 1, params=params, verbose=False)
    raw = to_dict(params)
    bf16 = build(TrainingParams, {**raw, "train": {**raw["train"], "dtype": "bfloat16"}})
    with pytest.raises(stages.StaleRunError):
        stages.run_stage("smoke", "domain_independent", "cit", 1, params=bf16, verbose=False)
    monkeypatch.setattr(vllm_backend, "expected_backend", lambda: "vllm")
    with pytest.raises(stages.StaleRunError):
        stages.run_stage("smoke", "domain_independent", "cit", 1, params=params, verbose=False)
