"""Explicit acknowledgement of destructive changes in a pull request.

A preview diff that would replace or delete a stateful or expensive resource
(see `infra.diff.GUARD_RULES`) fails the check (exit 4) unless the pull
request acknowledges it in one of two ways:

- the label `allow-destructive` on the pull request acknowledges every
  flagged change (labels need triage rights, so a maintainer decides);
- a line `/allow-destructive <target>` in the pull request body acknowledges
  the flagged changes that match <target>: a full URN, a resource type token
  (`aws:eks/nodeGroup:NodeGroup`) or `*` for all. One target per line; several
  lines are allowed.

Locally the same targets are given with `--allow-destructive TARGET`.

    python -m infra.pr_ack [--event FILE]

prints what the pull-request event (default: $GITHUB_EVENT_PATH) acknowledges.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

LABEL = "allow-destructive"
COMMAND = "/allow-destructive"
_LINE = re.compile(r"^[ \t]*/allow-destructive[ \t]+(\S+)[ \t]*\r?$", re.MULTILINE)


@dataclass(frozen=True)
class Acknowledgement:
    """What a pull request (or the command line) allows to be replaced or deleted."""

    all: bool = False
    targets: frozenset[str] = field(default_factory=frozenset)
    # Human-readable origin per target, for the report ("label allow-destructive").
    origins: tuple[tuple[str, str], ...] = ()

    def covers(self, urn: str, typ: str) -> Optional[str]:
        """The origin of the acknowledgement covering this resource, or None."""
        for target, origin in self.origins:
            if target == "*" or target == urn or target == typ:
                return origin
        return None

    def merged(self, other: "Acknowledgement") -> "Acknowledgement":
        return Acknowledgement(all=self.all or other.all, targets=self.targets | other.targets,
                               origins=self.origins + other.origins)


NONE = Acknowledgement()


class EventError(Exception):
    """The GitHub event file is unreadable."""


def from_targets(targets: Iterable[str], origin: str = "--allow-destructive") -> Acknowledgement:
    targets = [t.strip() for t in targets if t and t.strip()]
    return Acknowledgement(all="*" in targets, targets=frozenset(targets),
                           origins=tuple((t, f"{origin} {t}") for t in targets))


def from_event(event: dict[str, Any]) -> Acknowledgement:
    """Acknowledgements in a GitHub `pull_request` event payload (labels and body)."""
    pr = event.get("pull_request") or {}
    origins: list[tuple[str, str]] = []
    labels = [lbl.get("name") for lbl in pr.get("labels") or [] if isinstance(lbl, dict)]
    if LABEL in labels:
        origins.append(("*", f"label {LABEL}"))
    body = pr.get("body") or ""
    for m in _LINE.finditer(body):
        target = m.group(1)
        origins.append((target, f"PR body line `{COMMAND} {target}`"))
    targets = frozenset(t for t, _ in origins)
    return Acknowledgement(all="*" in targets, targets=targets, origins=tuple(origins))


def from_event_file(path: Optional[str | Path] = None) -> Acknowledgement:
    """Reads the event JSON (default: $GITHUB_EVENT_PATH; neither given means no acknowledgement)."""
    path = path or os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        return NONE
    if not Path(path).is_file():
        raise EventError(f"GitHub event file {path} does not exist")
    try:
        event = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise EventError(f"GitHub event file {path} is not valid JSON: {e}") from None
    return from_event(event if isinstance(event, dict) else {})


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.pr_ack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--event", metavar="FILE", help="GitHub event JSON (default: $GITHUB_EVENT_PATH)")
    args = parser.parse_args(argv)
    ack = from_event_file(args.event)
    if not ack.origins:
        print("no acknowledgement of destructive changes")
    for target, origin in ack.origins:
        print(f"{target}\t({origin})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
