"""Edge of a stack, for both orchestrators: log archive, adapter store, ALB (+ WAF), budget, and the
account's Spot service-linked role when a pool uses spot.

Only this module (and infra/stack.py) maps stack settings onto the edge
components' typed args; the components know nothing of stacks or tiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.adapter_store import AdapterStore, AdapterStoreArgs
from components.budget import StackBudget, StackBudgetArgs
from components.load_balancer import LoadBalancerArgs, ModelLoadBalancer
from components.log_archive import LogArchive, LogArchiveArgs
from components.spot_service_linked_role import SpotServiceLinkedRole, SpotServiceLinkedRoleArgs
from infra import edge_catalog as ec
from infra import names, upstream
from infra.eks_catalog import HELM_TIMEOUTS
from infra.config import Settings

# Namespace the serving workloads run in on EKS (infra/serving.py).
SERVING_NAMESPACE = "llmserving"
# Target group of the model-aware router on EKS (no or unknown routing header).
ROUTER_TARGET = "router"


@dataclass
class Edge:
    account_id: str
    log_archive: LogArchive
    adapter_store: AdapterStore
    load_balancer: ModelLoadBalancer
    budget: StackBudget
    # The account's EC2 Spot service-linked role when this stack creates it
    # (a pool uses spot and `spotServiceLinkedRole` is `create`), else None.
    # Spot capacity (Karpenter NodePools, spot node groups, spot ASGs) depends on it.
    spot_service_linked_role: Optional[pulumi.Resource] = None


def account_id() -> str:
    return aws.get_caller_identity().account_id


def _prefix(settings: Settings) -> str:
    return f"{settings.project}-{settings.stack}"


def build_log_archive(settings: Settings, tags: dict[str, str], *, account: str) -> LogArchive:
    elb_accounts: dict = ec.ELB_LOG_ACCOUNTS.value  # type: ignore[assignment]
    return LogArchive(f"{_prefix(settings)}-logs", LogArchiveArgs(
        bucket_name=names.log_bucket_name(_prefix(settings), account, settings.region), account_id=account,
        region=settings.region, elb_log_account_id=elb_accounts.get(settings.region),
        retention_days=settings.config.ingress.access_log_retention_days,
        protect=True, tags=tags))  # access logs are the audit trail


def build_adapter_store(settings: Settings, tags: dict[str, str], *, log_archive: LogArchive,
                        account: str) -> AdapterStore:
    c = settings.config
    d = ec.ADAPTER_STORE_DEFAULTS
    return AdapterStore(f"{_prefix(settings)}-adapters", AdapterStoreArgs(
        bucket_name=names.adapter_bucket_name(_prefix(settings), account, settings.region), account_id=account,
        region=settings.region, log_bucket_name=log_archive.bucket_name,
        tenant_ids=tuple(t.id for t in c.lora.tenants),
        writer_principal_arns=tuple(c.adapter_store.writer_principal_arns),
        noncurrent_version_days=c.adapter_store.noncurrent_version_days,
        abort_incomplete_upload_days=int(d["abort_incomplete_upload_days"].value),  # type: ignore[arg-type]
        kms_deletion_window_days=int(d["kms_deletion_window_days"].value),  # type: ignore[arg-type]
        pod_identity=_adapter_reader_pod_identity(settings, account), protect=True, tags=tags))


def _adapter_reader_pod_identity(settings: Settings, account: str) -> Optional[tuple[str, str, str]]:
    """EKS: the one service account whose pods read adapters (infra/serving.py), on this stack's cluster."""
    if settings.config.orchestrator != "eks":
        return None
    from infra.serving import LORA_SERVICE_ACCOUNT, NAMESPACE

    # The cluster is named after the stack (infra/eks_platform.py); its ARN is known before it exists.
    return (f"arn:aws:eks:{settings.region}:{account}:cluster/{_prefix(settings)}", NAMESPACE, LORA_SERVICE_ACCOUNT)


def mirror_bucket_name(settings: Settings, account: str) -> str:
    """`<project>-<stack>-models-<account>-<region>`, cut with a hash when longer than S3's 63 characters.

    Cut to 40 so that the per-model role names `<bucket>-<model>-weights` keep room for the model name
    (components/model_mirror.py role_name hashes what is still too long)."""
    return names.fit(f"{_prefix(settings)}-models-{account}-{settings.region}", names.S3_BUCKET_MAX, to=40)


