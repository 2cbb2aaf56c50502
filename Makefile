# pathlab: `make demo` and `make test` do all set-up on a fresh machine (venv + install first).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch/torchvision: the versions this project is tested with (pip may take them from a local cache)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=
EXPLORE_DATA ?= data=synthetic
SWEEP_DIR ?= outputs/sweep_demo/$(shell date +%Y-%m-%d_%H-%M-%S)
CV_DIR ?= outputs/cv_demo/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: help install demo train test test-fast lint format bench gpu-check timings sweep cv ablation recipe explore docs-figures strip-notebooks tensorboard clean

help:
	@echo "make demo         train + test a short run offline on synthetic data, print the report"
	@echo "make test         run the test suite"
	@echo "make train ARGS='model=resnet18 loss=focal'   any training run"
	@echo "make sweep        a small demo sweep (CE vs focal x 2 seeds, synthetic) and its summary table"
	@echo "make cv           3-fold cross-validation of the demo run (synthetic) and its summary across folds"
	@echo "make ablation     experiments/loss_ablation (CE vs focal x TTA x 3 seeds)"
	@echo "make recipe       experiments/recipe (the CPU recipe's ablation on the real sample, ~2 h)"
	@echo "make explore      data figures (EXPLORE_DATA=data=pathmnist for the real set)"
	@echo "make docs-figures regenerate docs/*.png shown in README.md"
	@echo "make tensorboard  TensorBoard over outputs/"
	@echo "make timings      the README's stated times on this machine (outputs/timings.json)"
	@echo "make gpu-check    the GPU path in one check (one CUDA GPU, <= 8 min; outputs/gpu_check.json; ARGS=--tiny on a CPU)"
	@echo "make lint / format / bench / clean"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m pathlab.train experiment=demo $(ARGS)

train: $(STAMP)
	$(PY) -m pathlab.train $(ARGS)

# two pytest workers, a test file per worker at a time (pytest-xdist): most of the suite's time is
# Python start-up and imports of `python -m pathlab...` subprocesses, which run side by side
# Each worker, and the runs it starts, gets cores / workers torch threads (as joblib's parallel jobs
# do): more threads than cores leave OpenMP threads spinning while they wait for each other.
TEST_WORKERS ?= 2
TEST_THREADS ?= $(shell n=$$(( $$(nproc) / $(TEST_WORKERS) )); echo $$(( n > 0 ? n : 1 )))
test: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check pathlab tests hydra_plugins
	$(VENV)/bin/ruff format --check pathlab tests hydra_plugins
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format pathlab tests hydra_plugins
	$(VENV)/bin/ruff check --fix pathlab tests hydra_plugins

sweep: $(STAMP)
	$(PY) -m pathlab.train -m experiment=demo data.synthetic.n_train=2000 trainer.max_epochs=3 \
		loss=ce,focal seed=0,1 hydra.sweep.dir=$(SWEEP_DIR) $(ARGS)
	$(PY) -m pathlab.summarize $(SWEEP_DIR)

# K=3 folds of train+val (cv.fold=0,1,2), one run each, summarised as one group across folds
cv: $(STAMP)
	$(PY) -m pathlab.train -m experiment=demo data.synthetic.n_train=1500 trainer.max_epochs=3 \
		cv.folds=3 cv.fold=0,1,2 calibration=temperature hydra.sweep.dir=$(CV_DIR) $(ARGS)
	$(PY) -m pathlab.summarize $(CV_DIR)

ablation: $(STAMP)
	experiments/loss_ablation/run.sh

RECIPE_ROWS ?= fast_cpu fast_cpu_nomatch medmnist_v2 default base translate colour colour_strong per_image smoothing ema mix sgd batch64 epochs80 fast_cpu_e60 fast_cpu_colour fast_cpu_robust onecycle batch32
recipe: $(STAMP)
	$(PY) experiments/recipe/study.py run $(RECIPE_ROWS)
	$(PY) experiments/recipe/study.py table

explore: $(STAMP)
	$(PY) -m pathlab.explore $(EXPLORE_DATA) $(ARGS)

# the pictures in README.md: drawn from the synthetic data, so anyone can regenerate them
docs-figures: $(STAMP)
	$(PY) -m pathlab.explore data=synthetic hydra.run.dir=outputs/docs_figures
	mkdir -p docs
	cp outputs/docs_figures/samples.png outputs/docs_figures/class_distribution.png docs/
	$(PY) scripts/slide_figure.py

strip-notebooks: $(STAMP)
	$(VENV)/bin/nbstripout notebooks/*.ipynb

bench: $(STAMP)
	$(PY) -m pathlab.bench --out outputs/bench.json $(ARGS)

# the GPU path in one prepared run: bench, full-size epochs, GPU/CPU agreement (experiments/gpu_check)
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py $(ARGS)

# the README's stated times on this machine (demo, fast test suite; TIMING_STEPS="demo test-fast test install")
TIMING_STEPS ?= demo test-fast
timings: $(STAMP)
	$(PY) scripts/timings.py --steps $(TIMING_STEPS) $(ARGS)

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir outputs

clean:
	rm -rf outputs .pytest_cache
