"""ServingFoundation: what every vLLM workload in the serving namespace relies on.

- the namespace;
- Kubernetes Secrets by name (the vLLM API key, the Hugging Face token), the
  values from Pulumi secret config, never on a command line;
- cluster controllers from pinned Helm charts (KEDA for queue-depth
  autoscaling; the LeaderWorkerSet controller when a model spans nodes);
- for multi-tenant LoRA: the service account the adapter sync step runs as,
  the tenant mapping ConfigMap (ALL tenants in one object: tenants are data,
  not resources) and the EKS Pod Identity association that binds the
  service account to the adapter store's read-only role.

Workloads depend on `ready` (every object here), so they are created after
the namespace, the CRDs the controllers bring, the tenant mapping and the Pod
Identity association. The controllers' releases wait for `node_ready`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.errors import ArgsError
from components.helm_chart import DNS_LABEL, ChartRelease, chart_problems, helm_release

SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class TenantAdapterAccess:
    """Read-only S3 access of the adapter sync step, through EKS Pod Identity."""

    service_account: str
    config_map: str
    # ConfigMap data: `bucket`, `adapters.tsv` (adapter<TAB>tenant per line), `adapters.json`.
    mapping: Mapping[str, pulumi.Input[str]]
    cluster_name: pulumi.Input[str]
    reader_role_arn: pulumi.Input[str]


@dataclass(frozen=True)
class ServingFoundationArgs:
    namespace: str
    # Controllers the workloads need (KEDA, LeaderWorkerSet), pinned charts.
    charts: tuple[ChartRelease, ...] = ()
    # Secret name -> key -> value (Pulumi secret Outputs).
    secrets: Mapping[str, Mapping[str, pulumi.Input[str]]] = field(default_factory=dict)
    tenant_adapters: Optional[TenantAdapterAccess] = None
    labels: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # What the controllers' pods need before their releases install: a node source (the
    # system node group). A release with `atomic` waits for its pods and rolls back when no
    # node exists to run them.
    node_ready: tuple[pulumi.Resource, ...] = ()


def validate_serving_foundation_args(args: ServingFoundationArgs) -> None:
    """Raises ArgsError naming every problem; pure (no resources)."""
    p: list[str] = []
    if not DNS_LABEL.match(args.namespace):
        p.append(f"namespace: got {args.namespace!r}; must be a DNS label")
    names = [c.name for c in args.charts]
    for i, c in enumerate(args.charts):
        p += chart_problems(f"charts[{i}]", c)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        p.append(f"charts: release names {dup} appear more than once; each release is installed once")
    for name, data in args.secrets.items():
        if not DNS_LABEL.match(name):
            p.append(f"secrets: got secret name {name!r}; must be a DNS label")
        if not data:
            p.append(f"secrets[{name}]: no keys; a Secret needs at least one key")
        for key in data:
            if not SECRET_KEY.match(key):
                p.append(f"secrets[{name}]: got key {key!r}; Secret keys use letters, digits and -._")
    t = args.tenant_adapters
    if t is not None:
        for what in ("service_account", "config_map"):
            if not DNS_LABEL.match(getattr(t, what)):
                p.append(f"tenant_adapters.{what}: got {getattr(t, what)!r}; must be a DNS label")
        missing = sorted({"bucket", "adapters.tsv"} - set(t.mapping))
        if missing:
            p.append(f"tenant_adapters.mapping: missing keys {missing}; the adapter sync step reads bucket and adapters.tsv")
    required_tags = {"project", "stack", "environment", "tier"}
    if t is not None and not required_tags <= set(args.tags):
        p.append(f"tags: got {sorted(args.tags)}; the Pod Identity association needs the cost tags "
                 f"{sorted(required_tags)}")
    if p:
        raise ArgsError("ServingFoundation", p)


class ServingFoundation(pulumi.ComponentResource):
    namespace: str
    namespace_resource: k8s.core.v1.Namespace
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: ServingFoundationArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_serving_foundation_args(args)
        super().__init__("llmserving:serving_foundation:ServingFoundation", name, {}, opts)
        labels = {**args.labels, "app.kubernetes.io/part-of": "llmserving"}
        ns = k8s.core.v1.Namespace(args.namespace, metadata={"name": args.namespace, "labels": labels},
                                   opts=pulumi.ResourceOptions(parent=self))
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        ready: list[pulumi.Resource] = [ns]

        self.releases = {c.name: helm_release(c.name, c, pulumi.ResourceOptions(parent=self,
                                                                                depends_on=list(args.node_ready)))
                         for c in args.charts}
        ready += list(self.releases.values())

        for secret_name, data in sorted(args.secrets.items()):
            ready.append(k8s.core.v1.Secret(
                secret_name, metadata={"name": secret_name, "namespace": args.namespace, "labels": labels},
                string_data={k: pulumi.Output.secret(v) for k, v in data.items()}, type="Opaque", opts=in_ns))

        t = args.tenant_adapters
        if t is not None:
            sa = k8s.core.v1.ServiceAccount(
                t.service_account, metadata={"name": t.service_account, "namespace": args.namespace, "labels": labels},
                automount_service_account_token=False, opts=in_ns)
            cm = k8s.core.v1.ConfigMap(
                t.config_map, metadata={"name": t.config_map, "namespace": args.namespace, "labels": labels},
                data=dict(t.mapping), opts=in_ns)
            # The adapter store's read-only role (tenants/ prefix, its KMS key only). EKS injects Pod
            # Identity credentials when it admits a pod, so the association is part of `ready`: it
            # exists before any pod of this service account (EKS user guide, "Pod Identity").
            self.adapter_reader = aws.eks.PodIdentityAssociation(
                f"{name}-adapter-reader", cluster_name=t.cluster_name, namespace=args.namespace,
                service_account=t.service_account, role_arn=t.reader_role_arn, tags=dict(args.tags),
                opts=pulumi.ResourceOptions(parent=self))
            ready += [sa, cm, self.adapter_reader]

        self.namespace = args.namespace
        self.namespace_resource = ns
        self.ready = ready
        self.register_outputs({"namespace": args.namespace, "releases": sorted(self.releases),
                               "secrets": sorted(args.secrets)})
