"""What a first real `pulumi up` of the EKS platform needs (issue 10: items 1, 5, 7, 14, 16).

Whole-stack checks run the real program under mocks (the shipped dev and prod
stacks, or a variant of their config) and judge what AWS, EKS, Helm and the
controllers would do with the recorded inputs.
"""

from __future__ import annotations

import json
from typing import Optional

import pulumi_aws as aws
import pytest

from infra.config import ConfigError
from infra.eks_catalog import HELM_TIMEOUTS
from tests.harness import inputs, of_type, one, run_component, settings_for, shipped_preview, stack_value
from tests.iam_sim import ACCOUNT, Request, evaluate

EKS_STACKS = ["dev", "prod"]


def _res(doc: dict, typ: str) -> list[dict]:
    return [r for r in doc["resources"] if r["type"] == typ]


def _release(doc: dict, release_name: str) -> dict:
    found = [r for r in _res(doc, "kubernetes:helm.sh/v3:Release") if r["inputs"].get("name") == release_name]
    assert len(found) == 1, [r["inputs"].get("name") for r in _res(doc, "kubernetes:helm.sh/v3:Release")]
    return found[0]


# --- item 14: IMDS hop limit 1 on every node path; controllers get region without IMDS -------------

@pytest.mark.parametrize("stack", EKS_STACKS)
def test_every_node_path_keeps_imds_one_hop_away(stack):
    """A pod is one network hop beyond its node: with hop limit 1 IMDSv2 answers never reach it,
    so no pod can take the node role's credentials (EKS best practices; CKV_AWS_341)."""
    doc = shipped_preview(stack)
    lts = _res(doc, "aws:ec2/launchTemplate:LaunchTemplate")
    classes = _res(doc, "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")
    assert lts and classes
    hops = {r["name"]: r["inputs"]["metadataOptions"]["httpPutResponseHopLimit"] for r in lts}
    hops.update({r["name"]: r["inputs"]["spec"]["metadataOptions"]["httpPutResponseHopLimit"] for r in classes})
    assert hops and set(hops.values()) == {1}, hops
    assert all(r["inputs"]["metadataOptions"]["httpTokens"] == "required" for r in lts)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_controllers_get_their_region_without_imds(stack):
    doc = shipped_preview(stack)
    region = "us-east-1"
    lbc = _release(doc, "aws-load-balancer-controller")["inputs"]["values"]
    vpc = _res(doc, "aws:ec2/vpc:Vpc")[0]
    assert lbc["region"] == region and lbc["vpcId"].startswith("vpc-")
    assert vpc["inputs"]["cidrBlock"]  # the stack's one VPC
    karpenter = _release(doc, "karpenter")["inputs"]["values"]
    assert {"name": "AWS_REGION", "value": region} in karpenter["controller"]["env"]


# --- item 16: default security group without rules; confused-deputy conditions the services send -------

