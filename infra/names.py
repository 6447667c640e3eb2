"""Physical AWS names built from the project and stack name, and the limits AWS puts on them.

Names are deterministic. A name that fits keeps its plain form, so shipped
stacks keep their names (renaming a bucket or a role replaces it). Only a
name that would otherwise be invalid is cut and ends in a hash of the full
name; where the name is built inside a component with its own fixed
pattern, a stack name that makes it too long is a config error naming the
stack, the longest name and the limit (infra/config_limits.py).
"""

from __future__ import annotations

import hashlib
from typing import Optional

# S3 bucket names: 3-63 characters (S3 "Bucket naming rules"; components/log_archive.py, adapter_store.py).
S3_BUCKET_MAX = 63
# IAM role names: 1-64 (botocore iam roleNameType); EventBridge rule names: 1-64 (botocore events RuleName);
# EKS cluster names 1-100 (botocore eks ClusterName); AWS Budgets names 1-100 (botocore budgets BudgetName);
# SQS queue names 1-80 (Amazon SQS quotas: queue name).
IAM_ROLE_MAX = 64
EVENT_RULE_MAX = 64
SQS_QUEUE_MAX = 80
EKS_CLUSTER_MAX = 100
BUDGET_NAME_MAX = 100
# components/load_balancer.py, ecs_gpu_cluster.py: the name prefix is a DNS label of at most 40 characters;
# components/vllm_ecs_service.py: the service name prefix is at most 39.
LB_PREFIX_MAX = 40
ECS_CLUSTER_MAX = 40
ECS_SERVICE_PREFIX_MAX = 39


def fit(name: str, limit: int, *, to: Optional[int] = None) -> str:
    """`name` when it has at most `limit` characters; else its start cut to `to` (default `limit`)
    characters, ending in 8 hex digits of the SHA-256 of the whole name (still unique per name)."""
    if len(name) <= limit:
        return name
    size = to or limit
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: size - 9].rstrip('-')}-{digest}"


def log_bucket_name(prefix: str, account: str, region: str) -> str:
    return fit(f"{prefix}-logs-{account}-{region}", S3_BUCKET_MAX)


def adapter_bucket_name(prefix: str, account: str, region: str) -> str:
    # components/adapter_store.py names its reader and writer roles "<bucket>-reader"[:64] and
    # "<bucket>-writer"[:64]: at 63 characters both would be "<bucket>-". A name that long is
    # cut to 57, which keeps both role names whole.
    return fit(f"{prefix}-adapters-{account}-{region}", S3_BUCKET_MAX - 1, to=IAM_ROLE_MAX - len("-writer"))


def stack_names(project: str, stack: str, *, orchestrator: str, karpenter: bool) -> list[tuple[str, int, str]]:
    """(name, limit, what) for every name a component builds from the stack name with a fixed pattern."""
    prefix = f"{project}-{stack}"
    out = [
        (prefix, LB_PREFIX_MAX, "the load balancer name prefix (a DNS label, components/load_balancer.py)"),
        (prefix, BUDGET_NAME_MAX, "the AWS Budgets name"),
    ]
    if orchestrator == "eks":
        out.append((prefix, EKS_CLUSTER_MAX, "the EKS cluster name"))
        if karpenter:
            from components.karpenter import INTERRUPTION_EVENTS
            out += [(f"{prefix}-karpenter-{key}", EVENT_RULE_MAX, "a Karpenter interruption EventBridge rule name") for key in INTERRUPTION_EVENTS]
            out += [(f"{prefix}-karpenter-{role}", IAM_ROLE_MAX, "a Karpenter IAM role name")
                    for role in ("controller", "node")]
            out.append((f"{prefix}-karpenter", SQS_QUEUE_MAX, "the Karpenter interruption queue name"))
    else:
        out.append((prefix, ECS_CLUSTER_MAX, "the ECS cluster name (a DNS label, components/ecs_gpu_cluster.py)"))
        out.append((prefix, ECS_SERVICE_PREFIX_MAX, "the ECS service name prefix (components/vllm_ecs_service.py)"))
    return out
