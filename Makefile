# Every target creates the virtualenv and installs pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
# Two workers: the suite runs whole-stack previews, and CI machines have 2 cores.
PYTEST_ARGS ?= -n 2
STAMP := $(VENV)/.installed

.PHONY: preview test bench snapshots clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml tests/iam_eval/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# Test-only IAM policy evaluator (tests/iam_sim.py), pinned by its lock file.
	npm ci --prefix tests/iam_eval --no-audit --no-fund --loglevel=error
	touch $(STAMP)

preview: $(STAMP)
	$(PY) -m infra.preview --stack $(STACK) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m tests.bench

# Rewrite tests/snapshots/<stack>.json after an intended change to what a stack deploys.
snapshots: $(STAMP)
	$(PY) -m tests.snapshots

clean:
	rm -rf $(VENV) .pytest_cache
