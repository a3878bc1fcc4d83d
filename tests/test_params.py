"""Params files: every shipped file validates; malformed ones are errors naming the file and key."""
from __future__ import annotations

from pathlib import Path

import pytest

from mscl.common.params import PARAMS_ROOT, PROFILES, SCHEMAS, ParamsError, load_params, load_params_file

GOOD = Path(PARAMS_ROOT / "smoke" / "00_quickstart.yaml").read_text()


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
    with pytest.raises(ParamsError, match=rf"{path}: not valid YAML"):
        load_params_file(path, SCHEMAS["00_quickstart"])


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
