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

.PHONY: install demo test bench quality paper lint clean

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

# the closed-loop study (issues 13, 20): the chunk baseline swept on validation seeds, then event vs the best
# chunk (the primary contrast, paper/plan.md) vs unified over 10 training seeds (a random effect), balanced vs
# unbalanced, the hold ablation, 50 environment seeds per task type from an unused base, privileged-state
# pilot; writes paper/study.{md,json} (work directory paper/study/, not committed)
paper: install
	$(VENV)/bin/carve eval-sim --study --out paper/study.md

# ruff, then the layer contracts of pyproject.toml (plain import-linter over src/carve)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(DEMO_ROOT) .pytest_cache
