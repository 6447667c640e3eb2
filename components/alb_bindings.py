"""EKS side of the ALB: the AWS Load Balancer Controller and one TargetGroupBinding per model.

The ALB, its listeners and target groups belong to Pulumi
(components/load_balancer.py), so a preview shows them and policies judge
them; the controller only keeps each target group's targets equal to the
ready pod IPs behind a Kubernetes Service (TargetGroupBinding, target type
ip) and opens the pods' security group to the ALB's. The controller runs
from a pinned Helm chart and gets AWS credentials through EKS Pod Identity.
Its IAM policy is the one upstream publishes for the chart's release
(`docs/install/iam_policy.json`, vendored in infra/upstream), passed in as
`controller_policy`: upstream does not document which calls each controller
feature makes, so a hand-narrowed policy fails silently when a release starts
calling something new (e.g. v3.x's subnet resolver reads route tables).

The Kubernetes provider comes from the EKS platform (infra/eks_platform.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.errors import ArgsError
from components.iam_trust import pod_identity_trust

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
CONTROLLER_NAMESPACE = "kube-system"
CONTROLLER_SERVICE_ACCOUNT = "aws-load-balancer-controller"


@dataclass(frozen=True)
class ServiceTarget:
    target_group_arn: pulumi.Input[str]
    service_name: str
    port: int = 8000


@dataclass(frozen=True)
class AlbBindingsArgs:
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    region: str
    account_id: str
    k8s_provider: k8s.Provider
    namespace: str
    # model -> where its target group's targets come from
    targets: Mapping[str, ServiceTarget]
    alb_security_group_id: pulumi.Input[str]
    chart: str = "aws-load-balancer-controller"
    chart_version: str = "3.5.0"
    chart_repo: str = "https://aws.github.io/eks-charts"
    # Upstream's IAM policy for the chart's release (required).
    controller_policy: Optional[Mapping[str, Any]] = None
    partition: str = "aws"
    # Seconds Helm waits for the controller to be ready (provider default: 300).
    helm_timeout_seconds: int = 600
    # What must exist before the controller's pods can schedule (the system node group).
    node_ready: Sequence[pulumi.Resource] = ()
    # What every TargetGroupBinding waits for (the serving namespace, the Services it names).
    depends_on: Sequence[pulumi.Resource] = ()
    tags: dict[str, str] = field(default_factory=dict)


def validate_alb_bindings_args(args: AlbBindingsArgs) -> None:
    problems = []
    if not isinstance(args.k8s_provider, k8s.Provider):
        problems.append(f"k8s_provider: got {type(args.k8s_provider).__name__}; pass the EKS cluster's kubernetes.Provider")
    if not DNS_LABEL.match(args.namespace):
        problems.append(f"namespace: got {args.namespace!r}; must be a DNS label")
    if not args.targets:
        problems.append("targets: got none; bind at least one model's target group")
    for model, t in args.targets.items():
        if not DNS_LABEL.match(model):
            problems.append(f"targets: model {model!r} is not a DNS label (it names the TargetGroupBinding)")
        if not DNS_LABEL.match(t.service_name):
            problems.append(f"targets[{model}].service_name: got {t.service_name!r}; must be a Service name")
        if not 1 <= t.port <= 65535:
            problems.append(f"targets[{model}].port: got {t.port}; allowed 1-65535")
    if not SEMVER.match(args.chart_version):
        problems.append(f"chart_version: got {args.chart_version!r}; pin an exact chart version such as 3.5.0")
    if not re.match(r"^\d{12}$", args.account_id):
        problems.append(f"account_id: got {args.account_id!r}; must be a 12-digit account id")
    if not 60 <= args.helm_timeout_seconds <= 3600:
        problems.append(f"helm_timeout_seconds: got {args.helm_timeout_seconds}; allowed 60-3600")
    if not args.controller_policy or not args.controller_policy.get("Statement"):
        problems.append("controller_policy: got none; pass upstream's iam_policy.json of the chart's release "
                        "(infra/upstream)")
    if problems:
        raise ArgsError("AlbBindings", problems)


def target_group_binding(model: str, namespace: str, target: ServiceTarget, target_group_arn: str,
                         alb_security_group_id: str) -> dict[str, Any]:
    """The TargetGroupBinding object (elbv2.k8s.aws/v1beta1) for one model, as plain data."""
    return {
        "apiVersion": "elbv2.k8s.aws/v1beta1",
        "kind": "TargetGroupBinding",
        "metadata": {"name": model, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "pulumi", "llmserving.io/model": model}},
        "spec": {
            "serviceRef": {"name": target.service_name, "port": target.port},
            "targetGroupARN": target_group_arn,
            "targetType": "ip",
            "networking": {"ingress": [{
                "from": [{"securityGroup": {"groupID": alb_security_group_id}}],
                "ports": [{"port": target.port, "protocol": "TCP"}],
            }]},
        },
    }


class AlbBindings(pulumi.ComponentResource):
    def __init__(self, name: str, args: AlbBindingsArgs, opts: pulumi.ResourceOptions | None = None):
        validate_alb_bindings_args(args)
        super().__init__("llmserving:alb_bindings:AlbBindings", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        role = aws.iam.Role(f"{name}-controller", name=f"{name}-controller"[:64],
                            description="AWS Load Balancer Controller (TargetGroupBinding only)",
                            assume_role_policy=pulumi.Output.from_input(args.cluster_name).apply(
                                lambda cluster: json.dumps(pod_identity_trust(
                                    f"arn:{args.partition}:eks:{args.region}:{args.account_id}:cluster/{cluster}",
                                    CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT), sort_keys=True)),
                            tags=tags, opts=child)
        models = sorted(args.targets)
        policy = aws.iam.RolePolicy(f"{name}-controller", role=role.id,
                                    policy=json.dumps(args.controller_policy, sort_keys=True), opts=child)
        identity = aws.eks.PodIdentityAssociation(
            f"{name}-controller", cluster_name=args.cluster_name, namespace=CONTROLLER_NAMESPACE,
            service_account=CONTROLLER_SERVICE_ACCOUNT, role_arn=role.arn, tags=tags, opts=child)

        release = k8s.helm.v3.Release(
            f"{name}-controller", name="aws-load-balancer-controller", chart=args.chart, version=args.chart_version,
            repository_opts={"repo": args.chart_repo}, namespace=CONTROLLER_NAMESPACE,
            atomic=True, cleanup_on_fail=True, max_history=5, timeout=args.helm_timeout_seconds,
            # region and vpcId explicitly: the controller would otherwise read them from IMDS,
            # which pods cannot reach with hop limit 1 (chart 3.5.0 values.yaml: "Set this
            # manually when your pods are unable to use the metadata service").
            values={"clusterName": args.cluster_name, "region": args.region, "vpcId": args.vpc_id,
                    "replicaCount": 2,
                    "serviceAccount": {"create": True, "name": CONTROLLER_SERVICE_ACCOUNT},
                    # Pulumi owns the ALB; the controller only binds targets.
                    "createIngressClassResource": False, "enableServiceMutatorWebhook": False},
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                        depends_on=[identity, policy, *args.node_ready]))

        self.bindings: dict[str, k8s.apiextensions.CustomResource] = {}
        for model in models:
            t = args.targets[model]
            obj = pulumi.Output.all(t.target_group_arn, args.alb_security_group_id).apply(
                lambda v, m=model, tt=t: target_group_binding(m, args.namespace, tt, v[0], v[1]))
            self.bindings[model] = k8s.apiextensions.CustomResource(
                f"{name}-{model}", api_version="elbv2.k8s.aws/v1beta1", kind="TargetGroupBinding",
                metadata={"name": model, "namespace": args.namespace,
                          "labels": {"app.kubernetes.io/managed-by": "pulumi", "llmserving.io/model": model}},
                spec=obj.apply(lambda o: o["spec"]),
                # The controller's webhook and CRD come with the release; the namespace
                # and the Service the binding names must exist first.
                opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                            depends_on=[release, *args.depends_on]))

        self.controller_role_arn = role.arn
        self.register_outputs({"controllerRoleArn": self.controller_role_arn,
                               "bindings": {m: b.metadata for m, b in self.bindings.items()}})
