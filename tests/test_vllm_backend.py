"""The optional vLLM backend, against a stand-in ``vllm`` module (CI has neither vLLM nor a GPU)."""
from __future__ import annotations

import copy
import importlib.machinery
import sys
import types

import pytest
import torch

from mscl.engine import vllm_backend
from mscl.engine.generation import generate


class _FakeLLM:
    built: list = []

    def __init__(self, model, tokenizer, **kwargs):
        self.folder, self.kwargs, self.calls = model, kwargs, []
        assert (__import__("pathlib").Path(model) / "config.json").is_file()  # the weights were saved
        _FakeLLM.built.append(self)

    def generate(self, prompts, params, use_tqdm=False):
        self.calls.append((list(prompts), params))
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"  answer {i}-{j}\n")
                                               for j in range(params.n)])
                for i in range(len(prompts))]


class _FakeSamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.LLM, module.SamplingParams = _FakeLLM, _FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(vllm_backend, "_engine", None)
    _FakeLLM.built = []
    yield module
    if vllm_backend._engine is not None:
        vllm_backend._engine.close()


def test_without_vllm_or_a_gpu_the_transformers_path_is_used(tiny, monkeypatch):
    model, _ = tiny
    monkeypatch.delenv(vllm_backend.ENV, raising=False)
    assert vllm_backend.resolve_backend(model, uses_own_loop=True) == "transformers"  # no GPU here
    monkeypatch.setenv(vllm_backend.ENV, "vllm")
    with pytest.raises(RuntimeError, match="MSCL_GENERATION_BACKEND=vllm but"):
        vllm_backend.resolve_backend(model, uses_own_loop=True)
    monkeypatch.setenv(vllm_backend.ENV, "tensorrt")
    with pytest.raises(ValueError, match="expected one of auto, transformers, vllm"):
        vllm_backend.resolve_backend(model, uses_own_loop=True)


def test_auto_picks_vllm_on_a_gpu_for_plain_models_only(tiny, fake_vllm, monkeypatch):
    model, _ = tiny
    monkeypatch.delenv(vllm_backend.ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cuda_param = types.SimpleNamespace(device=torch.device("cuda", 0))
    on_gpu = types.SimpleNamespace(parameters=lambda: iter([cuda_param]))
    assert vllm_backend.resolve_backend(on_gpu, uses_own_loop=True) == "vllm"
    assert vllm_backend.resolve_backend(on_gpu, uses_own_loop=False) == "transformers"  # MoCL, PEFT
    assert vllm_backend.resolve_backend(model, uses_own_loop=True) == "transformers"    # a model on the CPU


def test_vllm_generation_maps_requests_and_rebuilds_after_weights_change(tiny, fake_vllm):
    model, tok = tiny
    model = copy.deepcopy(model)
    prompts = ["p0", "p1", "p2"]
    out = generate(model, tok, prompts, max_new_tokens=7, batch_size=1, num_return_sequences=2, do_sample=True,
                   temperature=0.7, top_p=0.9, seed=5, backend="vllm")
    assert out == [[f"answer {i}-{j}" for j in range(2)] for i in range(3)]  # cleaned, in input order
    (llm,) = _FakeLLM.built
    sent, params = llm.calls[0]
    from mscl.engine.models import encode_prompt_text

    assert sent == [{"prompt_token_ids": encode_prompt_text(tok, p)} for p in prompts]
    assert (params.n, params.max_tokens, params.temperature, params.top_p, params.seed) == (2, 7, 0.7, 0.9, 5)
    assert params.stop_token_ids == [tok.eos_token_id]
    greedy = generate(model, tok, prompts[:1], max_new_tokens=3, batch_size=1, backend="vllm")
    assert greedy == [["answer 0-0"]] and llm.calls[1][1].temperature == 0.0
    assert len(_FakeLLM.built) == 1  # same weights: the engine is reused
    with torch.no_grad():
        next(model.parameters()).data.add_(0.01)  # an in-place change, as merging an adapter makes
    generate(model, tok, prompts[:1], max_new_tokens=3, batch_size=1, backend="vllm")
    assert len(_FakeLLM.built) == 2  # a new engine over the new weights


def test_training_shuts_the_engine_down_first(tiny, fake_vllm):
    from mscl.engine import vllm_backend

    model, tok = tiny
    model = copy.deepcopy(model)
    generate(model, tok, ["p0"], max_new_tokens=2, batch_size=1, backend="vllm")
    assert vllm_backend._engine is not None
    vllm_backend.shutdown()
    assert vllm_backend._engine is None
    vllm_backend.shutdown()  # nothing up: a no-op
