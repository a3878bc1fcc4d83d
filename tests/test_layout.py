"""The package's shape, and finished stages that survive moving code: their identity holds values only."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

from mscl.common.io import read_json
from mscl.common.paths import REPO_ROOT, run_dir
from mscl.pipeline.stages import run_stage, stage_identity

PACKAGE = REPO_ROOT / "mscl"
MAX_LINES = 600
MAX_TOP_LEVEL = 8
MAX_FUNCTION_LINES = 60


def test_no_module_over_600_lines_and_at_most_8_at_the_top():
    long = {str(p.relative_to(REPO_ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, f"{len(top)} modules at the top of mscl/: {top}"
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and p.name.isidentifier() and p.name != "__pycache__"):
        assert (folder / "__init__.py").is_file(), f"{folder} is not a package (setuptools would not ship it)"


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function and method under ``tree``, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, node
            yield from _functions(node, f"{name}.")
        else:
            yield from _functions(node, prefix)


def test_no_function_over_60_lines():
    """A function fits on a screen: from its ``def`` line to its last line (decorators not counted)."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node in _functions(tree):
            if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps): " + "; ".join(long)


def _strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_the_stage_identity_names_no_module_or_source_path(scratch):
    from mscl.benchmark.probe import ensure_benchmark
    from mscl.common.params import load_params

    params = load_params("smoke", "training")
    data = read_json(ensure_benchmark("smoke", params.data_seed) / "manifest.json")
    for method in ("cit", "pbl", "mocl", "flearning", "ours"):
        identity = stage_identity("smoke", "domain_independent", method, 2, params.backbone, params, data)
        paths = [s for s in _strings(identity) if "mscl." in s or "mscl/" in s or s.endswith(".py")]
        assert not paths, f"{method}'s stage identity names code locations: {paths}"


def test_a_finished_stage_is_reused_by_a_fresh_process(scratch):
    manifest = run_stage("smoke", "domain_independent", "cit", 1, verbose=False)
    folder = run_dir("smoke", "tiny-random", "domain_independent", "cit", 1, seed=0)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    env = {**os.environ, "MSCL_ARTIFACTS": str(scratch), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "mscl", "run", "--profile", "smoke", "--stream", "domain_independent",
                          "--method", "cit", "--stage", "1"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before, "the finished stage was rewritten"
    assert json.loads((folder / "manifest.json").read_text())["config_hash"] == manifest["config_hash"]


def test_verify_recomputes_every_finished_stages_config_hash(scratch):
    from mscl.pipeline.verify import config_hashes_match

    run_stage("smoke", "domain_independent", "cit", 2, verbose=False)
    assert list(config_hashes_match("smoke").values()) == [True, True]
    path = run_dir("smoke", "tiny-random", "domain_independent", "cit", 2, seed=0) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["params"]["train"]["learning_rate"] *= 2   # as if trained under other params
    path.write_text(json.dumps(manifest))
    assert sorted(config_hashes_match("smoke").values()) == [False, True]
