"""Evaluates IAM policies with a real IAM policy simulator (test-only).

The evaluator is @cloud-copilot/iam-simulate (pinned in tests/iam_eval/package.json,
installed by `make test` with `npm ci`), run by Node.js through
tests/iam_eval/simulate.mjs. It resolves policy variables such as
`${aws:PrincipalTag/tenant}`, evaluates every condition operator, and
combines identity and resource policies the way AWS does, which is what a
tenant-isolation test must exercise (moto's IAM enforcement ignores
conditions and policy variables).

A request's `context` is what the caller knows about the call (its request
tags, the tags of the resource, ...); simulate.mjs keeps only the keys the
Service Authorization Reference lists for the action and resource type, as
AWS does. A call that touches several resources (ec2:CreateFleet: launch
template, fleet, instance, volume, network interface, subnet, ...) is
authorized per resource: build one Request per resource (`call`) and the
call succeeds only when every one is allowed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

EVAL_DIR = Path(__file__).resolve().parent / "iam_eval"
ACCOUNT = "123456789012"


class EvaluatorMissing(RuntimeError):
    pass


@dataclass
class Request:
    action: str
    resource: str
    principal: str
    context: dict[str, Any] = field(default_factory=dict)
    identity_policies: list[dict] = field(default_factory=list)
    resource_policy: Optional[dict] = None
    resource_account: str = ACCOUNT
    # SAR resource type, when the ARN alone is ambiguous.
    resource_type: Optional[str] = None


def _simulation(r: Request) -> dict:
    sim: dict[str, Any] = {
        "request": {"action": r.action, "principal": r.principal,
                    "resource": {"resource": r.resource, "accountId": r.resource_account},
                    "contextVariables": r.context,
                    **({"resourceType": r.resource_type} if r.resource_type else {})},
        "identityPolicies": [{"name": f"p{i}", "policy": p} for i, p in enumerate(r.identity_policies)],
        "serviceControlPolicies": [], "resourceControlPolicies": [],
    }
    if r.resource_policy is not None:
        sim["resourcePolicy"] = r.resource_policy
    return sim


def evaluate(requests: list[Request]) -> list[str]:
    """'Allowed', 'ExplicitlyDenied' or 'ImplicitlyDenied' per request; raises on invalid input."""
    return [d["result"] for d in evaluate_detailed(requests)]


def evaluate_detailed(requests: list[Request]) -> list[dict]:
    """Per request: result, the context keys AWS would not send for it (`dropped`) and its resource type."""
    node = shutil.which("node")
    if node is None or not (EVAL_DIR / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        raise EvaluatorMissing(f"the IAM evaluator is not installed: run `npm ci --prefix {EVAL_DIR}` (make test does)")
    proc = subprocess.run([node, str(EVAL_DIR / "simulate.mjs")], input=json.dumps([_simulation(r) for r in requests]),
                          capture_output=True, text=True, timeout=60, cwd=EVAL_DIR)
    if proc.returncode != 0:
        raise RuntimeError(f"IAM evaluator failed: {proc.stderr}")
    results = json.loads(proc.stdout)
    out = []
    for r, res in zip(requests, results):
        if res["result"] == "error":
            raise ValueError(f"IAM evaluator rejected {r.action} on {r.resource}: {json.dumps(res['errors'])}")
        out.append(res)
    return out
