"""Controller IAM built from upstream's published policies, and evaluated the way AWS evaluates it.

- The vendored files (infra/upstream) are byte-identical to the pinned releases (sha256).
- The Karpenter controller's policies in a shipped stack are upstream's v1.14.1
  documents with only the substitutions upstream's template makes (`!Sub`
  parameters); the AWS Load Balancer Controller's policy is v3.5.0's
  iam_policy.json unchanged.
- Karpenter's launch (ec2:CreateFleet / ec2:RunInstances over the launch
  template, fleet, instance, volume, network interface, subnet, security group
  and image) is evaluated with the request context AWS sends per resource type
  (tests/iam_eval/simulate.mjs): allowed with upstream's policy, denied with
  the previous hand-written `aws:RequestTag` launch-template statement.
"""

from __future__ import annotations

import json

import pytest

from components.karpenter import Karpenter, KarpenterArgs, render_policy_template
from infra import upstream
from tests.harness import inputs, of_type, one, run_component, shipped_preview
from tests.iam_sim import ACCOUNT, Request, evaluate, evaluate_detailed

REGION = "us-east-1"
CLUSTER = "llmserving-test"
TAGS = {"project": "llmserving", "stack": "test"}
NODE_POLICIES = ["arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"]


def _karpenter_run():
    return run_component(lambda: Karpenter("k", KarpenterArgs(
        cluster_name=CLUSTER, chart="oci://public.ecr.aws/karpenter/karpenter", chart_version="1.14.1",
        node_policy_arns=NODE_POLICIES, region=REGION, account_id=ACCOUNT,
        controller_policy_templates=upstream.karpenter_controller_policy_templates(), tags=TAGS)))


@pytest.fixture(scope="module")
def karpenter_run():
    return _karpenter_run()


def _controller_policies(run) -> dict[str, dict]:
    return {inputs(r)["name"]: json.loads(inputs(r)["policy"]) for r in of_type(run, "aws:iam/rolePolicy:RolePolicy")
            if r.name.startswith("k-controller")}


def _expected_karpenter(node_role_arn: str, queue_arn: str, cluster: str = CLUSTER) -> dict[str, dict]:
    values = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "ClusterName": cluster,
              "KarpenterNodeRole.Arn": node_role_arn, "KarpenterInterruptionQueue.Arn": queue_arn}
    return {k: render_policy_template(t, values) for k, t in upstream.karpenter_controller_policy_templates().items()}


# --- the vendored files -----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(upstream.sources()))
def test_vendored_file_is_the_pinned_release(name):
    src = upstream.sources()[name]
    assert upstream.sha256(name) == src["sha256"], f"{name} was edited; vendored files stay byte-identical to {src['repo']}@{src['tag']}"
    assert src["tag"] in name


def test_upstream_template_references_only_its_own_parameters():
    templates = upstream.karpenter_controller_policy_templates()
    assert sorted(templates) == ["EKSIntegrationPolicy", "IAMIntegrationPolicy", "InterruptionPolicy",
                                 "NodeLifecyclePolicy", "ResourceDiscoveryPolicy", "ZonalShiftPolicy"]
    used = set().union(*(upstream.sub_variables(t) for t in templates.values()))
    assert used == set(upstream.KARPENTER_SUBSTITUTIONS)


# --- rendered policies vs upstream --------------------------------------------------------

def test_karpenter_controller_policy_is_upstreams_with_documented_substitutions(karpenter_run):
    node_role = inputs(one(karpenter_run, "aws:iam/role:Role", "k-node"))["name"]
    queue = inputs(one(karpenter_run, "aws:sqs/queue:Queue"))["name"]
    expected = _expected_karpenter(f"arn:aws:iam::{ACCOUNT}:role/{node_role}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}")
    assert _controller_policies(karpenter_run) == expected
    # v1.14.1 statements the hand-written policy lacked (issue 10 item 6).
    reads = next(s for s in expected["ResourceDiscoveryPolicy"]["Statement"] if s["Sid"] == "AllowRegionalReadActions")
    assert {"ec2:DescribeInstanceStatus", "ec2:DescribePlacementGroups"} <= set(reads["Action"])


