"""GPU guardrails: which GPUs a stack may run and how many."""

from __future__ import annotations

POLICIES: list = []
