"""The committed desired-state snapshots match what the stacks render now."""

import json

import pytest

from infra import diff as D
from tests.harness import shipped_preview
from tests.snapshots import render, snapshot_path, stacks


@pytest.mark.parametrize("stack", stacks())
def test_snapshot_is_current(stack):
    path = snapshot_path(stack)
    assert path.is_file(), f"no snapshot for stack {stack}: run `make snapshots` and commit tests/snapshots/"
    current = shipped_preview(stack)
    if path.read_text() == render(current):
        return
    d = D.diff_documents(json.loads(path.read_text()), current)
    changes = [f"{r.action} {r.type} {r.name}: " + ", ".join(p.path for p in r.properties) for r in d.resources]
    pytest.fail(f"stack {stack} renders differently from {path.name} (run `make snapshots`, review, commit):\n"
                + "\n".join(changes[:40] or ["(cost, capacity or policy verdicts changed)"]))