def test_karpenter_inline_policies_fit_the_role_quota():
    # IAM: inline policies of one role total at most 10,240 characters (whitespace not counted).
    long_name = "c" * 100
    docs = _expected_karpenter(f"arn:aws:iam::{ACCOUNT}:role/{long_name}-karpenter-node",
                               f"arn:aws:sqs:{REGION}:{ACCOUNT}:{long_name}-karpenter", cluster=long_name)
    assert sum(len(json.dumps(d, separators=(",", ":"))) for d in docs.values()) < 10_240


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_stack_uses_upstream_controller_policies(stack):
    doc = shipped_preview(stack)
    res = doc["resources"]
    cluster = f"llmserving-{stack}"
    node_role = next(r["inputs"]["name"] for r in res if r["type"] == "aws:iam/role:Role"
                     and r["inputs"]["name"] == f"{cluster}-karpenter-node")
    queue = next(r["inputs"]["name"] for r in res if r["type"] == "aws:sqs/queue:Queue"
                 and r["inputs"]["name"] == f"{cluster}-karpenter")
    karpenter = {r["inputs"]["name"]: json.loads(r["inputs"]["policy"]) for r in res
                 if r["type"] == "aws:iam/rolePolicy:RolePolicy" and "-karpenter-controller-" in r["name"]}
    assert karpenter == _expected_karpenter(f"arn:aws:iam::{ACCOUNT}:role/{node_role}",
                                            f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}", cluster=cluster)
    lbc = [json.loads(r["inputs"]["policy"]) for r in res
           if r["type"] == "aws:iam/rolePolicy:RolePolicy" and r["name"].endswith("-alb-bindings-controller")]
    assert lbc == [upstream.alb_controller_policy()]


def test_alb_policy_partition_is_the_only_substitution():
    gov = upstream.alb_controller_policy("aws-us-gov")
    assert json.dumps(gov).replace("arn:aws-us-gov:", "arn:aws:") == json.dumps(upstream.alb_controller_policy())


# --- evaluation with the request context AWS sends -----------------------------------------

NODEPOOL = "g5-spot"
# Tags Karpenter v1.14.1 puts on everything it launches: the EC2NodeClass tags
# plus its static tags (aws/karpenter-provider-aws v1.14.1 pkg/utils/utils.go GetTags).
LAUNCH_TAGS = {**TAGS, f"kubernetes.io/cluster/{CLUSTER}": "owned", "karpenter.sh/nodepool": NODEPOOL,
               "eks:eks-cluster-name": CLUSTER, "karpenter.k8s.aws/ec2nodeclass": NODEPOOL}
ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
# Resources one CreateFleet (type instant) touches; AWS authorizes the call per resource.
LAUNCH_RESOURCES = {
    "launch-template": (f"{ARN}:launch-template/lt-0123456789abcdef0", LAUNCH_TAGS),  # created by Karpenter, tagged
    "fleet": (f"{ARN}:fleet/fleet-0123456789abcdef0", {}),
    "instance": (f"{ARN}:instance/i-0123456789abcdef0", {}),
    "volume": (f"{ARN}:volume/vol-0123456789abcdef0", {}),
    "network-interface": (f"{ARN}:network-interface/eni-0123456789abcdef0", {}),
    "subnet": (f"{ARN}:subnet/subnet-0123456789abcdef0", {"karpenter.sh/discovery": CLUSTER}),
    "security-group": (f"{ARN}:security-group/sg-0123456789abcdef0", {"karpenter.sh/discovery": CLUSTER}),
    "image": (f"arn:aws:ec2:{REGION}::image/ami-0123456789abcdef0", {}),
}
PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/{CLUSTER}-karpenter-controller/eks-pod-identity"

# The controller's launch statement before this change (components/karpenter.py at
# the merge of 'polhard'): the launch template only under aws:RequestTag.
OLD_LAUNCH_STATEMENTS = {"Version": "2012-10-17", "Statement": [
    {"Sid": "LaunchShared", "Effect": "Allow", "Action": ["ec2:RunInstances", "ec2:CreateFleet"], "Resource": [
        f"arn:aws:ec2:{REGION}::image/*", f"arn:aws:ec2:{REGION}::snapshot/*",
        f"arn:aws:ec2:{REGION}:*:security-group/*", f"arn:aws:ec2:{REGION}:*:subnet/*",
        f"arn:aws:ec2:{REGION}:*:capacity-reservation/*"]},
    {"Sid": "LaunchOwned", "Effect": "Allow",
     "Condition": {"StringEquals": {f"aws:RequestTag/kubernetes.io/cluster/{CLUSTER}": "owned"}},
     "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"], "Resource": [
         f"arn:aws:ec2:{REGION}:*:fleet/*", f"arn:aws:ec2:{REGION}:*:instance/*",
         f"arn:aws:ec2:{REGION}:*:volume/*", f"arn:aws:ec2:{REGION}:*:network-interface/*",
         f"arn:aws:ec2:{REGION}:*:launch-template/*", f"arn:aws:ec2:{REGION}:*:spot-instances-request/*"]},
]}


def _context(resource_tags: dict[str, str]) -> dict:
    """Everything the caller knows about the request; simulate.mjs keeps what AWS sends per resource type."""
    ctx: dict = {f"aws:RequestTag/{k}": v for k, v in LAUNCH_TAGS.items()}
    ctx["aws:TagKeys"] = sorted(LAUNCH_TAGS)
    ctx.update({f"aws:ResourceTag/{k}": v for k, v in resource_tags.items()})
    ctx["aws:RequestedRegion"] = REGION
    return ctx


