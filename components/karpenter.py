"""Karpenter controller with its IAM and interruption handling.

- controller role, assumed through EKS Pod Identity by the `karpenter`
  service account;
- node role with the worker-node policies and an `EC2_LINUX` access entry, so
  nodes Karpenter launches can join an API-authentication-mode cluster;
- interruption queue (SQS, SSE, TLS-only, 300 s retention) fed by the five
  EventBridge rules Karpenter handles, and the queue NAME passed to the chart
  as `settings.interruptionQueue` (do not also run the Node Termination
  Handler);
- the pinned controller chart (`helm.v3.Release` from the OCI registry), with
  the feature gates `nodeRepair` (ALPHA, off by default at v1.14.1: Karpenter
  replaces a node whose conditions, set by the EKS node monitoring agent, stay
  unhealthy, e.g. AcceleratedHardwareReady=False after a GPU XID) and
  `reservedCapacity` (BETA, on by default: ODCRs and Capacity Blocks as the
  `reserved` capacity type), set explicitly (chart values.yaml
  settings.featureGates at v1.14.1; EKS user guide node-repair.adoc).

Reservations: capacity-block expiry needs no event; Karpenter's
capacityreservation/expiration controller drains nodes of an expiring block
40 minutes before its end (v1.14.1 pkg/controllers/capacityreservation/
expiration/controller.go). The EventBridge rule for "EC2 Capacity Reservation
Instance Interruption Warning" (below) carries reclaims of interruptible
reservations, which the interruption controller parses (pkg/controllers/
interruption/messages/capacityreservationinterruption).

GPU NodePools and EC2NodeClasses are `KarpenterGpuPool` components
(components/karpenter_gpu_pool.py) that depend on `release`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.errors import ArgsError, out_of_range
from components.iam_trust import ec2_trust, pod_identity_trust

SERVICE_ACCOUNT = "karpenter"

# The events Karpenter's interruption controller acts on. Source: the
# getting-started CloudFormation template of the pinned release (vendored:
# infra/upstream/karpenter-v1.14.1-cloudformation.yaml, the five AWS::Events::Rule).
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
    # Upstream's controller policy documents (`!Sub` strings by logical id),
    # from the pinned release's cloudformation.yaml (infra/upstream).
    controller_policy_templates: Mapping[str, str] = field(default_factory=dict)
    partition: str = "aws"
    namespace: str = "kube-system"
    controller_replicas: int = 2
    # Seconds Helm waits for the controller to be ready (provider default: 300).
    helm_timeout_seconds: int = 600
    # What must exist before the controller's pods can schedule (the system node group).
    node_ready: tuple[pulumi.Resource, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    # Feature gates (chart settings.featureGates).
    node_repair: bool = True
    reserved_capacity: bool = True


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
    p += out_of_range("helm_timeout_seconds", args.helm_timeout_seconds, 60, 3600)
    if not args.account_id.isdigit() or len(args.account_id) != 12:
        p.append(f"account_id: got {args.account_id!r}; must be a 12-digit AWS account id")
    if not args.controller_policy_templates:
        p.append("controller_policy_templates: got none; pass upstream's policy documents for the chart's release "
                 "(infra/upstream: cloudformation.yaml of the pinned Karpenter version)")
    for key, template in args.controller_policy_templates.items():
        unknown = sorted(set(_SUB_VARIABLE.findall(template)) - set(POLICY_SUBSTITUTIONS))
        if unknown:
            p.append(f"controller_policy_templates[{key}]: references {unknown}; "
                     f"allowed: {', '.join(POLICY_SUBSTITUTIONS)}")
    if p:
        raise ArgsError("Karpenter", p)


def _doc(statements: list[dict]) -> dict:
    return {"Version": "2012-10-17", "Statement": statements}


# `${Name}` references of a CloudFormation `!Sub` string (`${!Literal}` is an escape, not a reference).
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")
# What upstream's policy documents may reference (the template's own parameters).
POLICY_SUBSTITUTIONS = ("AWS::Partition", "AWS::Region", "AWS::AccountId", "ClusterName",
                        "KarpenterNodeRole.Arn", "KarpenterInterruptionQueue.Arn")


def render_policy_template(template: str, values: Mapping[str, str]) -> dict:
    """A `!Sub` policy string with its `${...}` references replaced, as a policy document.

    Unknown references are an error: a new upstream release that references
    something else must be reviewed, not rendered with a literal `${...}`.
    """
    missing = sorted(set(_SUB_VARIABLE.findall(template)) - set(values))
    if missing:
        raise ValueError(f"policy template references {missing}; known: {sorted(values)}")
    return json.loads(_SUB_VARIABLE.sub(lambda m: values[m.group(1)], template))


def controller_policies(templates: Mapping[str, str], *, partition: str, region: str, account_id: str,
                        cluster_name: str, node_role_arn: str, queue_arn: str) -> dict[str, dict]:
    """Upstream's controller policy documents with only the substitutions upstream documents."""
    values = {"AWS::Partition": partition, "AWS::Region": region, "AWS::AccountId": account_id,
              "ClusterName": cluster_name, "KarpenterNodeRole.Arn": node_role_arn,
              "KarpenterInterruptionQueue.Arn": queue_arn}
    return {name: render_policy_template(t, values) for name, t in sorted(templates.items())}


