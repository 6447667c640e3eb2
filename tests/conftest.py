import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Tests import the project as installed (editable) into the virtualenv; the
# repo root is also put first so a checkout under test wins over another one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_RUN_CACHE_KEY = "llmserving_run_cache"


def pytest_sessionstart(session):
    from tests.harness import CRDS

    if not any(CRDS.glob("*.yaml")):
        raise pytest.UsageError(
            f"upstream CRD schemas not found in {CRDS}: check the repo out next to shared/ "
            f"(shared/crds) or set LLMSERVING_CRDS to a folder holding them")


# --- one computation of each stack run per session, shared by the xdist workers (tests/harness.py) ---

def pytest_configure(config):
    shared = getattr(config, "workerinput", {}).get(_RUN_CACHE_KEY)
    if shared:
        from tests.harness import share_runs

        share_runs(Path(shared))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist controller: hand every worker the session's shared run folder."""
    config = node.config
    if not hasattr(config, "_llmserving_run_cache"):
        # Under the session's pytest tmp folder (pytest prunes old ones) when it is available.
        factory = getattr(config, "_tmp_path_factory", None)
        parent = str(factory.getbasetemp()) if factory is not None else None
        config._llmserving_run_cache = tempfile.mkdtemp(prefix="llmserving-runs-", dir=parent)
    node.workerinput[_RUN_CACHE_KEY] = config._llmserving_run_cache


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test that uses `monkeypatch` (itself or through a fixture) may patch the code a stack run
    executes: its runs are computed afresh and not kept (tests/harness.py)."""
    from tests import harness

    harness.patched_test("monkeypatch" in getattr(item, "fixturenames", ()))
    try:
        yield
    finally:
        harness.patched_test(False)


def pytest_unconfigure(config):
    folder = getattr(config, "_llmserving_run_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
