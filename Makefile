# The two commands a newcomer runs: `make demo` and `make test`. Both create .venv if missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=
PYTEST_ARGS ?=
# demo parts to run (empty = every registered system), e.g. make demo SYSTEMS=textnas
SYSTEMS ?=
# wandb: the demo and the tests log offline unless you say otherwise (WANDB_MODE=online make
# demo); every other target follows WANDB_MODE, else online when logged in (`wandb login`),
# else offline with one line saying so.
demo test test-all test-gpu: export WANDB_MODE ?= offline
demo test test-all test-gpu: export WANDB_SILENT ?= true

.PHONY: help setup check-system demo test test-all test-gpu lint bench data train-textnas eval-textnas search-textnas \
	search-alphagan derive-alphagan train-alphagan eval-alphagan prepare-voca train-dualtalker eval-dualtalker render clean-outputs \
	paper-textnas paper-alphagan paper-dualtalker sweep gpu-check

help:
	@echo "make demo            every system's demo on generated data (CPU, minutes); SYSTEMS=textnas for one"
	@echo "make test            the fast test suite (creates .venv if missing)"
	@echo "make test-all        every test, slow ones included"
	@echo "make test-gpu        the GPU tests (skipped without CUDA)"
	@echo "make gpu-check       on a GPU: the GPU tests and a short bf16 bench per system (< 8 min)"
	@echo "make lint            ruff + import contracts"
	@echo "make bench           throughput and memory -> benchmarks/results/*.json"
	@echo "make data EXPERIMENT=textnas_train_sst2 ARGS='data.root=...'   the data as training reads it"
	@echo "make check-system    the system (apt) packages of system-packages.txt"
	@echo "make train-textnas ARGS='data.root=/path/to/glue/SST-2 trainer.devices=4'"
	@echo "make eval-textnas ARGS='ckpt=outputs/.../checkpoints/last.ckpt'"
	@echo "make search-textnas ARGS='data.root=/path/to/sst/trees preset=trainer/ddp trainer.devices=4'"
	@echo "make search-alphagan ARGS='data.root=/data/cifar10 search.variant=s'   (EXPERIMENT=alphagan_search_stl10)"
	@echo "make derive-alphagan ARGS='ckpt=outputs/.../checkpoints/last.ckpt'"
	@echo "make train-alphagan ARGS='model.genotype=alphagan_l data.root=/data/cifar10'   (EXPERIMENT=alphagan_train_stl10)"
	@echo "make eval-alphagan ARGS='ckpt=outputs/.../checkpoints/last.ckpt metrics.inception_weights=...'"
	@echo "make prepare-voca ARGS='src=/data/vocaset_release dst=data/vocaset'"
	@echo "make train-dualtalker ARGS='data.root=data/vocaset model.audio_encoder=/models/wav2vec2-base-960h'   (EXPERIMENT=dualtalker_biwi, faceformer_voca, ...)"
	@echo "make eval-dualtalker ARGS='ckpt=outputs/.../checkpoints/last.ckpt'"
	@echo "make render ARGS='ckpt=... wav=speech.wav subject=FaceTalk_170809_00138_TA condition=FaceTalk_170725_00137_TA'   (or split=test)"

setup: check-system $(STAMP)

# System libraries pip cannot install (system-packages.txt): named with the apt package.
check-system:
	@bash .ci/system-packages check

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python >= 3.10 (or run make PYTHON=/path/to/python3)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "error: Python >= 3.10 is needed, $(PYTHON) is $$($(PYTHON) --version)"; exit 1; }
	@test -x $(PY) || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed: install the venv module (Debian: apt-get install python3-venv)"; exit 1; }; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: setup
	$(PY) -m experiments demo $(SYSTEMS) $(ARGS)

test: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -m "not slow and not gpu" -p no:cacheprovider --timeout 900 $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

test-gpu: setup
	$(PY) -m pytest -m gpu -p no:cacheprovider $(PYTEST_ARGS)

# On a GPU machine, in one short slot (< 8 min): every system's GPU tests, then a short bf16
# bench per system -> benchmarks/results/gpu-<system>.json. Uses .venv when there is one, else
# the machine's python (a GPU box may have torch and lightning but no network for make setup).
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	timeout 300 $(GPU_PY) -m pytest -m gpu -p no:cacheprovider -q $(PYTEST_ARGS)
	timeout 180 $(GPU_PY) -m benchmarks.gpu $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# BENCH=alphagan for one bench's figures (benchmarks/results/<bench>.json); DualTalker's
# inference at 2 s to 10 min of audio and its video rendering are benches of their own
BENCH ?= textnas alphagan dualtalker dualtalker_inference dualtalker_render
bench: $(STAMP)
	@for system in $(BENCH); do echo "== bench $$system"; $(PY) -m benchmarks.$$system $(ARGS) || exit 1; done

train-textnas: $(STAMP)
	$(PY) -m experiments train $(or $(EXPERIMENT),textnas_train_sst2) $(ARGS)

data: $(STAMP)
	$(PY) -m experiments data $(EXPERIMENT) $(ARGS)

search-textnas: $(STAMP)
	$(PY) -m experiments train $(or $(EXPERIMENT),textnas_search_sst5) $(ARGS)

eval-textnas: $(STAMP)
	$(PY) -m experiments eval $(EXPERIMENT) $(ARGS)

search-alphagan: $(STAMP)
	$(PY) -m experiments train $(or $(EXPERIMENT),alphagan_search_cifar10) $(ARGS)

derive-alphagan: $(STAMP)
	$(PY) -m experiments derive $(or $(EXPERIMENT),alphagan_search_cifar10) $(ARGS)

train-alphagan: $(STAMP)
	$(PY) -m experiments train $(or $(EXPERIMENT),alphagan_train_cifar10) $(ARGS)

eval-alphagan: $(STAMP)
	$(PY) -m experiments eval $(EXPERIMENT) $(ARGS)

prepare-voca: $(STAMP)
	$(PY) -m datamodules.face.prepare $(ARGS)

train-dualtalker: $(STAMP)
	$(PY) -m experiments train $(or $(EXPERIMENT),dualtalker_voca) $(ARGS)

eval-dualtalker: $(STAMP)
	$(PY) -m experiments eval $(EXPERIMENT) $(ARGS)

# a DualTalker checkpoint speaking any audio (or split=test: every test sequence beside its truth)
render: $(STAMP)
	$(PY) -m experiments render $(EXPERIMENT) $(ARGS)

# a paper's pipeline end to end (python -m experiments pipeline list), e.g.
#   make paper-textnas ARGS="data.root=/data/SST-2 stages.search.data.root=/data/sst"
paper-textnas: $(STAMP)
	$(PY) -m experiments pipeline $(or $(PIPELINE),textnas_sst) $(ARGS)

paper-alphagan: $(STAMP)
	$(PY) -m experiments pipeline $(or $(PIPELINE),alphagan_cifar10) $(ARGS)

paper-dualtalker: $(STAMP)
	$(PY) -m experiments pipeline $(or $(PIPELINE),dualtalker_voca) $(ARGS)

# an Optuna study over config keys: make sweep EXPERIMENT=textnas_train_sst2 SWEEP=sweeps/lr.yaml
sweep: $(STAMP)
	$(PY) -m experiments sweep $(EXPERIMENT) sweep=$(SWEEP) $(ARGS)

clean-outputs:
	rm -rf outputs
