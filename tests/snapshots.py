"""Desired-state snapshots of the shipped stacks (tests/snapshots/<stack>.json).

A change to what a stack deploys shows up as a reviewable diff of these files
in the pull request. `make snapshots` (python -m tests.snapshots) rewrites
them; tests/test_snapshots.py fails, naming what changed, when they are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from infra.mockcloud import canonical_json

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = ROOT / "tests" / "snapshots"


def stacks() -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))


def snapshot_path(stack: str) -> Path:
    return SNAPSHOTS / f"{stack}.json"


def render(doc: dict) -> str:
    return canonical_json(doc)


def main() -> int:
    from infra.preview import preview

    SNAPSHOTS.mkdir(exist_ok=True)
    for stack in stacks():
        snapshot_path(stack).write_text(render(preview(stack)))
        print(f"wrote {snapshot_path(stack).relative_to(ROOT)}")
    for old in SNAPSHOTS.glob("*.json"):
        if old.stem not in stacks():
            old.unlink()
            print(f"removed {old.relative_to(ROOT)} (no such stack)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
