import sys
from pathlib import Path

# Tests import the project as installed (editable) into the virtualenv; the
# repo root is also put first so a checkout under test wins over another one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pytest_sessionstart(session):
    from tests.harness import CRDS

    if not any(CRDS.glob("*.yaml")):
        raise __import__("pytest").UsageError(
            f"upstream CRD schemas not found in {CRDS}: check the repo out next to shared/ "
            f"(shared/crds) or set LLMSERVING_CRDS to a folder holding them")