def build_model_mirror(settings: Settings, tags: dict[str, str], *, log_archive: LogArchive, account: str,
                       cluster_name=None, extra_readers=None):
    """The stack's model mirror (components/model_mirror.py): bucket, per-model reader and writer roles,
    and on EKS their Pod Identity associations (after the cluster exists: `cluster_name` is its output)."""
    from components.model_mirror import MirroredModel, ModelMirror, ModelMirrorArgs
    from infra import serving

    eks = settings.config.orchestrator == "eks"
    models = tuple(MirroredModel(
        name=m.name, source=m.source, revision=serving.model_revision(m),
        service_accounts=(serving.NAMESPACE, serving.weights_service_account(m.name),
                          serving.mirror_service_account(m.name)) if eks else None)
        for m in settings.config.models)
    return ModelMirror(f"{_prefix(settings)}-models", ModelMirrorArgs(
        bucket_name=mirror_bucket_name(settings, account), account_id=account, region=settings.region,
        log_bucket_name=log_archive.bucket_name, models=models,
        cluster_arn=f"arn:aws:eks:{settings.region}:{account}:cluster/{_prefix(settings)}" if eks else None,
        cluster_name=cluster_name if eks else None, extra_readers=dict(extra_readers or {}),
        noncurrent_version_days=int(serving.figure(settings, "mirror_noncurrent_version_days")),
        abort_incomplete_upload_days=int(ec.ADAPTER_STORE_DEFAULTS["abort_incomplete_upload_days"].value),  # type: ignore[arg-type]
        kms_deletion_window_days=int(ec.ADAPTER_STORE_DEFAULTS["kms_deletion_window_days"].value),  # type: ignore[arg-type]
        protect=True, tags=tags))


def build_load_balancer(settings: Settings, network, tags: dict[str, str], *,
                        log_archive: Optional[LogArchive], default_target: Optional[str] = None,
                        account: Optional[str] = None) -> ModelLoadBalancer:
    c = settings.config
    ing = c.ingress
    a = ec.ALB_DEFAULTS
    q = ec.ALB_QUOTAS
    logs = log_archive if ing.access_logs else None
    return ModelLoadBalancer(f"{_prefix(settings)}-edge", LoadBalancerArgs(
        name_prefix=_prefix(settings), region=settings.region, vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr,
        public_subnet_ids=network.public_subnet_ids, models=tuple(m.name for m in c.models),
        certificate_arn=ing.certificate_arn, require_tls=c.environment == "prod",
        deletion_protection=ing.deletion_protection if ing.deletion_protection is not None else c.environment == "prod",
        waf_rate_limit_per_5_min=ing.waf_rate_limit_per_5_min, tls_policy=str(ec.TLS_POLICY.value),
        access_log_bucket=logs.bucket_name if logs else None,
        access_log_prefix=logs.alb_prefix if logs else "alb", allowed_cidrs=tuple(ing.allowed_cidrs),
        target_port=int(ec.ECS_DEFAULTS["vllm_port"].value),  # type: ignore[arg-type]
        idle_timeout_seconds=ing.idle_timeout_seconds,
        deregistration_delay_seconds=int(a["deregistration_delay_seconds"].value),  # type: ignore[arg-type]
        health_check_interval_seconds=int(a["health_check_interval_seconds"].value),  # type: ignore[arg-type]
        healthy_threshold=int(a["healthy_threshold"].value),  # type: ignore[arg-type]
        unhealthy_threshold=int(a["unhealthy_threshold"].value),  # type: ignore[arg-type]
        max_target_groups=int(q["target_groups_per_load_balancer"].value),  # type: ignore[arg-type]
        max_rules=int(q["rules_per_load_balancer"].value),  # type: ignore[arg-type]
        fixed_response_max_chars=int(q["fixed_response_body_max_chars"].value),  # type: ignore[arg-type]
        waf_log_retention_days=c.observability.log_retention_days, account_id=account,
        default_target=default_target, tags=tags, depends_on=(logs.policy,) if logs else ()))