def interruption_queue_policy(queue_arn: str, rule_arns: list[str]) -> dict:
    """Upstream's queue policy (cloudformation.yaml KarpenterInterruptionQueuePolicy), with the
    EventBridge statement limited to this stack's rules: EventBridge sends the rule ARN as
    aws:SourceArn (EventBridge user guide, "Amazon SQS permissions")."""
    return _doc([
        {"Sid": "EventBridgeRules", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arn,
         "Principal": {"Service": "events.amazonaws.com"},
         "Condition": {"ArnEquals": {"aws:SourceArn": sorted(rule_arns)}}},
        # Upstream also lets the SQS service principal send; no source keys are documented for it.
        {"Sid": "SqsService", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arn,
         "Principal": {"Service": "sqs.amazonaws.com"}},
        {"Sid": "DenyNonTLS", "Effect": "Deny", "Action": "sqs:*", "Resource": queue_arn, "Principal": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
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
        rules = []
        for key, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(f"{name}-{key}", name=f"{args.cluster_name}-karpenter-{key}",
                                            description=f"Karpenter interruption: {pattern['detail-type'][0]}",
                                            event_pattern=json.dumps(pattern), tags=args.tags, opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{key}", rule=rule.name, target_id="karpenter-interruption-queue",
                                       arn=queue.arn, opts=child)
            rules.append(rule)
        aws.sqs.QueuePolicy(f"{name}-interruption", queue_url=queue.url, policy=pulumi.Output.all(
            queue.arn, *[r.arn for r in rules]).apply(
            lambda a: json.dumps(interruption_queue_policy(a[0], list(a[1:])))), opts=child)

        # --- node role and its access entry ---------------------------------
        node_role = aws.iam.Role(f"{name}-node", name=f"{args.cluster_name}-karpenter-node",
                                 assume_role_policy=json.dumps(ec2_trust()),
                                 tags=args.tags, opts=child)
        for arn in args.node_policy_arns:
            aws.iam.RolePolicyAttachment(f"{name}-node-{arn.rsplit('/', 1)[-1]}", role=node_role.name, policy_arn=arn,
                                         opts=child)
        aws.eks.AccessEntry(f"{name}-node", cluster_name=args.cluster_name, principal_arn=node_role.arn,
                            type="EC2_LINUX", tags=args.tags, opts=child)

        # --- controller role through Pod Identity ----------------------------
        cluster_arn = f"arn:{args.partition}:eks:{args.region}:{args.account_id}:cluster/{args.cluster_name}"
        controller_role = aws.iam.Role(
            f"{name}-controller", name=f"{args.cluster_name}-karpenter-controller",
            assume_role_policy=json.dumps(pod_identity_trust(cluster_arn, args.namespace, SERVICE_ACCOUNT)),
            tags=args.tags, opts=child)
        # One inline policy per upstream managed policy document, named after it,
        # so a release bump shows up as a diff of the documents upstream changed.
        policies = pulumi.Output.all(node_role.arn, queue.arn).apply(lambda a: controller_policies(
            args.controller_policy_templates, partition=args.partition, region=args.region,
            account_id=args.account_id, cluster_name=args.cluster_name, node_role_arn=a[0], queue_arn=a[1]))
        controller_policy_resources = [
            aws.iam.RolePolicy(f"{name}-controller-{key}", name=key, role=controller_role.id,
                               policy=policies.apply(lambda d, k=key: json.dumps(d[k])), opts=child)
            for key in sorted(args.controller_policy_templates)]
        association = aws.eks.PodIdentityAssociation(
            f"{name}-controller", cluster_name=args.cluster_name, namespace=args.namespace,
            service_account=SERVICE_ACCOUNT, role_arn=controller_role.arn, tags=args.tags, opts=child)

        self.release = k8s.helm.v3.Release(
            f"{name}-controller", name="karpenter", chart=args.chart, version=args.chart_version,
            namespace=args.namespace, atomic=True, cleanup_on_fail=True, max_history=5,
            timeout=args.helm_timeout_seconds,
            values={
                "replicas": args.controller_replicas,
                "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
                "settings": {"clusterName": args.cluster_name, "interruptionQueue": queue.name,
                             "featureGates": {"nodeRepair": args.node_repair,
                                              "reservedCapacity": args.reserved_capacity}},
                # Nodes answer IMDS only one hop away (hop limit 1), so the controller
                # cannot ask IMDS for its region; without AWS_REGION it exits at start
                # (aws/karpenter-provider-aws v1.14.1 pkg/operator/operator.go: region from
                # the SDK config, else IMDS; chart values.yaml `controller.env`).
                "controller": {"env": [{"name": "AWS_REGION", "value": args.region}]},
                # The controller must not run on the GPU nodes it manages.
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"},
                                          {"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}]}]}}},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[association, *controller_policy_resources,
                                                                 *args.node_ready]))

        self.node_role_name = node_role.name
        self.node_role_arn = node_role.arn
        self.queue_name = queue.name
        self.register_outputs({"queueName": queue.name, "nodeRoleArn": node_role.arn,
                               "controllerRoleArn": controller_role.arn})