# Resource types each action authorizes (SAR, EC2 Actions table, via the pinned iam-data): an
# instant fleet is authorized as CreateFleet and as RunInstances, which adds the interfaces
# and security groups.
ACTION_RESOURCES = {
    "ec2:CreateFleet": ("launch-template", "fleet", "instance", "volume", "subnet", "image"),
    "ec2:RunInstances": ("launch-template", "instance", "volume", "network-interface", "subnet", "security-group",
                         "image"),
}


def _launch(policies: list[dict]) -> list[Request]:
    return [Request(action, LAUNCH_RESOURCES[kind][0], PRINCIPAL, _context(LAUNCH_RESOURCES[kind][1]), policies)
            for action, kinds in ACTION_RESOURCES.items() for kind in kinds]


def _verdicts(requests: list[Request]) -> dict[tuple[str, str], str]:
    return {(r.action, r.resource.split(":")[-1].split("/")[0]): got for r, got in zip(requests, evaluate(requests))}


def test_request_tags_reach_only_the_resources_the_sar_lists():
    """The evaluator's model of AWS: aws:RequestTag is not sent for the launch template of RunInstances."""
    reqs = [Request("ec2:RunInstances", LAUNCH_RESOURCES[k][0], PRINCIPAL, _context(LAUNCH_RESOURCES[k][1]), [])
            for k in ("launch-template", "instance")]
    lt, instance = evaluate_detailed(reqs)
    assert lt["resourceType"] == "launch-template" and instance["resourceType"] == "instance"
    assert f"aws:RequestTag/kubernetes.io/cluster/{CLUSTER}" in lt["dropped"]
    assert not any(k.startswith("aws:ResourceTag/") for k in lt["dropped"])
    assert f"aws:RequestTag/kubernetes.io/cluster/{CLUSTER}" not in instance["dropped"]


def test_karpenter_launch_is_allowed_with_upstreams_policy(karpenter_run):
    policies = list(_controller_policies(karpenter_run).values())
    verdicts = _verdicts(_launch(policies))
    assert set(verdicts.values()) == {"Allowed"}, {k: v for k, v in verdicts.items() if v != "Allowed"}
    tagging = [Request("ec2:CreateTags", LAUNCH_RESOURCES[k][0], PRINCIPAL,
                       {**_context({}), "ec2:CreateAction": "CreateFleet"}, policies)
               for k in ("fleet", "instance", "volume", "network-interface")]
    assert evaluate(tagging) == ["Allowed"] * 4


def test_karpenter_launch_was_denied_by_the_request_tag_launch_template_statement():
    verdicts = _verdicts(_launch([OLD_LAUNCH_STATEMENTS]))
    denied = {k for k, v in verdicts.items() if v != "Allowed"}
    assert denied == {("ec2:CreateFleet", "launch-template"), ("ec2:RunInstances", "launch-template")}


def test_karpenter_instance_profile_actions_need_upstreams_tags(karpenter_run):
    iam = _controller_policies(karpenter_run)["IAMIntegrationPolicy"]
    profile = f"arn:aws:iam::{ACCOUNT}:instance-profile/{CLUSTER}_123"
    karpenter_tags = {f"kubernetes.io/cluster/{CLUSTER}": "owned", "eks:eks-cluster-name": CLUSTER,
                      "karpenter.k8s.aws/ec2nodeclass": NODEPOOL, "topology.kubernetes.io/region": REGION}
    good = {**{f"aws:RequestTag/{k}": v for k, v in karpenter_tags.items()}, "aws:TagKeys": sorted(karpenter_tags)}
    other_cluster = {**good, f"aws:RequestTag/kubernetes.io/cluster/{CLUSTER}": None}
    other_cluster = {k: v for k, v in other_cluster.items() if v is not None}
    reqs = [Request("iam:CreateInstanceProfile", profile, PRINCIPAL, good, [iam]),
            Request("iam:CreateInstanceProfile", profile, PRINCIPAL, other_cluster, [iam])]
    assert evaluate(reqs) == ["Allowed", "ImplicitlyDenied"]


def test_load_balancer_controller_registers_targets_with_upstreams_policy():
    policy = upstream.alb_controller_policy()
    tg = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/llmserving-dev-llama/0123456789abcdef"
    principal = f"arn:aws:sts::{ACCOUNT}:assumed-role/llmserving-dev-alb-bindings-controller/eks-pod-identity"
    reqs = [Request(a, tg, principal, {}, [policy]) for a in
            ("elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets")]
    reqs.append(Request("elasticloadbalancing:DescribeTargetHealth", "*", principal, {}, [policy]))
    assert evaluate(reqs) == ["Allowed"] * 3