def uses_spot(settings: Settings) -> bool:
    return any(p.capacity_type in ("spot", "spot-with-on-demand-fallback") for p in settings.config.gpu_pools)


def build_spot_service_linked_role(settings: Settings) -> Optional[pulumi.Resource]:
    """The account's Spot service-linked role, when this stack must create it (see the component)."""
    if not uses_spot(settings) or settings.config.spot_service_linked_role != "create":
        return None
    return SpotServiceLinkedRole(f"{_prefix(settings)}-spot", SpotServiceLinkedRoleArgs()).role


def build_budget(settings: Settings, tags: dict[str, str]) -> StackBudget:
    b = settings.config.budget
    return StackBudget(f"{_prefix(settings)}-budget", StackBudgetArgs(
        budget_name=_prefix(settings), monthly_limit_usd=b.monthly_usd,
        alert_thresholds_percent=tuple(b.alert_thresholds_percent), notify_emails=tuple(b.notify_emails),
        cost_filter_tag=("stack", settings.stack), tags=tags))


def build(settings: Settings, network, tags: dict[str, str]) -> Edge:
    account = account_id()
    logs = build_log_archive(settings, tags, account=account)
    store = build_adapter_store(settings, tags, log_archive=logs, account=account)
    # On EKS requests without a routing header go to the model-aware router.
    lb = build_load_balancer(settings, network, tags, log_archive=logs, account=account,
                             default_target=ROUTER_TARGET if settings.config.orchestrator == "eks" else None)
    budget = build_budget(settings, tags)
    spot_role = build_spot_service_linked_role(settings)
    pulumi.export("endpoint", lb.dns_name)
    pulumi.export("routingHeader", "x-llm-model")
    pulumi.export("adapterBucket", store.bucket_name)
    return Edge(account_id=account, log_archive=logs, adapter_store=store, load_balancer=lb, budget=budget,
                spot_service_linked_role=spot_role)


def build_eks_bindings(settings: Settings, edge: Edge, *, k8s_provider, cluster_name, vpc_id,
                       service_names: Optional[Mapping[str, str]] = None, namespace: str = SERVING_NAMESPACE,
                       router: Optional[tuple[str, int]] = None, tags: Optional[dict[str, str]] = None,
                       node_ready: Sequence[pulumi.Resource] = (), depends_on: Sequence[pulumi.Resource] = ()):
    """EKS: the AWS Load Balancer Controller and a TargetGroupBinding per model.

    `service_names` maps model -> Kubernetes Service (default: the model name)
    in `namespace`; the Service must expose the vLLM port. `node_ready`: what
    must exist before the controller's pods can schedule (EksPlatform.system_nodes);
    `depends_on`: what every TargetGroupBinding waits for (the serving
    namespace and the Services it names).
    """
    from components.alb_bindings import AlbBindings, AlbBindingsArgs, ServiceTarget

    chart: dict = ec.ALB_CONTROLLER_CHART.value  # type: ignore[assignment]
    port = int(ec.ECS_DEFAULTS["vllm_port"].value)  # type: ignore[arg-type]
    names = dict(service_names or {})
    lb = edge.load_balancer
    return AlbBindings(f"{_prefix(settings)}-alb-bindings", AlbBindingsArgs(
        cluster_name=cluster_name, vpc_id=vpc_id, region=settings.region, account_id=edge.account_id,
        k8s_provider=k8s_provider, namespace=namespace,
        targets={**{m: ServiceTarget(target_group_arn=arn, service_name=names.get(m, m), port=port)
                    for m, arn in lb.target_group_arns.items()},
                 **({ROUTER_TARGET: ServiceTarget(target_group_arn=lb.default_target_group_arn,
                                                  service_name=router[0], port=router[1])}
                    if router and lb.default_target_group_arn is not None else {})},
        alb_security_group_id=lb.security_group_id, chart=chart["chart"], chart_version=chart["version"],
        chart_repo=chart["repo"], controller_policy=upstream.alb_controller_policy(),
        helm_timeout_seconds=int(HELM_TIMEOUTS["aws-load-balancer-controller"].value),
        node_ready=tuple(node_ready), depends_on=tuple(depends_on), tags=dict(tags or {})))
