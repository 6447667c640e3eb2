"""ECS task definitions: `containerDefinitions` arrives as JSON text; these helpers read it.

The text is built from outputs in a real first preview (secret ARNs, the log group's name), so the
whole of it can be unknown: `ecs_containers_or_unjudged` reports that instead of returning nothing.
"""

from __future__ import annotations

import json
from typing import Any

from rules.common import Res, UNKNOWN, as_list, is_vllm

ECS_TASK = "aws:ecs/taskDefinition:TaskDefinition"
ECS_SERVICE = "aws:ecs/service:Service"


def ecs_definitions(r: Res) -> Any:
    """The container definitions as a list of dicts, UNKNOWN when unknown, [] when absent or unreadable."""
    raw = r.get("containerDefinitions")
    if raw is UNKNOWN:
        return UNKNOWN
    if raw is None:
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return []
    return [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []


def ecs_containers(r: Res) -> list[dict]:
    defs = ecs_definitions(r)
    return [] if defs is UNKNOWN else defs


def ecs_task_label(r: Res) -> str:
    return f"ECS task '{r.name}'"


def ecs_containers_or_unjudged(r: Res, report: Any) -> list[dict]:
    """The task's containers; when the definitions are unknown, reports that the rule could not judge them."""
    defs = ecs_definitions(r)
    if defs is UNKNOWN:
        report.unjudged(ecs_task_label(r), "containerDefinitions")
        return []
    return defs


def is_ecs_server(c: dict) -> bool:
    """A vLLM server in a task: by image or command line, or the container the ECS component names `vllm`
    (components/vllm_ecs_service.py CONTAINER), or one whose dockerLabels mark it as serving."""
    labels = c.get("dockerLabels") if isinstance(c.get("dockerLabels"), dict) else {}
    return is_vllm(c) or c.get("name") == "vllm" or labels.get("llmserving.io/serves") == "true"


def ecs_env(c: dict) -> dict[str, Any]:
    return {e.get("name"): e.get("value") for e in as_list(c.get("environment"))
            if isinstance(e, dict) and isinstance(e.get("name"), str)}