@pytest.mark.parametrize("stack", EKS_STACKS)
def test_default_security_group_is_managed_without_rules(stack):
    doc = shipped_preview(stack)
    vpcs = _res(doc, "aws:ec2/vpc:Vpc")
    sgs = _res(doc, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert len(sgs) == len(vpcs) == 1
    sg = sgs[0]["inputs"]
    assert sg["vpcId"].startswith("vpc-")
    # Terraform's aws_default_security_group revokes every rule not declared (CIS AWS 5.4).
    assert sg.get("ingress") == [] and sg.get("egress") == []


def _role(doc: dict, name_suffix: str) -> tuple[str, dict]:
    found = [r for r in _res(doc, "aws:iam/role:Role") if r["inputs"]["name"].endswith(name_suffix)]
    assert len(found) == 1, [r["inputs"]["name"] for r in _res(doc, "aws:iam/role:Role")]
    name = found[0]["inputs"]["name"]
    return f"arn:aws:iam::{ACCOUNT}:role/{name}", json.loads(found[0]["inputs"]["assumeRolePolicy"])


def _pod_identity(cluster: str, namespace: str, service_account: str) -> dict:
    """The request tags EKS Pod Identity sends when it assumes a role for a pod
    (awsdocs/amazon-eks-user-guide pod-id-role.adoc, "Setting Conditions")."""
    tags = {"eks-cluster-arn": f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{cluster}", "eks-cluster-name": cluster,
            "kubernetes-namespace": namespace, "kubernetes-service-account": service_account,
            "kubernetes-pod-name": f"{service_account}-abc", "kubernetes-pod-uid": "0000"}
    return {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": sorted(tags)}


@pytest.mark.parametrize("stack", ["dev"])
def test_pod_identity_roles_trust_only_their_service_account_of_this_cluster(stack):
    doc = shipped_preview(stack)
    cluster = f"llmserving-{stack}"
    roles = {"karpenter": ("-karpenter-controller", "kube-system", "karpenter"),
             "ebs-csi": ("-ebs-csi", "kube-system", "ebs-csi-controller-sa"),
             "lb-controller": ("-alb-bindings-controller", "kube-system", "aws-load-balancer-controller")}
    cases = []
    for what, (suffix, ns, sa) in roles.items():
        arn, trust = _role(doc, suffix)
        for action in ("sts:AssumeRole", "sts:TagSession"):
            cases += [
                ((what, action, "own service account"), Request(action, arn, "pods.eks.amazonaws.com",
                                                                 _pod_identity(cluster, ns, sa), [], trust), "Allowed"),
                ((what, action, "another service account"), Request(
                    action, arn, "pods.eks.amazonaws.com", _pod_identity(cluster, "llmserving", "default"), [], trust),
                 "ImplicitlyDenied"),
                ((what, action, "another cluster"), Request(
                    action, arn, "pods.eks.amazonaws.com", _pod_identity("other-cluster", ns, sa), [], trust),
                 "ImplicitlyDenied"),
            ]
    got = evaluate([c[1] for c in cases])
    assert {c[0]: g for c, g in zip(cases, got)} == {c[0]: c[2] for c in cases}


@pytest.mark.parametrize("stack", ["dev"])
def test_flow_log_role_and_interruption_queue_admit_only_this_accounts_sources(stack):
    doc = shipped_preview(stack)
    arn, trust = _role(doc, "-flow-logs")
    flow_log = f"arn:aws:ec2:us-east-1:{ACCOUNT}:vpc-flow-log/fl-0123456789abcdef0"
    other = "999999999999"
    queue_policy = json.loads(next(r for r in _res(doc, "aws:sqs/queuePolicy:QueuePolicy"))["inputs"]["policy"])
    queue = next(s["Resource"] for s in queue_policy["Statement"])
    rule = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/llmserving-{stack}-karpenter-spot-interruption"
    cases = [
        (Request("sts:AssumeRole", arn, "vpc-flow-logs.amazonaws.com",
                 {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": flow_log}, [], trust), "Allowed"),
        (Request("sts:AssumeRole", arn, "vpc-flow-logs.amazonaws.com",
                 {"aws:SourceAccount": other, "aws:SourceArn": flow_log.replace(ACCOUNT, other)}, [], trust),
         "ImplicitlyDenied"),
        (Request("sqs:SendMessage", queue, "events.amazonaws.com", {"aws:SourceArn": rule, "aws:SecureTransport": "true"},
                 [], queue_policy), "Allowed"),
        (Request("sqs:SendMessage", queue, "events.amazonaws.com",
                 {"aws:SourceArn": f"arn:aws:events:us-east-1:{other}:rule/anything", "aws:SecureTransport": "true"},
                 [], queue_policy), "ImplicitlyDenied"),
    ]
    assert evaluate([c[0] for c in cases]) == [c[1] for c in cases]


# --- assembling the EKS platform as infra/stack.py does, keeping the returned objects -----------

def _assemble(stack: str, changes: Optional[dict] = None, *, wire_spot: bool = True):
    """Network, edge, EKS platform and the ALB bindings of a stack config, as infra/stack.py wires them
    (plus the new wiring: system nodes, spot role, binding dependencies). Returns (run, objects)."""
    import pulumi
    import pulumi_kubernetes as k8s

    from components.network import Network, NetworkArgs
    from infra import capacity, eks_platform
    from infra import edge as edge_mod
    from infra import stack as stack_mod

    settings = settings_for(stack, changes)
    plan = capacity.plan(settings)
    got: dict = {}

    def program():
        tags = stack_mod.cost_tags(settings)
        prefix = f"{settings.project}-{settings.stack}"
        zones = stack_mod.resolve_zones(settings)
        net = settings.config.network
        network = Network(prefix, NetworkArgs(vpc_cidr=net.vpc_cidr, zones=zones, nat_gateways=net.nat_gateways,
                                              region=settings.region, cluster_names=[prefix], tags=tags))
        edge = edge_mod.build(settings, network, tags)
        platform = eks_platform.build(settings, plan, network, tags,
                                      spot_service_linked_role=edge.spot_service_linked_role if wire_spot else None)
        ns = k8s.core.v1.Namespace("serving-ns", metadata={"name": "llmserving"},
                                   opts=pulumi.ResourceOptions(provider=platform.k8s_provider))
        bindings = edge_mod.build_eks_bindings(
            settings, edge, k8s_provider=platform.k8s_provider, cluster_name=platform.cluster_name,
            vpc_id=network.vpc_id, namespace="llmserving", router=("router", 8000), tags=tags,
            node_ready=platform.system_nodes, depends_on=[ns])
        got.update(edge=edge, platform=platform, namespace=ns, bindings=bindings)

    return run_component(program), got


def _eks_cfg(stack: str) -> dict:
    try:
        return stack_value(stack, "llmserving:eks")
    except KeyError:
        return {}


def _urn(run, typ: str, name: Optional[str] = None) -> str:
    return one(run, typ, name).urn


def _deps(reg) -> set[str]:
    return set(reg.dependencies) | {u for us in reg.property_dependencies.values() for u in us}


@pytest.fixture(scope="module")
def dev_assembly():
    return _assemble("dev")


@pytest.fixture(scope="module")
def prod_assembly():
    return _assemble("prod")


# --- item 5: releases that schedule pods wait for the system nodes, with first-install timeouts ----------

POD_RELEASES = ("karpenter", "aws-load-balancer-controller", "nvidia-device-plugin", "dcgm-exporter",
                "aws-efa-k8s-device-plugin")


@pytest.mark.parametrize("which", ["dev", "prod"])
def test_helm_releases_that_schedule_pods_wait_for_the_system_node_group(which, dev_assembly, prod_assembly):
    run, _ = dev_assembly if which == "dev" else prod_assembly
    node_group = _urn(run, "aws:eks/nodeGroup:NodeGroup", f"llmserving-{which}-system")
    releases = {inputs(r)["name"]: r for r in of_type(run, "kubernetes:helm.sh/v3:Release")}
    scheduled = [n for n in POD_RELEASES if n in releases]
    assert {"karpenter", "aws-load-balancer-controller", "nvidia-device-plugin"} <= set(scheduled)
    for name in scheduled:
        r = releases[name]
        assert node_group in _deps(r), f"{name} installs before any node exists"
        # Helm waits `timeout` seconds (provider default 300) for ready pods; atomic purges on timeout.
        timeout = inputs(r)["timeout"]
        assert timeout == int(HELM_TIMEOUTS[name].value) and timeout > 300, name
        assert inputs(r)["atomic"] is True


def test_dcgm_and_efa_releases_also_wait_for_nodes():
    run, _ = _assemble("prod", {"llmserving:observability": {**stack_value("prod", "llmserving:observability"),
                                                              "dcgmExporter": True}})
    node_group = _urn(run, "aws:eks/nodeGroup:NodeGroup", "llmserving-prod-system")
    dcgm = next(r for r in of_type(run, "kubernetes:helm.sh/v3:Release") if inputs(r)["name"] == "dcgm-exporter")
    assert node_group in _deps(dcgm) and inputs(dcgm)["timeout"] == 900


def test_node_addons_come_before_nodes_and_deployment_addons_after(dev_assembly):
    run, _ = dev_assembly
    addons = {inputs(r)["addonName"]: r for r in of_type(run, "aws:eks/addon:Addon")}
    node_group = one(run, "aws:eks/nodeGroup:NodeGroup", "llmserving-dev-system")
    for name in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
        assert addons[name].urn in _deps(node_group), name  # a node without the CNI never turns Ready
    for name in ("coredns", "aws-ebs-csi-driver"):
        assert node_group.urn in _deps(addons[name]), name  # Deployments stay DEGRADED without nodes


def test_platform_exposes_system_nodes_and_per_pool_node_sources(prod_assembly):
    from components.gpu_node_group import GpuNodeGroup
    from components.karpenter_gpu_pool import KarpenterGpuPool

    _, got = prod_assembly
    platform = got["platform"]
    assert any(isinstance(r, aws.eks.NodeGroup) for r in platform.system_nodes)
    pools = {p["name"]: p for p in stack_value("prod", "llmserving:gpuPools")}
    assert set(platform.pool_node_sources) == set(pools)
    assert any(isinstance(r, GpuNodeGroup) for r in platform.pool_node_sources["p5-ondemand"])
    assert any(isinstance(r, KarpenterGpuPool) for r in platform.pool_node_sources["g5-lora"])


def test_target_group_bindings_wait_for_their_namespace_and_the_controller_for_nodes(dev_assembly):
    run, _ = dev_assembly
    ns = _urn(run, "kubernetes:core/v1:Namespace", "serving-ns")
    node_group = _urn(run, "aws:eks/nodeGroup:NodeGroup", "llmserving-dev-system")
    bindings = of_type(run, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding")
    assert bindings and all(ns in _deps(b) for b in bindings)
    lbc = next(r for r in of_type(run, "kubernetes:helm.sh/v3:Release")
               if inputs(r)["name"] == "aws-load-balancer-controller")
    assert node_group in _deps(lbc)


# --- item 7: the Spot service-linked role -------------------------------------------------------------

def test_spot_service_linked_role_is_created_once_and_spot_capacity_waits_for_it(dev_assembly):
    run, got = dev_assembly
    role = one(run, "aws:iam/serviceLinkedRole:ServiceLinkedRole")
    assert inputs(role)["awsServiceName"] == "spot.amazonaws.com"
    assert got["edge"].spot_service_linked_role is not None
    # The dev pool is spot-with-on-demand-fallback through Karpenter: its NodePool waits for the role.
    pool = one(run, "kubernetes:karpenter.sh/v1:NodePool")
    assert role.urn in _deps(pool)


def test_spot_service_linked_role_is_skipped_when_it_exists_or_no_pool_uses_spot():
    run, got = _assemble("dev", {"llmserving:spotServiceLinkedRole": "existing"})
    assert of_type(run, "aws:iam/serviceLinkedRole:ServiceLinkedRole") == [] and got["edge"].spot_service_linked_role is None
    pools = [{**p, "capacityType": "on-demand"} for p in stack_value("dev", "llmserving:gpuPools")]
    run, got = _assemble("dev", {"llmserving:gpuPools": pools})
    assert of_type(run, "aws:iam/serviceLinkedRole:ServiceLinkedRole") == []


def test_spot_service_linked_role_switch_is_validated():
    with pytest.raises(ConfigError) as e:
        settings_for("dev", {"llmserving:spotServiceLinkedRole": "yes"})
    assert "llmserving:spotServiceLinkedRole: got 'yes'" in str(e.value)
    assert "'create' or 'existing'" in str(e.value)


# --- item 1: the cluster API reachable from zero ----------------------------------------------------------

def _cluster(run) -> dict:
    return inputs(one(run, "eks:index:Cluster"))


def test_prod_api_is_private_with_no_deployer_rules_by_default(prod_assembly):
    run, _ = prod_assembly
    c = _cluster(run)
    assert c["endpointPrivateAccess"] is True and c["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in c
    assert of_type(run, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []


def test_prod_bootstrap_opens_a_public_endpoint_to_the_deployer_only_and_closing_it_is_one_key():
    eks_cfg = _eks_cfg("prod")
    run, _ = _assemble("prod", {"llmserving:eks": {**eks_cfg, "bootstrapPublicCidrs": ["192.0.2.10/32"]}})
    c = _cluster(run)
    assert c["endpointPrivateAccess"] is True and c["endpointPublicAccess"] is True
    assert c["publicAccessCidrs"] == ["192.0.2.10/32"]


def test_deployer_networks_and_groups_get_https_on_the_cluster_security_group():
    eks_cfg = _eks_cfg("prod")
    run, _ = _assemble("prod", {"llmserving:eks": {
        **eks_cfg, "deployerCidrs": ["10.60.0.0/16"], "deployerSecurityGroupIds": ["sg-0123456789abcdef0"]}})
    rules = [inputs(r) for r in of_type(run, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]
    cluster_sg = next(inputs(r)["resourceId"] for r in of_type(run, "aws:ec2/tag:Tag"))
    assert len(rules) == 2
    assert all(r["securityGroupId"] == cluster_sg and r["ipProtocol"] == "tcp" and r["fromPort"] == r["toPort"] == 443
               for r in rules)
    assert {r.get("cidrIpv4") for r in rules} == {"10.60.0.0/16", None}
    assert {r.get("referencedSecurityGroupId") for r in rules} == {"sg-0123456789abcdef0", None}
    assert _cluster(run)["endpointPublicAccess"] is False


@pytest.mark.parametrize("key,value,expected", [
    ("bootstrapPublicCidrs", ["0.0.0.0/0"], "llmserving:eks.bootstrapPublicCidrs: got [\"0.0.0.0/0\"]; '0.0.0.0/0' "
                                            "opens the cluster API to the internet"),
    ("bootstrapPublicCidrs", ["10.0.0.0/8"], "'10.0.0.0/8' is wider than /16"),
    ("bootstrapPublicCidrs", ["2001:db8::/64"], "'2001:db8::/64' is IPv6; EKS public access CIDRs are IPv4"),
    ("bootstrapPublicCidrs", ["office"], "'office' is not a CIDR"),
    ("deployerCidrs", ["0.0.0.0/0"], "llmserving:eks.deployerCidrs: got [\"0.0.0.0/0\"]; '0.0.0.0/0' admits every "
                                     "address to the cluster API"),
    ("deployerCidrs", ["vpn"], "'vpn' is not a CIDR"),
    ("deployerSecurityGroupIds", ["runner"], "llmserving:eks.deployerSecurityGroupIds: got [\"runner\"]; 'runner' is "
                                             "not a security group id"),
])
def test_deployer_access_config_is_validated(key, value, expected):
    with pytest.raises(ConfigError) as e:
        settings_for("prod", {"llmserving:eks": {**_eks_cfg("prod"), key: value}})
    assert expected in str(e.value)


def test_prod_still_rejects_standing_public_cidrs_and_points_to_the_bootstrap_key():
    from infra import capacity, eks_platform

    settings = settings_for("prod", {"llmserving:network": {**stack_value("prod", "llmserving:network"),
                                                            "apiPublicCidrs": ["192.0.2.0/24"]}})
    with pytest.raises(ConfigError) as e:
        eks_platform.validate(settings, capacity.plan(settings))
    assert "llmserving:network.apiPublicCidrs: got ['192.0.2.0/24']; prod clusters use a private API endpoint" in str(e.value)
    assert "eks.bootstrapPublicCidrs" in str(e.value) and "eks.deployerCidrs" in str(e.value)


def test_dev_placeholder_api_cidr_is_marked_and_listed_in_the_readme():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    dev = (root / "Pulumi.dev.yaml").read_text()
    placeholder = stack_value("dev", "llmserving:network")["apiPublicCidrs"][0]
    line = next(i for i, l in enumerate(dev.splitlines()) if placeholder in l)
    context = "\n".join(dev.splitlines()[max(0, line - 4):line + 1])
    assert "RFC 5737" in context and "REPLACE" in context.upper()
    readme = (root / "README.md").read_text()
    section = readme.split("## Deploying for real", 1)[1].split("\n## ", 1)[0]
    for needed in ("network.apiPublicCidrs", placeholder, "eks.bootstrapPublicCidrs", "eks.deployerCidrs",
                   "spotServiceLinkedRole", "curl"):
        assert needed in section, needed
