"""Every rule of the pack sees real resources of this project, and the pack stands alone.

Coverage: for the shipped prod stack (EKS) and an ECS stack (tests/test_ecs_stacks.py, medium tier),
list for each rule whether at least one registered resource is of a type the rule judges (its
`scope_types`, declared next to the rule). A rule whose types never occur here would pass forever
without looking at anything; the table below is the expected coverage and changes only on purpose.

Independence: the pack runs under the Pulumi CLI from its own folder with its own virtualenv
(policies/requirements.txt), so it may import only the standard library, pulumi, pulumi_policy and
its own modules, and its requirements pin what it imports.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

import pytest

from infra import policy_config
from infra.analyzer import run_policy_pack
from tests.harness import only_policy, run_stack, settings_for, shipped_preview
from tests.policy_fixtures import PACK, pack_policies
from tests.test_ecs_stacks import TIERS

ECS_TIER = "medium-p5"

# rule -> (in scope in the shipped prod stack, in scope in the ECS stack)
EKS_ONLY = (True, False)
ECS_ONLY = (False, True)
BOTH = (True, True)
EXPECTED = {
    "gpu-capacity-reservation": BOTH, "gpu-node-repair": BOTH,
    "gpu-allowed-instance-families": BOTH, "gpu-max-per-pool": BOTH, "gpu-max-total": BOTH,
    "gpu-nodepool-gpu-limit": EKS_ONLY, "gpu-parallelism-matches-request": BOTH, "gpu-pod-fits-node-type": EKS_ONLY,
    "gpu-pods-tolerate-taint": EKS_ONLY, "gpu-nodes-tainted": EKS_ONLY, "gpu-nodegroup-nvidia-ami": EKS_ONLY,
    "cost-allocation-tags": BOTH, "cost-max-hourly-within-budget": BOTH, "cost-spot-required": BOTH,
    "cost-budget-exists": BOTH, "cost-budget-alerts": BOTH, "cost-budget-monthly-limit": BOTH,
    "cost-nodepool-consolidation": EKS_ONLY, "cost-autoscaler-bounded": EKS_ONLY,
    "subnet-no-public-ip-on-launch": BOTH, "vpc-flow-logs": BOTH, "log-group-retention": BOTH, "s3-sse-kms": BOTH,
    "s3-versioning": BOTH, "s3-block-public-access": BOTH, "s3-tls-only": BOTH, "s3-no-wildcard-principal": BOTH,
    "s3-access-logging": BOTH, "eks-endpoint-restricted": EKS_ONLY, "eks-control-plane-logging": EKS_ONLY,
    "eks-secrets-encryption": EKS_ONLY, "launch-template-imdsv2": BOTH, "launch-template-imds-hop-limit": BOTH,
    "launch-template-ebs-encrypted": BOTH, "alb-https-only": BOTH, "alb-tls-policy": BOTH, "alb-access-logs": BOTH,
    "alb-drop-invalid-headers": BOTH, "alb-deletion-protection": BOTH, "waf-attached": BOTH, "waf-rate-limit": BOTH,
    "vllm-api-key-required": BOTH, "images-pinned": BOTH, "no-privileged-containers": BOTH, "sqs-encrypted": EKS_ONLY,
    "kms-key-rotation": BOTH, "min-availability-zones": BOTH, "serving-probes": BOTH, "serving-pdb": EKS_ONLY,
    "spot-interruption-queue": EKS_ONLY, "stateful-protected": BOTH, "resource-requests": EKS_ONLY,
    "vllm-shared-memory": BOTH, "serving-graceful-shutdown": EKS_ONLY, "ecs-deployment-circuit-breaker": ECS_ONLY,
    "gpu-nodepool-when-empty": EKS_ONLY,
    # Issue 15: IAM, network exposure, pod security, vLLM risks, reliability.
    "iam-no-wildcard-action": BOTH, "iam-no-service-wildcard-on-all-resources": BOTH, "iam-trust-not-public": BOTH,
    "iam-no-admin-managed-policy": BOTH, "iam-passrole-scoped": BOTH, "kms-key-policy-not-public": BOTH,
    "adapter-store-readers": BOTH, "adapter-store-tenant-isolation": BOTH,
    "sg-no-world-ingress": BOTH, "sg-no-all-traffic-ingress": BOTH, "alb-egress-restricted": BOTH,
    "compute-in-private-subnets": BOTH, "k8s-service-not-exposed": EKS_ONLY, "model-network-policy": EKS_ONLY,
    "pss-host-namespaces": EKS_ONLY, "pss-host-path": EKS_ONLY, "pss-capabilities": EKS_ONLY,
    "pss-privilege-escalation": EKS_ONLY, "pss-run-as-non-root": EKS_ONLY, "rbac-no-admin-for-workloads": EKS_ONLY,
    "pss-namespace-not-privileged": EKS_ONLY,
    "vllm-trust-remote-code": BOTH, "vllm-runtime-lora-admin-closed": BOTH, "vllm-secrets-not-plain": BOTH,
    "serving-min-replicas": BOTH, "gpu-pool-on-demand-fallback": BOTH, "nodepool-disruption-budget": EKS_ONLY,
    "node-ami-pinned": BOTH, "ecs-health-check-grace": ECS_ONLY, "container-memory-limits": EKS_ONLY,
    "ecs-container-memory-limits": ECS_ONLY,
    "ecs-log-configuration": ECS_ONLY, "eks-version-supported": EKS_ONLY, "alb-http-listener-rules": BOTH,
    # Multi-node models (pipelineParallel > 1) render a LeaderWorkerSet; neither stack here serves one
    # (tests/serving_presets.py does, and tests/test_serving.py covers it).
    "lws-recreate-group-on-restart": (False, False),
}


@functools.lru_cache(maxsize=None)
def _ecs_run():
    base, changes = TIERS[ECS_TIER]
    return run_stack(base, changes)


@pytest.fixture(scope="module")
def stacks() -> dict[str, set[str]]:
    prod = {r["type"] for r in shipped_preview("prod")["resources"]}
    ecs = {r.type for r in _ecs_run().registrations}
    return {"prod": prod, "ecs": ecs}


def _in_scope(policy, types: set[str]) -> bool:
    return policy.scope_types is None or bool(policy.scope_types & types)


def test_every_rule_declares_its_resource_types():
    undeclared = [p.name for p in pack_policies() if p.scope_types is not None and not p.scope_types]
    assert undeclared == []


def test_rules_see_the_resources_the_stacks_register(stacks):
    got = {p.name: (_in_scope(p, stacks["prod"]), _in_scope(p, stacks["ecs"])) for p in pack_policies()}
    assert got == EXPECTED
    seen = [n for n, (prod, ecs) in got.items() if prod or ecs]
    assert len(seen) == len(got) - 1  # all but the LeaderWorkerSet rule


def test_every_tagged_aws_resource_is_judged_for_cost_tags(stacks):
    # The cost-allocation rule names the taggable types; a tagged type it leaves out escapes it.
    pack_policies()  # puts the pack on sys.path
    from rules.cost import TAGGABLE_TYPES

    docs = [shipped_preview("prod")["resources"], [{"type": r.type, "inputs": r.inputs} for r in _ecs_run().registrations]]
    tagged = {r["type"] for doc in docs for r in doc
              if "tags" in (r["inputs"] or {}) and not r["type"].startswith(("kubernetes:", "llmserving:"))}
    assert sorted(tagged - TAGGABLE_TYPES) == []


def test_spot_rule_sees_the_ecs_auto_scaling_group():
    # A dev ECS stack on on-demand GPUs: its ASG always has a mixedInstancesPolicy (the instance type
    # overrides), so the rule must read onDemandPercentageAboveBaseCapacity, not only its presence.
    base, changes = TIERS["small-g5"]
    run = run_stack(base, changes)
    cfg = policy_config.policy_config(settings_for(base, changes))
    # Only the rule read below runs (as the stack configures it); the pack's other rules are disabled.
    violations, _ = run_policy_pack(PACK, run.registrations, policy_config=only_policy(cfg, "cost-spot-required") or cfg,
                                    project="llmserving", stack=base, stack_config={}, stack_tags={})
    assert [(v.policy, v.message.split("\n", 1)[1]) for v in violations
            if v.level == "mandatory" and v.policy == "cost-spot-required"] == [
        ("cost-spot-required", "GPU auto scaling group 'llmserving-dev-g5' launches only on-demand capacity "
         "(mixedInstancesPolicy onDemandPercentageAboveBaseCapacity 100); this stack requires spot for GPU pools")]


# --- the pack stands alone ----------------------------------------------------------------

PACK_FILES = sorted([PACK / "__main__.py", *(PACK / "rules").glob("*.py")])
THIRD_PARTY = {"pulumi": "pulumi", "pulumi_policy": "pulumi-policy"}  # import name -> distribution


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in a file (relative imports are the pack's own)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_pack_imports_only_stdlib_pulumi_and_itself():
    own = {"rules"} | {p.stem for p in (PACK / "rules").glob("*.py")}
    foreign = {}
    for path in PACK_FILES:
        bad = sorted(n for n in _imports(path) if n not in sys.stdlib_module_names and n not in THIRD_PARTY
                     and n not in own)
        if bad:
            foreign[str(path.relative_to(PACK))] = bad
    assert foreign == {}
    used = set().union(*(_imports(p) for p in PACK_FILES))
    assert {"pulumi_policy"} <= used and not used & {"infra", "components", "tests"}


def test_pack_requirements_pin_what_it_imports():
    pins = {}
    for line in (PACK / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.+-]*)", line)
            assert m, f"policies/requirements.txt: {line!r} is not pinned with =="
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    used = set().union(*(_imports(p) for p in PACK_FILES))
    assert sorted(THIRD_PARTY[n] for n in used if n in THIRD_PARTY and THIRD_PARTY[n] not in pins) == []
    # The pack's virtualenv and the project's run the same SDK versions (the offline preview drives the pack
    # with the project's interpreter).
    project = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (PACK.parent / "requirements.txt").read_text(), re.M))
    assert {d: pins[d] for d in ("pulumi", "pulumi-policy")} == {d: project[d] for d in ("pulumi", "pulumi-policy")}


# --- policies/README.md lists every rule ------------------------------------------------------

IDS = re.compile(r"\b(CKV2?_[A-Z0-9]+_[0-9]+(?:-[0-9]+)?|AVD-[A-Z]+-[0-9]{4}(?:/[0-9]{4})*|Security Hub S3\.5|AWS Config [A-Z_]+"
                 r"|PSS:[a-z]+/[a-z-]+)")


def _level(policy, cfg: dict) -> str:
    own = cfg.get(policy.name)
    if isinstance(own, str):
        return own
    if isinstance(own, dict) and isinstance(own.get("enforcementLevel"), str):
        return own["enforcementLevel"]
    return cfg.get("all", policy.enforcement_level.value)


# Rules added by issue 15: listed in their own README section (policies/README.md, "Rules added in depth").
ISSUE_15 = {
    "iam-no-wildcard-action", "iam-no-service-wildcard-on-all-resources", "iam-trust-not-public",
    "iam-no-admin-managed-policy", "iam-passrole-scoped", "kms-key-policy-not-public", "adapter-store-readers",
    "adapter-store-tenant-isolation", "sg-no-world-ingress", "sg-no-all-traffic-ingress", "alb-egress-restricted",
    "compute-in-private-subnets", "k8s-service-not-exposed", "model-network-policy", "pss-host-namespaces",
    "pss-host-path", "pss-capabilities", "pss-privilege-escalation", "pss-run-as-non-root",
    "rbac-no-admin-for-workloads", "pss-namespace-not-privileged", "vllm-trust-remote-code",
    "vllm-runtime-lora-admin-closed", "vllm-secrets-not-plain", "serving-min-replicas", "gpu-pool-on-demand-fallback",
    "nodepool-disruption-budget", "node-ami-pinned", "ecs-health-check-grace", "container-memory-limits",
    "ecs-log-configuration", "eks-version-supported", "alb-http-listener-rules", "ecs-container-memory-limits",
}


def readme_rows(new: bool = False) -> list[str]:
    """README table rows: one per rule (area = its module), levels from the shipped per-stack configs.
    new=False: the rules the pack had before issue 15 (the first table); new=True: the ones issue 15 added."""
    from pulumi_policy import StackValidationPolicy

    from tests.policy_fixtures import pack_modules

    dev, prod = _shipped("dev"), _shipped("prod")
    rows = []
    for area, module in pack_modules():
        for p in module.POLICIES:
            if (p.name in ISSUE_15) != new:
                continue
            scope = "stack" if isinstance(p, StackValidationPolicy) else "resource"
            ids = ", ".join(IDS.findall(p.description)) or "none"
            rows.append(f"| {area} | `{p.name}` | {scope} | {_level(p, dev)} | {_level(p, prod)} | {ids} | "
                        f"{p.description} |")
    return rows


def _shipped(stack: str) -> dict:
    import json

    return json.loads((PACK / "config" / f"{stack}.json").read_text())


def _table(text: str, heading: str) -> list[str]:
    """The rows of the first table after a heading line."""
    lines = text.splitlines()
    start = lines.index(heading)
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen = True
            if not line.startswith(("| area", "|---")):
                rows.append(line)
        elif seen:
            break
    return rows


def test_readme_lists_every_rule_with_levels_and_ids():
    from tests.test_policies_depth import CASES as DEPTH
    from tests.test_policies_rules import CASES
    from tests.test_policies_unknowns import CASES as UNKNOWN

    text = (PACK / "README.md").read_text()
    assert _table(text, "## Rules") == readme_rows()
    assert _table(text, "## Rules added in depth (issue 15)") == readme_rows(new=True)
    rules = len(readme_rows()) + len(readme_rows(new=True))
    assert f"**{rules} rules**" in text
    assert f"**{len(CASES) + len(DEPTH)} failing fixtures**" in text
    assert f"**{len(UNKNOWN)} unknown-value fixtures**" in text


def test_readme_counts_rules_by_area():
    from tests.policy_fixtures import pack_modules

    text = (PACK / "README.md").read_text()
    counts = ", ".join(f"{len(m.POLICIES)} {area}" for area, m in pack_modules())
    assert f"By area: {counts}." in text
