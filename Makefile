# Carve: `make demo` then `make test` on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARCH   := $(shell uname -m)
# torch + torchvision pairs that install from this workplace's local wheels (see README)
ifeq ($(ARCH),x86_64)
TORCH  ?= torch==2.14.1 torchvision==0.29.1
else
TORCH  ?= torch==2.9.1 torchvision==0.24.1
endif
DEMO_ROOT ?= demo-data
PYTEST_ARGS ?=

.PHONY: install demo test bench quality paper paper-privileged lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml tests/fixtures/lerobot/requirements-lerobot044.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	# the real lerobot 0.4.4 dataset code, the conformance reference for LeRobot formats (tests/fixtures/lerobot)
	$(PY) -m pip install -q --no-deps -r tests/fixtures/lerobot/requirements-lerobot044.txt
	touch $@

demo: install
	rm -rf $(DEMO_ROOT)/carve  # the demo's own root: a second `make demo` starts from the beginning too
	$(VENV)/bin/carve synth --out $(DEMO_ROOT)/raw/sim --episodes 12 --workers 2 --overwrite
	$(VENV)/bin/carve run --source $(DEMO_ROOT)/raw/sim --root $(DEMO_ROOT)/carve
	$(VENV)/bin/carve eval-segments --root $(DEMO_ROOT)/carve --truth $(DEMO_ROOT)/raw/sim/ground_truth_events.json
	$(VENV)/bin/carve eval-captions --root $(DEMO_ROOT)/carve --truth $(DEMO_ROOT)/raw/sim/ground_truth_events.json
	$(VENV)/bin/carve report --root $(DEMO_ROOT)/carve --out $(DEMO_ROOT)/carve/reports
	@echo
	@echo "events:  $(DEMO_ROOT)/carve/events/"
	@echo "shards:  $(DEMO_ROOT)/carve/shards/ (manifest.json per version)"
	@echo "report:  $(DEMO_ROOT)/carve/reports/index.html"

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: install
	$(PY) -m bench.run_all

# segmentation F1, caption accuracy, cluster balance and the model comparison on simulated data
quality: install
	$(PY) -m bench.quality

# the closed-loop study (issues 13, 20) on rendered observations: the chunk baseline swept on validation seeds,
# then event vs the best chunk (the primary contrast, paper/plan.md) vs unified over 10 training seeds (a random
# effect), four task types; at the scale that fits 60 minutes on 2 cores (PAPER_ARGS; paper/plan.md gives the
# full scale and the commands that reach it in pieces: every piece reuses the caches of the one before).
# Writes paper/study.{md,json} (work directory paper/study/, not committed)
PAPER_ARGS ?= --train-episodes 160 --steps 1000 --seeds 10 --val-seeds 10 --hold-ablation-seeds 0 --matched-seeds 0
paper: install
	$(VENV)/bin/carve eval-sim --study $(PAPER_ARGS) --out paper/study.md

# the privileged-state ablation (the simulator's object poses instead of images; pick_place and push, whose
# object state has one size), with the hold and equal-budget ablations: paper/privileged/study.{md,json}
paper-privileged: install
	$(VENV)/bin/carve eval-sim --study --observation privileged --tasks pick_place push --seed-base 50000 \
		--out paper/privileged/study.md

# ruff, then the layer contracts of pyproject.toml (plain import-linter over src/carve)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(DEMO_ROOT) .pytest_cache
