"""Karpenter controller with its IAM and interruption handling.

- controller role, assumed through EKS Pod Identity by the `karpenter`
  service account;
- node role with the worker-node policies and an `EC2_LINUX` access entry, so
  nodes Karpenter launches can join an API-authentication-mode cluster;
- interruption queue (SQS, SSE, TLS-only, 300 s retention) fed by the five
  EventBridge rules Karpenter handles, and the queue NAME passed to the chart
  as `settings.interruptionQueue` (do not also run the Node Termination
  Handler);
- the pinned controller chart (`helm.v3.Release` from the OCI registry).

GPU NodePools and EC2NodeClasses are `KarpenterGpuPool` components
(components/karpenter_gpu_pool.py) that depend on `release`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.errors import ArgsError, out_of_range

SERVICE_ACCOUNT = "karpenter"

# The events Karpenter's interruption controller acts on. Source: Karpenter
# docs, "Interruption" and the getting-started CloudFormation template
# (karpenter.sh, v1.8, taken 2025-10).
INTERRUPTION_EVENTS: dict[str, dict] = {
    "health": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "capacity-reservation": {"source": ["aws.ec2"],
                             "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"]},
}
QUEUE_RETENTION_SECONDS = 300  # Karpenter docs: messages older than 5 minutes are stale


@dataclass(frozen=True)
class KarpenterArgs:
    cluster_name: str
    chart: str
    chart_version: str
    node_policy_arns: list[str]
    region: str
    account_id: str
    namespace: str = "kube-system"
    controller_replicas: int = 2
    tags: dict[str, str] = field(default_factory=dict)


def validate_karpenter_args(args: KarpenterArgs) -> None:
    p: list[str] = []
    if not args.cluster_name:
        p.append("cluster_name: got ''; name the cluster Karpenter manages")
    if not args.chart.startswith("oci://"):
        p.append(f"chart: got {args.chart!r}; the Karpenter chart is published at oci://public.ecr.aws/karpenter/karpenter")
    v = args.chart_version
    if not v or not v[0].isdigit() or any(c in v for c in "^~><*"):
        p.append(f"chart_version: got {v!r}; pin an exact Karpenter v1 chart version such as 1.8.1")
    elif not v.startswith("1."):
        p.append(f"chart_version: got {v!r}; this component manages Karpenter v1 (karpenter.sh/v1 APIs)")
    if not args.node_policy_arns:
        p.append("node_policy_arns: got []; nodes need the EKS worker-node policies")
    p += out_of_range("controller_replicas", args.controller_replicas, 1, 5)
    if not args.account_id.isdigit() or len(args.account_id) != 12:
        p.append(f"account_id: got {args.account_id!r}; must be a 12-digit AWS account id")
    if p:
        raise ArgsError("Karpenter", p)


def _doc(statements: list[dict]) -> dict:
    return {"Version": "2012-10-17", "Statement": statements}


def controller_policy(cluster_name: str, region: str, account_id: str, node_role_arn: str,
                      queue_arn: str) -> dict:
    """What the controller may do: launch and end its own instances, manage
    instance profiles for the node role, read pricing and SSM AMI parameters,
    consume the interruption queue."""
    tagged = {"StringEquals": {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"}}
    request_tagged = {"StringEquals": {f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned"}}
    return _doc([
        {"Sid": "Read", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:DescribeAvailabilityZones", "ec2:DescribeImages", "ec2:DescribeInstances",
            "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates",
            "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets",
            "ec2:DescribeCapacityReservations", "pricing:GetProducts"]},
        {"Sid": "SSMAmiParameters", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": f"arn:aws:ssm:{region}::parameter/aws/service/*"},
        {"Sid": "LaunchShared", "Effect": "Allow", "Action": ["ec2:RunInstances", "ec2:CreateFleet"], "Resource": [
            f"arn:aws:ec2:{region}::image/*", f"arn:aws:ec2:{region}::snapshot/*",
            f"arn:aws:ec2:{region}:*:security-group/*", f"arn:aws:ec2:{region}:*:subnet/*",
            f"arn:aws:ec2:{region}:*:capacity-reservation/*"]},
        {"Sid": "LaunchOwned", "Effect": "Allow", "Condition": request_tagged,
         "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"], "Resource": [
             f"arn:aws:ec2:{region}:*:fleet/*", f"arn:aws:ec2:{region}:*:instance/*",
             f"arn:aws:ec2:{region}:*:volume/*", f"arn:aws:ec2:{region}:*:network-interface/*",
             f"arn:aws:ec2:{region}:*:launch-template/*", f"arn:aws:ec2:{region}:*:spot-instances-request/*"]},
        {"Sid": "TagOnCreate", "Effect": "Allow", "Action": "ec2:CreateTags", "Condition": {
            **request_tagged, "StringEqualsIfExists": {"ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]}},
         "Resource": [f"arn:aws:ec2:{region}:*:{r}/*" for r in
                      ("fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request")]},
        {"Sid": "ManageOwned", "Effect": "Allow", "Condition": tagged,
         "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate", "ec2:CreateTags"], "Resource": [
             f"arn:aws:ec2:{region}:*:instance/*", f"arn:aws:ec2:{region}:*:launch-template/*"]},
        {"Sid": "PassNodeRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": node_role_arn,
         "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com"]}}},
        {"Sid": "InstanceProfiles", "Effect": "Allow", "Resource": f"arn:aws:iam::{account_id}:instance-profile/*",
         "Action": ["iam:CreateInstanceProfile", "iam:TagInstanceProfile", "iam:AddRoleToInstanceProfile",
                    "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile", "iam:GetInstanceProfile",
                    "iam:ListInstanceProfiles"]},
        {"Sid": "Cluster", "Effect": "Allow", "Action": "eks:DescribeCluster",
         "Resource": f"arn:aws:eks:{region}:{account_id}:cluster/{cluster_name}"},
        {"Sid": "InterruptionQueue", "Effect": "Allow", "Resource": queue_arn,
         "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]},
    ])


class Karpenter(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    node_role_name: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    queue_name: pulumi.Output[str]

    def __init__(self, name: str, args: KarpenterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_karpenter_args(args)
        super().__init__("llmserving:eks:Karpenter", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)

        # --- interruption queue and the five rules ---------------------------
        queue = aws.sqs.Queue(f"{name}-interruption", name=f"{args.cluster_name}-karpenter",
                              message_retention_seconds=QUEUE_RETENTION_SECONDS, sqs_managed_sse_enabled=True,
                              tags=args.tags, opts=child)
        aws.sqs.QueuePolicy(f"{name}-interruption", queue_url=queue.url, policy=queue.arn.apply(lambda arn: json.dumps(_doc([
            {"Sid": "EventBridgeAndSqs", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": arn,
             "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]}},
            {"Sid": "DenyNonTLS", "Effect": "Deny", "Action": "sqs:*", "Resource": arn, "Principal": "*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ]))), opts=child)
        for key, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(f"{name}-{key}", name=f"{args.cluster_name}-karpenter-{key}",
                                            description=f"Karpenter interruption: {pattern['detail-type'][0]}",
                                            event_pattern=json.dumps(pattern), tags=args.tags, opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{key}", rule=rule.name, target_id="karpenter-interruption-queue",
                                       arn=queue.arn, opts=child)

        # --- node role and its access entry ---------------------------------
        node_role = aws.iam.Role(f"{name}-node", name=f"{args.cluster_name}-karpenter-node",
                                 assume_role_policy=json.dumps(_doc([{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                      "Principal": {"Service": "ec2.amazonaws.com"}}])),
                                 tags=args.tags, opts=child)
        for arn in args.node_policy_arns:
            aws.iam.RolePolicyAttachment(f"{name}-node-{arn.rsplit('/', 1)[-1]}", role=node_role.name, policy_arn=arn,
                                         opts=child)
        aws.eks.AccessEntry(f"{name}-node", cluster_name=args.cluster_name, principal_arn=node_role.arn,
                            type="EC2_LINUX", tags=args.tags, opts=child)

        # --- controller role through Pod Identity ----------------------------
        controller_role = aws.iam.Role(
            f"{name}-controller", name=f"{args.cluster_name}-karpenter-controller",
            assume_role_policy=json.dumps(_doc([{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
                                                 "Principal": {"Service": "pods.eks.amazonaws.com"}}])),
            tags=args.tags, opts=child)
        aws.iam.RolePolicy(f"{name}-controller", role=controller_role.id,
                           policy=pulumi.Output.all(node_role.arn, queue.arn).apply(lambda a: json.dumps(
                               controller_policy(args.cluster_name, args.region, args.account_id, a[0], a[1]))),
                           opts=child)
        association = aws.eks.PodIdentityAssociation(
            f"{name}-controller", cluster_name=args.cluster_name, namespace=args.namespace,
            service_account=SERVICE_ACCOUNT, role_arn=controller_role.arn, tags=args.tags, opts=child)

        self.release = k8s.helm.v3.Release(
            f"{name}-controller", name="karpenter", chart=args.chart, version=args.chart_version,
            namespace=args.namespace, atomic=True, cleanup_on_fail=True, max_history=5,
            values={
                "replicas": args.controller_replicas,
                "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
                "settings": {"clusterName": args.cluster_name, "interruptionQueue": queue.name},
                # The controller must not run on the GPU nodes it manages.
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"},
                                          {"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}]}]}}},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[association]))

        self.node_role_name = node_role.name
        self.node_role_arn = node_role.arn
        self.queue_name = queue.name
        self.register_outputs({"queueName": queue.name, "nodeRoleArn": node_role.arn,
                               "controllerRoleArn": controller_role.arn})
