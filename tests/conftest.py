"""Shared fixtures: the tiny random backbone (seconds on a CPU) and a scratch artifacts folder; and, under
``MSCL_NO_SKIPS=1`` (``.ci/run`` sets it), a skipped test fails the run: CI runs every test it has."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from mscl.common.paths import REPO_ROOT

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

NO_SKIPS = os.environ.get("MSCL_NO_SKIPS") == "1"
_skipped: list[str] = []


def _note_skip(report) -> None:
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):  # an xfail is not a skip
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason.removeprefix('Skipped: ')}")


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_collectreport(report):
    _note_skip(report)  # a module-level skip or importorskip


def pytest_sessionfinish(session, exitstatus):
    if _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.section("MSCL_NO_SKIPS=1: a skipped test fails the run", sep="!", red=True, bold=True)
        for line in _skipped:
            terminalreporter.line(f"SKIPPED {line}", red=True)


def pytest_collection_modifyitems(items):
    """Every test that runs stages in a scratch artifacts folder trains: ``make test-fast`` skips it."""
    for item in items:
        if "scratch" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.trains)


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny random Llama; tests that train must deep-copy the model."""
    from mscl.engine.models import load_backbone

    return load_backbone("tiny-random", seed=0)


def make_record(i: int, question: str, answer: str, **extra):
    """A stand-in for a benchmark record with the fields the trainer reads."""
    return SimpleNamespace(id=f"r{i}", fact_id=f"f{i}", question=question, answer=answer,
                           previous_answer=extra.get("previous_answer"), edited=extra.get("edited", False))


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A private artifacts folder that shares only the converted backbones with the repository."""
    monkeypatch.setenv("MSCL_ARTIFACTS", str(tmp_path))
    shared_models = REPO_ROOT / "artifacts" / "models"
    shared_models.mkdir(parents=True, exist_ok=True)  # a fresh clone has none yet
    (tmp_path / "models").symlink_to(shared_models)
    return tmp_path
