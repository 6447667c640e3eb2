"""Cluster Autoscaler for the EKS managed GPU node groups.

EKS does not scale a managed node group and Karpenter does not touch one, so
without this a node group stays at the size the program gave it while KEDA
adds replicas that stay Pending. The Cluster Autoscaler (kubernetes/autoscaler,
AWS provider) raises and lowers the desired size of every Auto Scaling group it
discovers, within the group's min and max.

- Discovery: `--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,
  k8s.io/cluster-autoscaler/<cluster>` (chart value `autoDiscovery.clusterName`).
  EKS puts both tags on the Auto Scaling group of every managed node group
  (awsdocs/amazon-eks-user-guide latest/ug/nodes/managed-node-groups.adoc), so
  nothing else is needed for the groups to be found. Karpenter's nodes belong
  to no Auto Scaling group and are never touched.
- Credentials: EKS Pod Identity for the `cluster-autoscaler` service account;
  the role carries upstream's "full features" policy (vendored,
  infra/upstream) with its write statement narrowed to groups tagged for this
  cluster, as upstream's README recommends.
- Region: nodes answer IMDS one hop away only (hop limit 1), so the chart's
  `awsRegion` sets AWS_REGION (chart templates/deployment.yaml).
- Runs on the system nodes, never on the GPU nodes it scales.

Managed node groups must not fight it: their `scalingConfig.desiredSize` is
ignored after creation (components/gpu_node_group.py), or every `pulumi up`
would reset what the autoscaler chose.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.errors import ArgsError, out_of_range
from components.iam_trust import pod_identity_trust

SERVICE_ACCOUNT = "cluster-autoscaler"
# The tag keys EKS sets on a managed node group's Auto Scaling group, which auto-discovery matches.
DISCOVERY_TAGS = ("k8s.io/cluster-autoscaler/enabled", "k8s.io/cluster-autoscaler/{cluster}")
# The write actions upstream's policy grants on every group ("Resource": "*").
WRITE_ACTIONS = frozenset({"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"})
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class ClusterAutoscalerArgs:
    cluster_name: str
    kubernetes_version: str
    region: str
    account_id: str
    chart: str
    chart_version: str
    repository: str
    image_tag: str
    # Upstream's policy document (infra/upstream.cluster_autoscaler_policy()).
    policy: dict
    # Flags as `--key=value` (chart value extraArgs).
    extra_args: dict[str, str] = field(default_factory=dict)
    partition: str = "aws"
    namespace: str = "kube-system"
    # Where the controller runs (the system nodes' label).
    node_selector: dict[str, str] = field(default_factory=dict)
    helm_timeout_seconds: int = 600
    # What must exist before its pod can schedule (the system node group).
    node_ready: tuple[pulumi.Resource, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


def validate_cluster_autoscaler_args(args: ClusterAutoscalerArgs) -> None:
    p: list[str] = []
    if not args.cluster_name:
        p.append("cluster_name: got ''; name the cluster whose node groups it scales")
    if not EXACT_VERSION.match(args.chart_version):
        p.append(f"chart_version: got {args.chart_version!r}; pin an exact chart version such as 9.51.0")
    m = re.match(r"^v(\d+)\.(\d+)\.\d+$", args.image_tag)
    if not m:
        p.append(f"image_tag: got {args.image_tag!r}; pin an exact image tag such as v1.33.6")
    elif f"{m.group(1)}.{m.group(2)}" != args.kubernetes_version:
        # kubernetes/autoscaler README: run the autoscaler minor version that matches the cluster's.
        p.append(f"image_tag: got {args.image_tag!r}; the Cluster Autoscaler's minor version must match the "
                 f"cluster's Kubernetes version {args.kubernetes_version}")
    if not (args.account_id.isdigit() and len(args.account_id) == 12):
        p.append(f"account_id: got {args.account_id!r}; must be a 12-digit AWS account id")
    if not args.repository.startswith("https://"):
        p.append(f"repository: got {args.repository!r}; the chart repository URL (https://kubernetes.github.io/autoscaler)")
    statements = args.policy.get("Statement") if isinstance(args.policy, dict) else None
    if not statements or not any(WRITE_ACTIONS & set(_actions(s)) for s in statements):
        p.append("policy: got no statement granting autoscaling:SetDesiredCapacity; pass upstream's policy "
                 "(infra/upstream: cluster-autoscaler-<version>-iam-policy.json)")
    for key in args.extra_args:
        if not re.match(r"^[a-z0-9-]+$", key):
            p.append(f"extra_args: got {key!r}; a flag name such as scale-down-unneeded-time")
    p += out_of_range("helm_timeout_seconds", args.helm_timeout_seconds, 60, 3600)
    if p:
        raise ArgsError("ClusterAutoscaler", p)


def _actions(statement: dict) -> list[str]:
    a = statement.get("Action", [])
    return [a] if isinstance(a, str) else list(a)


def scoped_policy(policy: dict, cluster_name: str) -> dict:
    """Upstream's policy with the write statement limited to Auto Scaling groups that carry this
    cluster's discovery tag (a `Null` check: the key must be present, whatever its value; a group of
    another cluster, or one without the tag, is refused). Autoscaling's SetDesiredCapacity and
    TerminateInstanceInAutoScalingGroup accept aws:ResourceTag/<key> (Service Authorization Reference,
    Amazon EC2 Auto Scaling, autoScalingGroup resource)."""
    out = copy.deepcopy(policy)
    tag = DISCOVERY_TAGS[1].format(cluster=cluster_name)
    for s in out["Statement"]:
        if set(_actions(s)) <= WRITE_ACTIONS:
            s.setdefault("Condition", {}).setdefault("Null", {})[f"aws:ResourceTag/{tag}"] = "false"
    return out


def chart_values(args: ClusterAutoscalerArgs) -> dict:
    return {
        "cloudProvider": "aws",
        "awsRegion": args.region,
        "autoDiscovery": {"clusterName": args.cluster_name},
        "image": {"tag": args.image_tag},
        "rbac": {"serviceAccount": {"create": True, "name": SERVICE_ACCOUNT}},
        "extraArgs": dict(sorted(args.extra_args.items())),
        "nodeSelector": dict(args.node_selector),
        "replicaCount": 1,
    }


class ClusterAutoscaler(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ClusterAutoscalerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_cluster_autoscaler_args(args)
        super().__init__("llmserving:eks:ClusterAutoscaler", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster_arn = f"arn:{args.partition}:eks:{args.region}:{args.account_id}:cluster/{args.cluster_name}"
        role = aws.iam.Role(
            f"{name}-role", name=f"{args.cluster_name}-cluster-autoscaler"[:64],
            assume_role_policy=json.dumps(pod_identity_trust(cluster_arn, args.namespace, SERVICE_ACCOUNT)),
            tags=args.tags, opts=child)
        policy = aws.iam.RolePolicy(f"{name}-policy", name="cluster-autoscaler", role=role.id,
                                    policy=json.dumps(scoped_policy(args.policy, args.cluster_name), sort_keys=True),
                                    opts=child)
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity", cluster_name=args.cluster_name, namespace=args.namespace,
            service_account=SERVICE_ACCOUNT, role_arn=role.arn, tags=args.tags, opts=child)
        # The pod must start after the association (else it runs without credentials until restarted).
        self.release = k8s.helm.v3.Release(
            f"{name}-release", name="cluster-autoscaler", chart=args.chart, version=args.chart_version,
            namespace=args.namespace, repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=args.repository),
            values=chart_values(args), atomic=True, cleanup_on_fail=True, max_history=5,
            timeout=args.helm_timeout_seconds,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[association, policy, *args.node_ready]))
        self.role_arn = role.arn
        self.register_outputs({"roleArn": role.arn, "release": self.release.name})
