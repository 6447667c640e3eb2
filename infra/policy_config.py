"""Generates the policy pack's per-stack config (policies/config/<stack>.json).

    python -m infra.policy_config [--stack dev --stack prod] [--check]
    python -m infra.policy_config --stack NAME --stack-file FILE   (a stack file outside Pulumi.<stack>.yaml)

Why generated: the pack runs in its own process (under the CLI, in its own
virtualenv) and must not import the project, yet its GPU and cost rules need
the same figures the planner uses. So the figures travel the way the CLI
hands settings to a pack: through the pack's config schema. This module
derives them from one source of truth, the stack file (budget, gpuLimits,
environment, catalog overrides) and infra/catalog.py (GPUs per node, GPU
memory, on-demand prices with their source and date, spot discounts), and
`tests/test_policies_config.py` fails when a shipped file drifts from what
this module generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from infra.config import Settings, load_settings
from infra.preview import ROOT, read_stack

# Reliability rules a dev stack runs as advisories (cheap teardown, single replicas).
DEV_ADVISORY = ("serving-pdb", "serving-graceful-shutdown", "stateful-protected")
# Rules the generated configs run below the pack's level, each with the reason (policies/README.md "Levels and
# exceptions (issue 15)"); their fixtures judge them at the pack's level.
# eks-version-supported (disabled): the stack files pin Kubernetes 1.33 (llmserving:kubernetesVersion), past EKS
# standard support since 2026-07-29, and infra/eks_catalog.py pins add-ons for 1.33 only; the preview tests expect
# no advisory on the shipped stacks. tests/test_policies_depth.py shows the rule flagging them; move it to
# "advisory" or drop it from here once the stacks move to a version in standard support (the lead's call, issue 15).
SHIPPED_DISABLED = ("eks-version-supported",)
# ecs-container-memory-limits, ecs-health-check-grace (advisory): the ECS service component gives the vLLM container
# only a soft memory limit (memoryReservation) and a fixed 1,200 s grace, below a 70B model's start-up budget
# (components/vllm_ecs_service.py; findings for its owner, issue 15); mandatory once it sets both.
SHIPPED_ADVISORY = ("ecs-container-memory-limits", "ecs-health-check-grace")


def instance_table(settings: Settings) -> dict[str, dict[str, Any]]:
    cat = settings.catalog
    return {name: {"gpus": it.gpu_count, "gpuMemoryGb": cat.gpus[it.gpu].memory_gb,
                   "onDemandUsdPerHour": it.on_demand_usd_per_hour, "spotDiscount": it.spot_discount}
            for name, it in sorted(cat.instance_types.items())}


def startup_budgets(settings: Settings) -> dict[str, int]:
    """Per model, the seconds its load may take; the pack checks startup probes and ECS grace periods against it.

    With a per-model start-up estimate (infra/startup.py, issue 12: `load_seconds`, what the startupProbe covers)
    that is the figure; without one, the serving catalog's start-up budget, chosen the way infra/serving.py
    workload_args chooses it (multi-node, large, else the default), with the stack's serving.figures overrides."""
    try:
        from infra import startup  # type: ignore[attr-defined]
    except ImportError:
        startup = None
    if startup is not None and hasattr(startup, "estimates"):
        from infra import capacity

        return {name: int(e.load_seconds) for name, e in startup.estimates(settings, capacity.plan(settings)).items()}
    from infra.serving import figure

    out = {}
    for m in settings.config.models:
        arch = settings.catalog.models.get(m.source)
        params = m.parameters_billion or (arch.parameters_billion if arch else 0)
        if m.pipeline_parallel > 1:
            key = "startup_budget_seconds_multinode"
        elif params >= figure(settings, "large_model_billion"):
            key = "startup_budget_seconds_large"
        else:
            key = "startup_budget_seconds"
        out[m.name] = int(figure(settings, key))
    return out


