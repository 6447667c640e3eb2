"""vLLM risks: remote code, runtime LoRA updates behind an open admin path, and tokens in plain text.

Servers are recognised by command line, image or the serving label the components set
(rules.common.serving_containers, rules.ecs.is_ecs_server), so a custom image does not slip past.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from rules.common import (Res, UNKNOWN, WORKLOAD_TYPES, as_list, container_args, container_paths, env_names, flag,
                          has_flag, num, of_type, refers_to, resource_policy, serving_containers, stack_policy,
                          workload_label, workload_unknown)
from rules.ecs import ECS_TASK, ecs_containers_or_unjudged, ecs_env, ecs_task_label, is_ecs_server

LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
SERVICE = "kubernetes:core/v1:Service"
# vLLM v0.11.1's runtime adapter endpoints (vllm/entrypoints/openai/api_server.py, mounted only when
# VLLM_ALLOW_RUNTIME_LORA_UPDATING is true: vllm/envs.py); components/load_balancer.py ADMIN_PATHS.
ADMIN_PATHS = ("/v1/load_lora_adapter", "/v1/unload_lora_adapter")
RUNTIME_LORA = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


def _servers(r: Res, report) -> list[tuple[str, dict, bool, str]]:
    """(label, container, is_ecs, path) of the vLLM servers of a workload or task (unknowns reported)."""
    if r.type == ECS_TASK:
        return [(ecs_task_label(r), c, True, f"containerDefinitions[{i}]")
                for i, c in enumerate(ecs_containers_or_unjudged(r, report)) if is_ecs_server(c)]
    where = workload_unknown(r)
    if where:
        report.unjudged(workload_label(r), where)
        return []
    return [(workload_label(r), c, False, path) for role, _, c, path in serving_containers(r) if role != "worker"]


def _argv_unknown(c: dict, path: str) -> str | None:
    for key in ("entryPoint", "command", "args"):
        if c.get(key) is UNKNOWN or UNKNOWN in as_list(c.get(key)):
            return f"{path}.{key}"
    return None


def _trust_remote_code(r: Res, cfg: dict, report) -> None:
    allowed = set(cfg.get("allowedModels", []))
    for label, c, ecs, path in _servers(r, report):
        where = _argv_unknown(c, path)
        if where:
            report.unjudged(f"{label} container '{c.get('name')}'", where)
            continue
        argv = container_args(c)
        if not has_flag(argv, "--trust-remote-code"):
            continue
        model = flag(argv, "--served-model-name") or (r.get("metadata", "name") if not ecs else r.name)
        if model not in allowed:
            report(f"{label} container '{c.get('name')}' serves '{model}' with --trust-remote-code, which runs Python "
                   f"from the model repository at load time; opt the model in (policy config "
                   f"vllm-trust-remote-code.allowedModels) only after reviewing that code")


trust_remote_code = resource_policy(
    "vllm-trust-remote-code",
    "vLLM servers run --trust-remote-code only for models the stack opts in per model (allowedModels); no Checkov ID.",
    _trust_remote_code, types=[*WORKLOAD_TYPES, ECS_TASK],
    schema={"allowedModels": {"type": "array", "items": {"type": "string"}, "default": []}})


def _truthy_env(value: Any) -> bool:
    # vllm/envs.py: VLLM_ALLOW_RUNTIME_LORA_UPDATING is true for "1" or "true" (case-insensitive).
    return isinstance(value, str) and value.strip().lower() in ("1", "true")


def _runtime_lora_servers(resources: list[Res], report) -> list[str]:
    out = []
    for r in resources:
        if r.type not in WORKLOAD_TYPES and r.type != ECS_TASK:
            continue
        for label, c, ecs, path in _servers(r, report):
            if ecs:
                env = ecs_env(c)
                if c.get("environment") is UNKNOWN or UNKNOWN in env.values():
                    report.unjudged(f"{label} container '{c.get('name')}'", f"{path}.environment", r.urn)
                    continue
                value = env.get(RUNTIME_LORA)
            else:
                if c.get("env") is UNKNOWN:
                    report.unjudged(f"{label} container '{c.get('name')}'", f"{path}.env", r.urn)
                    continue
                e = env_names(c).get(RUNTIME_LORA)
                value = e.get("value") if isinstance(e, dict) else None
                if value is UNKNOWN:
                    report.unjudged(f"{label} container '{c.get('name')}'", f"{path}.env.{RUNTIME_LORA}", r.urn)
                    continue
            if _truthy_env(value):
                out.append(f"{label} container '{c.get('name')}'")
    return out


def _deny_covers(rule: Res) -> tuple[bool, str]:
    """(whether a listener rule refuses both admin paths on every request, why not)."""
    actions = [a for a in as_list(rule.get("actions")) if isinstance(a, dict)]
    if not actions or any(a.get("type") in ("forward", "redirect") for a in actions):
        return False, "its action forwards"
    conds = [c for c in as_list(rule.get("conditions")) if isinstance(c, dict)]
    paths = [p for c in conds for p in as_list((c.get("pathPattern") or {}).get("values"))]
    others = [k for c in conds for k in c if k != "pathPattern"]
    if others:
        return False, f"it also requires {', '.join(sorted(set(others)))}"
    missing = [p for p in ADMIN_PATHS if not any(fnmatch.fnmatchcase(p, str(pat).replace("[", "[[]")) for pat in paths)]
    if missing:
        return False, f"its path patterns miss {', '.join(missing)}"
    return True, ""


def _runtime_lora(resources: list[Res], cfg: dict, report) -> None:
    servers = _runtime_lora_servers(resources, report)
    if not servers:
        return
    # Every listener of an internet-facing load balancer that passes traffic on must refuse the admin paths
    # before any rule forwards (ALB rules are evaluated by priority, lowest first; ELB user guide, "Listener rules").
    lbs = [lb for lb in of_type(resources, LB) if lb.get("internal") is not True]
    for listener in of_type(resources, LISTENER):
        if not any(refers_to(listener, "loadBalancerArn", lb) for lb in lbs):
            if listener.get("loadBalancerArn") is UNKNOWN and not listener.prop_deps.get("loadBalancerArn"):
                report.unjudged(f"listener '{listener.name}'", "loadBalancerArn", listener.urn)
            continue
        defaults = listener.get("defaultActions")
        rules = [x for x in of_type(resources, LISTENER_RULE) if refers_to(x, "listenerArn", listener)]
        if defaults is UNKNOWN or any(x.get("actions") is UNKNOWN or x.get("conditions") is UNKNOWN
                                      or x.get("priority") is UNKNOWN for x in rules):
            report.unjudged(f"listener '{listener.name}'", "defaultActions / rules", listener.urn)
            continue
        forwards_default = any(isinstance(a, dict) and a.get("type") == "forward" for a in as_list(defaults))
        forwarding = [x for x in rules if any(isinstance(a, dict) and a.get("type") == "forward"
                                              for a in as_list(x.get("actions")))]
        if not forwards_default and not forwarding:
            continue  # redirects or fixed responses only
        first_forward = min((num(x.get("priority")) or 50000 for x in forwarding), default=50001)
        denies, reasons = [], []
        for x in rules:
            ok, why = _deny_covers(x)
            if ok and (num(x.get("priority")) or 50000) < first_forward:
                denies.append(x)
            elif any(p in str(x.get("conditions")) for p in ("load_lora", "unload_lora")):
                reasons.append(f"rule '{x.name}' ({why or 'its priority comes after a forward'})")
        if not denies:
            report(f"runtime LoRA updates are on ({RUNTIME_LORA}=True in {', '.join(servers)}) while listener "
                   f"'{listener.name}' passes {', '.join(ADMIN_PATHS)} on"
                   f"{' (' + '; '.join(reasons) + ')' if reasons else ''}: any API key holder could load or unload "
                   f"every tenant's adapters; deny those paths first (fixed-response rule)", listener.urn)


runtime_lora = stack_policy(
    "vllm-runtime-lora-admin-closed",
    "Where a vLLM server allows runtime LoRA updates (VLLM_ALLOW_RUNTIME_LORA_UPDATING), every internet-facing "
    "listener refuses /v1/load_lora_adapter and /v1/unload_lora_adapter before anything forwards.",
    _runtime_lora, types=[*WORKLOAD_TYPES, ECS_TASK, LISTENER, LISTENER_RULE])

# Environment names that carry credentials (Hugging Face token, vLLM/OpenAI API keys, AWS keys, generic).
SECRET_NAME = re.compile(r"^(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|HUGGINGFACE_HUB_TOKEN|VLLM_API_KEY|OPENAI_API_KEY|"
                         r"AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN)$|(^|_)(TOKEN|API_KEY|APIKEY|SECRET|SECRET_KEY|PASSWORD)$")
SECRET_FLAGS = ("--api-key", "--hf-token")


def _plain_secrets(r: Res, cfg: dict, report) -> None:
    if r.type == ECS_TASK:
        for i, c in enumerate(ecs_containers_or_unjudged(r, report)):
            label = f"{ecs_task_label(r)} container '{c.get('name')}'"
            if c.get("environment") is UNKNOWN:
                report.unjudged(label, f"containerDefinitions[{i}].environment")
                continue
            names = [n for n, v in ecs_env(c).items() if isinstance(n, str) and SECRET_NAME.search(n) and v not in ("", None)]
            if names:
                report(f"{label} puts {', '.join(names)} in plain environment values; ECS injects them from Secrets "
                       f"Manager or SSM with `secrets` (valueFrom)")
            _flags(label, container_args(c), report)
        return
    where = workload_unknown(r)
    if where:
        report.unjudged(workload_label(r), where)
        return
    for _, _, c, path in container_paths(r):
        label = f"{workload_label(r)} container '{c.get('name')}'"
        env = c.get("env")
        if env is UNKNOWN:
            report.unjudged(label, f"{path}.env")
            continue
        names = [e.get("name") for e in as_list(env) if isinstance(e, dict) and isinstance(e.get("name"), str)
                 and SECRET_NAME.search(e["name"]) and e.get("value") not in ("", None)]
        if names:
            report(f"{label} puts {', '.join(names)} in plain env values; take them from a Secret (valueFrom.secretKeyRef)")
        _flags(label, container_args(c), report)


def _flags(label: str, argv: list[str], report) -> None:
    literal = [f for f in SECRET_FLAGS if has_flag(argv, f) and not str(flag(argv, f) or "").startswith("$")]
    if literal:
        report(f"{label} passes {', '.join(literal)} on the command line in plain text (visible in the pod spec and "
               f"process list); use the environment from a secret")


plain_secrets = resource_policy(
    "vllm-secrets-not-plain",
    "Tokens and keys (HF token, vLLM/OpenAI API keys, *_TOKEN, *_SECRET, *_PASSWORD) never sit in plain env values "
    "or command-line flags: Kubernetes secretKeyRef, ECS `secrets` (Checkov CKV_K8S_35 is the nearest).",
    _plain_secrets, types=[*WORKLOAD_TYPES, ECS_TASK])

POLICIES = [trust_remote_code, runtime_lora, plain_secrets]
