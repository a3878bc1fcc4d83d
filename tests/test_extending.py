"""docs/extending.md's code runs as written: its method block registers, its test template passes."""
from __future__ import annotations

import importlib
import importlib.util
import re

import pytest

import mscl.methods
from mscl.common.paths import REPO_ROOT

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

    from mscl.common.params import load_params
    from mscl.pipeline.stages import run_stage  # only the held-out facts are not retrained: they replay
    manifest = run_stage("smoke", "domain_independent", "cit+replay", 2, verbose=False)
    heldout = load_params("smoke", "01_data_build").sizes.heldout_facts
    assert manifest["method_info"]["replay"]["pool"] == heldout


def _is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:   # a name under a module, not a package
        return False


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO_ROOT / "docs").glob("*.md")) + ["README.md"])
def test_docs_name_only_modules_and_names_that_exist(name):
    """Every ``mscl.a.b.c`` the page names is a module, or a name defined in one."""
    text = (REPO_ROOT / ("README.md" if name == "README.md" else f"docs/{name}")).read_text(encoding="utf-8")
    for dotted in sorted(set(re.findall(r"\bmscl(?:\.[A-Za-z_]\w*)+", text))):
        parts, rest = dotted.split("."), []
        while len(parts) > 1 and not _is_module(".".join(parts)):
            rest.insert(0, parts.pop())   # a name inside a module: mscl.pipeline.stages.run_stage
        assert len(parts) > 1, f"{name} names {dotted}, which is not a module of mscl"
        obj = importlib.import_module(".".join(parts))
        for attr in rest:
            assert hasattr(obj, attr), f"{name} names {dotted}: {'.'.join(parts)} has no {attr!r}"
            obj = getattr(obj, attr)