def policy_config(settings: Settings) -> dict[str, Any]:
    c = settings.config
    prod = c.environment == "prod"
    table = instance_table(settings)
    budgets = startup_budgets(settings)
    # The DCGM exporter needs the kubelet's pod-resources socket (hostPath) and SYS_ADMIN, so its namespace is
    # privileged (Kubernetes docs, "Monitor device plugin resources": the directory requires privileged access;
    # components/nvidia_runtime.py).
    from components.nvidia_runtime import DCGM_NAMESPACE

    privileged_ok = [DCGM_NAMESPACE] if c.orchestrator == "eks" and c.observability.dcgm_exporter else []
    # The serving pods' one hostPath: the node-level cache the GPU nodes create at boot (issue 12.3;
    # components/vllm_workload.py NodeCache). EKS only; no exception where nothing mounts it.
    from infra import eks_catalog as ec

    host_path = {"servingNodeCachePath": ec.NODE_CACHE_HOST_PATH if c.orchestrator == "eks" else ""}
    cfg: dict[str, Any] = {
        "gpu-allowed-instance-families": {"allowedFamilies": list(c.gpu_limits.allowed_families)},
        "gpu-max-per-pool": {"maxGpusPerPool": c.gpu_limits.max_gpus_per_pool, "instanceTypes": table},
        "gpu-max-total": {"maxGpusTotal": c.gpu_limits.max_gpus_total, "instanceTypes": table},
        "gpu-pod-fits-node-type": {"instanceTypes": table},
        "cost-max-hourly-within-budget": {"maxHourlyUsd": c.budget.hourly_usd, "instanceTypes": table},
        "cost-budget-monthly-limit": {"maxMonthlyUsd": c.budget.monthly_usd},
        "cost-spot-required": {"requireSpot": c.environment == "dev"},
        "cost-autoscaler-bounded": {"maxReplicas": max(m.max_replicas for m in c.models)},
        "min-availability-zones": {"minZones": 3 if prod else 2},
        "alb-deletion-protection": {"required": prod},
        "waf-attached": {"required": prod},
        "gpu-nodepool-when-empty": "advisory",
        # Scarce on-demand GPUs launch into a reservation or carry a written acknowledgement (prod).
        "gpu-capacity-reservation": {"required": prod, "acknowledgedPools": sorted(
            p.name for p in c.gpu_pools if p.acknowledge_no_reservation)},
        "cost-budget-exists": {"stackTagKey": "stack", "stackTagValue": settings.stack},
        "serving-probes": {"minStartupSeconds": budgets},
        "ecs-health-check-grace": {"minStartupSeconds": budgets},
        "serving-min-replicas": {"minReplicas": 2 if prod else 1},
        "gpu-pool-on-demand-fallback": {"required": prod},
        "pss-namespace-not-privileged": {"allowedPrivileged": privileged_ok},
        "pss-host-path": host_path,
        # No model opts in to --trust-remote-code (the stack config has no such switch yet).
        "vllm-trust-remote-code": {"allowedModels": []},
    }
    for level, names in (("advisory", SHIPPED_ADVISORY), ("disabled", SHIPPED_DISABLED)):
        for name in names:
            cfg[name] = {**cfg[name], "enforcementLevel": level} if isinstance(cfg.get(name), dict) else level
    if prod:
        # GPU, cost and security (and everything else not named advisory above) block a prod deploy.
        cfg["all"] = "mandatory"
    else:
        for name in DEV_ADVISORY:
            cfg[name] = "advisory"
    return cfg


def settings_of(stack: str, root: Path = ROOT, stack_file: Optional[Path] = None) -> Settings:
    files = read_stack(root, stack, stack_file)
    return load_settings(files.config, stack=stack, secret_keys=set(files.secret_keys), project=files.project)


def render(stack: str, root: Path = ROOT, stack_file: Optional[Path] = None) -> str:
    return json.dumps(policy_config(settings_of(stack, root, stack_file)), indent=2, sort_keys=True) + "\n"


def shipped_stacks() -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.policy_config", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", action="append", help="stack(s) to generate (default: every Pulumi.<stack>.yaml)")
    parser.add_argument("--stack-file", metavar="FILE", help="read the (single) --stack from this file")
    parser.add_argument("--check", action="store_true", help="exit 1 if a shipped file differs")
    args = parser.parse_args(argv)
    if args.stack_file and len(args.stack or []) != 1:
        parser.error("--stack-file needs exactly one --stack")
    from infra.capacity import PlanError
    from infra.config import ConfigError
    from infra.preview import PreviewInputError

    stale = []
    for stack in args.stack or shipped_stacks():
        path = ROOT / "policies" / "config" / f"{stack}.json"
        try:
            text = render(stack, stack_file=Path(args.stack_file) if args.stack_file else None)
        except (ConfigError, PlanError, PreviewInputError) as e:
            # A stack that does not validate gets no policy config (same message as the preview).
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("out of date (run python -m infra.policy_config): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
