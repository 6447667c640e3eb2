"""ECS task definitions: `containerDefinitions` arrives as JSON text; these helpers read it."""

from __future__ import annotations

import json

from rules.common import Res, UNKNOWN

ECS_TASK = "aws:ecs/taskDefinition:TaskDefinition"


def ecs_containers(r: Res) -> list[dict]:
    raw = r.get("containerDefinitions")
    if raw is None or raw is UNKNOWN:
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return []
    return [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
