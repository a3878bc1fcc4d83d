"""docs/extending.md's code runs as written: its method block registers, its test template passes."""
from __future__ import annotations

import re

import pytest

import mscl.methods
from mscl.pipeline.paths import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "extending.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_a_method_of_about_20_lines_and_a_test():
    method, test = _blocks()
    code = [line for line in method.splitlines() if line.strip() and not line.lstrip().startswith(("#", "import",
                                                                                                   "from"))]
    assert len(code) <= 25, f"the example method is {len(code)} lines"
    assert "def test_" in test


def test_the_example_method_trains_and_its_test_template_passes(scratch, monkeypatch):
    monkeypatch.setattr(mscl.methods, "METHODS", dict(mscl.methods.METHODS))  # the page registers into a copy
    method, test = _blocks()
    namespace: dict = {}
    exec(compile(method, f"{PAGE}:method", "exec"), namespace)
    assert "cit+replay" in mscl.methods.METHODS
    exec(compile(test, f"{PAGE}:test", "exec"), namespace)
    namespace["test_replay_retrains_earlier_domains"](scratch)

    from mscl.pipeline.stages import run_stage  # nothing replays where every fact is retrained
    manifest = run_stage("smoke", "domain_independent", "cit+replay", 2, verbose=False)
    assert manifest["method_info"]["replay"] == {"pool": 0, "replayed": 0}


@pytest.mark.parametrize("name", ["extending.md", "method.md", "design.md"])
def test_docs_name_only_modules_that_exist(name):
    text = (REPO_ROOT / "docs" / name).read_text(encoding="utf-8")
    for dotted in sorted(set(re.findall(r"\bmscl(?:\.[a-z_]+)+", text))):
        parts = dotted.split(".")
        while len(parts) > 1 and not (REPO_ROOT.joinpath(*parts).is_dir()
                                      or REPO_ROOT.joinpath(*parts[:-1], parts[-1] + ".py").is_file()):
            parts.pop()   # a name inside a module: mscl.pipeline.stages.run_stage
        assert len(parts) > 1, f"docs/{name} names {dotted}, which is not a module of mscl"
