# Two commands do all set-up: `make run` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE ?= 1
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: install run test check ui clean-cache device-check

install: $(STAMP)

# torch first, pinned, with pip: pip takes the local CPU wheel where one exists instead of a
# multi-GB CUDA build (uv does not look there). Then the rest of the lock with uv (pinned): the
# same packages in 40 s instead of pip's 3 minutes (2 cores, 2026-12-02), compiled to bytecode as
# pip does (where PYTHONDONTWRITEBYTECODE is set, nothing else would, and every process would
# compile the libraries anew: a tiny run 21 s -> 47 s).
$(STAMP): requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 uv==0.13.9
	$(PY) -m uv pip install -q --compile-bytecode --python $(PY) -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

run: install
	$(PY) -m pipeline +experiment=hn_k8

# Two workers (pytest-xdist), a test file each at a time: most tests wait on subprocess start-up.
test: install
	$(PY) -m pytest -q -n 2 --dist loadfile

ui: install
	$(PY) -m mlflow ui --backend-store-uri sqlite:///$(CURDIR)/outputs/mlflow.db --host 127.0.0.1 --port 5000

clean-cache:
	rm -rf outputs/cache

# The one-shot device check (scripts/device_check.py): on a CUDA GPU within 8 minutes, else a CPU
# smoke run of the same sections; one JSON file (outputs/device_check.json) and a printed table.
device-check: install
	$(PY) scripts/device_check.py

# The quick k-sweep (static model, k = 0..64, minutes on 2 CPU cores), then its report.
.PHONY: sweep
sweep: install
	$(PY) -m pipeline -m +experiment=sweep_k_quick
	$(PY) -m pipeline.report

# The fast tier, in 1.5-3.5 minutes on 2 cores (1 min 30 s on 2026-12-04, 3 min 31 s on a slower day): lint, a type
# check of pipeline/, the packages' layers and the in-process tests (`make test` runs every test, the
# command-line and multi-process ones too).
.PHONY: check
check: install
	$(PY) -m ruff check pipeline tests scripts hydra_plugins
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 -m "not slow"
