"""Shared fixtures: the tiny random backbone (seconds on a CPU) and a scratch artifacts folder."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from mscl.common.paths import REPO_ROOT

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
