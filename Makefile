# Every target creates the virtualenv and installs pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
# Two workers: the suite runs whole-stack previews, and CI machines have 2 cores.
PYTEST_ARGS ?= -n 2
STAMP := $(VENV)/.installed
# Checkov (the independent scanner, python -m infra.scan) lives in its own virtualenv
# so its pins never meet the project's.
CKV_VENV := .venv-checkov
CKV_STAMP := $(CKV_VENV)/.installed

.PHONY: preview test checkov bench snapshots clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml tests/iam_eval/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# Test-only IAM policy evaluator (tests/iam_sim.py), pinned by its lock file.
	npm ci --prefix tests/iam_eval --no-audit --no-fund --loglevel=error
	touch $(STAMP)

$(CKV_STAMP): requirements-checkov.txt
	test -x $(CKV_VENV)/bin/python || $(PYTHON) -m venv $(CKV_VENV)
	$(CKV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $(CKV_STAMP)

preview: $(STAMP)
	$(PY) -m infra.preview --stack $(STACK) $(ARGS)

# The suite, then the Checkov gate over every stack (tests/test_checkov_*.py need the scanner too).
test: $(STAMP) $(CKV_STAMP)
	# The project's bytecode once: the suite starts many Python processes (policy pack, CLI runs), and
	# where PYTHONDONTWRITEBYTECODE is set each would compile the sources again (compileall writes anyway).
	$(PY) -m compileall -q components infra policies scripts > /dev/null
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) -m infra.scan --all

# Checkov over every shipped stack and tests/stacks/*.yaml, offline; fails on a finding
# that policies/checkov-allowlist.yaml (or checkov-pending.yaml) does not list.
checkov: $(STAMP) $(CKV_STAMP)
	$(PY) -m infra.scan --all

bench: $(STAMP)
	$(PY) -m tests.bench

# Rewrite tests/snapshots/<stack>.json after an intended change to what a stack deploys.
snapshots: $(STAMP)
	$(PY) -m tests.snapshots

clean:
	rm -rf $(VENV) $(CKV_VENV) .pytest_cache
