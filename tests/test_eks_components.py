"""Mock unit tests for the EKS platform components, one section per component."""

from __future__ import annotations

import json

import pytest

from components.eks_cluster import LOG_TYPES, REQUIRED_ADDONS, EksCluster, EksClusterArgs, validate_eks_cluster_args
from components.errors import ArgsError
from components.gpu_node_group import GpuNodeGroup, GpuNodeGroupArgs, validate_gpu_node_group_args
from components.karpenter import Karpenter, KarpenterArgs, validate_karpenter_args
from components.karpenter_gpu_pool import KarpenterGpuPool, KarpenterGpuPoolArgs, validate_karpenter_gpu_pool_args
from components.nvidia_runtime import HelmChart, NvidiaRuntime, NvidiaRuntimeArgs, validate_nvidia_runtime_args
from infra import upstream
from tests.harness import inputs, of_type, one, run_component
from tests.k8s_validation import validate_object

TAGS = {"project": "llmserving", "stack": "test", "environment": "dev", "tier": "small"}
POLICIES = ["arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy", "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"]


def cluster_args(**kw) -> EksClusterArgs:
    base = dict(cluster_name="llmserving-test", kubernetes_version="1.33", vpc_id="vpc-123",
                private_subnet_ids=["subnet-a", "subnet-b"], addon_versions={a: "v1.0.0-eksbuild.1" for a in REQUIRED_ADDONS},
                node_policy_arns=POLICIES, region="us-east-1", account_id="123456789012", tags=TAGS)
    return EksClusterArgs(**{**base, **kw})


# --- EksCluster ---------------------------------------------------------------

def test_cluster_is_private_protected_encrypted_and_logs_everything():
    run = run_component(lambda: EksCluster("c", cluster_args()))
    cluster = one(run, "eks:index:Cluster")
    props = inputs(cluster)
    assert cluster.protect is True
    assert props["name"] == "llmserving-test"
    assert props["skipDefaultNodeGroup"] is True
    assert props["authenticationMode"] == "API"
    assert props["endpointPrivateAccess"] is True and props["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in props
    assert sorted(props["enabledClusterLogTypes"]) == sorted(LOG_TYPES)
    key = one(run, "aws:kms/key:Key")
    assert inputs(key)["enableKeyRotation"] is True
    assert props["encryptionConfigKeyArn"].startswith("arn:aws:kms:")
    assert props["tags"] == TAGS


def test_cluster_manages_pinned_addons_and_builds_provider_from_kubeconfig():
    run = run_component(lambda: EksCluster("c", cluster_args()))
    addons = {inputs(a)["addonName"]: inputs(a) for a in of_type(run, "aws:eks/addon:Addon")}
    assert sorted(addons) == sorted(REQUIRED_ADDONS)
    assert all(a["addonVersion"] == "v1.0.0-eksbuild.1" and a["clusterName"] == "llmserving-test" for a in addons.values())
    ebs = addons["aws-ebs-csi-driver"]["podIdentityAssociations"][0]
    assert ebs["serviceAccount"] == "ebs-csi-controller-sa" and ":role/" in ebs["roleArn"]
    kubeconfig = json.loads(inputs(one(run, "pulumi:providers:kubernetes"))["kubeconfig"])
    assert kubeconfig["users"][0]["user"]["exec"]["args"][3] == "llmserving-test"
    tag = inputs(one(run, "aws:ec2/tag:Tag"))
    assert tag["key"] == "karpenter.sh/discovery" and tag["value"] == "llmserving-test"
    assert tag["resourceId"].startswith("sg-")


def test_cluster_system_node_group_is_cpu_only_with_imdsv2():
    run = run_component(lambda: EksCluster("c", cluster_args()))
    ng = inputs(one(run, "aws:eks/nodeGroup:NodeGroup"))
    assert ng["amiType"] == "AL2023_x86_64_STANDARD" and "taints" not in ng
    lt = inputs(one(run, "aws:ec2/launchTemplate:LaunchTemplate"))
    assert lt["metadataOptions"]["httpTokens"] == "required"


def test_cluster_public_endpoint_only_with_cidrs():
    run = run_component(lambda: EksCluster("c", cluster_args(endpoint_public_access=True,
                                                            public_access_cidrs=["198.51.100.0/24"])))
    props = inputs(one(run, "eks:index:Cluster"))
    assert props["endpointPublicAccess"] is True and props["publicAccessCidrs"] == ["198.51.100.0/24"]


def test_cluster_rejects_open_endpoint_missing_addon_and_missing_logs():
    args = cluster_args(endpoint_public_access=True, public_access_cidrs=["0.0.0.0/0"],
                        addon_versions={"vpc-cni": "v1"}, log_types=("api",))
    with pytest.raises(ArgsError) as e:
        validate_eks_cluster_args(args)
    msg = str(e.value)
    assert "public_access_cidrs: got '0.0.0.0/0'; the API must not be open to the internet" in msg
    assert "addon_versions: no pinned version for coredns, kube-proxy, eks-pod-identity-agent, aws-ebs-csi-driver" in msg
    assert "log_types: missing ['audit', 'authenticator', 'controllerManager', 'scheduler']" in msg
    with pytest.raises(ArgsError, match="a public API endpoint must be restricted to listed CIDRs"):
        validate_eks_cluster_args(cluster_args(endpoint_public_access=True))


# --- GpuNodeGroup -------------------------------------------------------------

def ng_args(**kw) -> GpuNodeGroupArgs:
    base = dict(cluster_name="llmserving-test", pool_name="p5", instance_types=["p5.48xlarge"],
                subnet_ids=["subnet-a", "subnet-b"], ami_type="AL2023_x86_64_NVIDIA", capacity_type="ON_DEMAND",
                min_size=2, desired_size=2, max_size=4, root_volume_gib=1000, node_policy_arns=POLICIES, tags=TAGS)
    return GpuNodeGroupArgs(**{**base, **kw})


def test_node_group_nvidia_ami_taint_labels_scaling_and_launch_template():
    run = run_component(lambda: GpuNodeGroup("g", ng_args()))
    ng = inputs(one(run, "aws:eks/nodeGroup:NodeGroup"))
    assert ng["amiType"] == "AL2023_x86_64_NVIDIA" and ng["capacityType"] == "ON_DEMAND"
    assert ng["instanceTypes"] == ["p5.48xlarge"]
    assert ng["scalingConfig"] == {"minSize": 2, "desiredSize": 2, "maxSize": 4}
    assert ng["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert ng["labels"]["llmserving.io/pool"] == "p5" and ng["labels"]["nvidia.com/gpu.present"] == "true"
    assert ng["launchTemplate"]["version"] == "1" and ng["launchTemplate"]["id"].startswith("lt-")
    assert ng["tags"] == TAGS
    lt = inputs(one(run, "aws:ec2/launchTemplate:LaunchTemplate"))
    assert lt["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required",
                                     "httpPutResponseHopLimit": 1, "instanceMetadataTags": "disabled"}
    ebs = lt["blockDeviceMappings"][0]["ebs"]
    assert ebs == {"volumeSize": 1000, "volumeType": "gp3", "encrypted": "true", "deleteOnTermination": "true"}
    assert "networkInterfaces" not in lt and not of_type(run, "aws:ec2/placementGroup:PlacementGroup")
    attached = sorted(inputs(r)["policyArn"] for r in of_type(run, "aws:iam/rolePolicyAttachment:RolePolicyAttachment"))
    assert attached == sorted(POLICIES)


def test_node_group_with_efa_gets_interfaces_and_cluster_placement_group():
    run = run_component(lambda: GpuNodeGroup("g", ng_args(subnet_ids=["subnet-a"], efa_interfaces=4,
                                                          security_group_ids=["sg-1"])))
    pg = inputs(one(run, "aws:ec2/placementGroup:PlacementGroup"))
    assert pg["strategy"] == "cluster" and pg["tags"] == TAGS
    lt = inputs(one(run, "aws:ec2/launchTemplate:LaunchTemplate"))
    assert lt["placement"]["groupName"] == pg["name"]
    nics = lt["networkInterfaces"]
    assert [n["interfaceType"] for n in nics] == ["efa"] * 4
    assert [n["networkCardIndex"] for n in nics] == [0, 1, 2, 3] and nics[0]["deviceIndex"] == 0
    assert all(n["securityGroups"] == ["sg-1"] for n in nics)


def test_node_group_rejects_bad_args_listing_every_problem():
    args = ng_args(ami_type="AL2023_x86_64_STANDARD", capacity_type="SPOT", min_size=3, desired_size=1,
                   efa_interfaces=2)
    with pytest.raises(ArgsError) as e:
        validate_gpu_node_group_args(args)
    msg = str(e.value)
    assert "ami_type: got 'AL2023_x86_64_STANDARD'; GPU nodes need an NVIDIA AMI type" in msg
    assert "min_size/desired_size/max_size: got 3/1/4" in msg
    assert "subnet_ids: got 2 subnets; an EFA group with a cluster placement group must use exactly one subnet" in msg
    assert "security_group_ids: got []; EFA interfaces must name the cluster security group" in msg
    assert "capacity_type: got 'SPOT'; a model split across EFA nodes" in msg


# --- NvidiaRuntime --------------------------------------------------------------

DP = HelmChart("nvidia-device-plugin", "0.18.0", "https://nvidia.github.io/k8s-device-plugin")
DCGM = HelmChart("dcgm-exporter", "4.6.0", "https://nvidia.github.io/dcgm-exporter/helm-charts")


def test_device_plugin_tolerates_gpu_taint_and_dcgm_is_a_switch():
    run = run_component(lambda: NvidiaRuntime("n", NvidiaRuntimeArgs(device_plugin=DP)))
    rel = inputs(one(run, "kubernetes:helm.sh/v3:Release"))
    assert rel["chart"] == "nvidia-device-plugin" and rel["version"] == "0.18.0"
    assert rel["repositoryOpts"]["repo"] == "https://nvidia.github.io/k8s-device-plugin"
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in rel["values"]["tolerations"]
    assert not of_type(run, "kubernetes:core/v1:Namespace")

    run = run_component(lambda: NvidiaRuntime("n", NvidiaRuntimeArgs(device_plugin=DP, dcgm_exporter=DCGM)))
    releases = {inputs(r)["name"]: inputs(r) for r in of_type(run, "kubernetes:helm.sh/v3:Release")}
    assert sorted(releases) == ["dcgm-exporter", "nvidia-device-plugin"]
    assert releases["dcgm-exporter"]["namespace"] == "gpu-monitoring"
    ns = inputs(one(run, "kubernetes:core/v1:Namespace"))
    validate_object({"apiVersion": "v1", "kind": "Namespace", "metadata": ns["metadata"]})


def test_nvidia_runtime_rejects_unpinned_charts():
    with pytest.raises(ArgsError) as e:
        validate_nvidia_runtime_args(NvidiaRuntimeArgs(device_plugin=HelmChart("nvidia-device-plugin", "latest"),
                                                       dcgm_exporter=HelmChart("dcgm-exporter", "^4.0")))
    assert "device_plugin.version: got 'latest'; pin an exact chart version" in str(e.value)
    assert "dcgm_exporter.version: got '^4.0'; pin an exact chart version" in str(e.value)


# --- Karpenter ----------------------------------------------------------------------

def karpenter_args(**kw) -> KarpenterArgs:
    base = dict(cluster_name="llmserving-test", chart="oci://public.ecr.aws/karpenter/karpenter", chart_version="1.14.1",
                node_policy_arns=POLICIES, region="us-east-1", account_id="123456789012",
                controller_policy_templates=upstream.karpenter_controller_policy_templates(), tags=TAGS)
    return KarpenterArgs(**{**base, **kw})


def test_karpenter_interruption_queue_rules_and_chart_setting():
    run = run_component(lambda: Karpenter("k", karpenter_args()))
    q = inputs(one(run, "aws:sqs/queue:Queue"))
    assert q["sqsManagedSseEnabled"] is True and q["messageRetentionSeconds"] == 300 and q["tags"] == TAGS
    policy = json.loads(inputs(one(run, "aws:sqs/queuePolicy:QueuePolicy"))["policy"])
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"][0]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = of_type(run, "aws:cloudwatch/eventRule:EventRule")
    patterns = sorted(json.loads(inputs(r)["eventPattern"])["detail-type"][0] for r in rules)
    assert patterns == sorted([
        "AWS Health Event", "EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification", "EC2 Capacity Reservation Instance Interruption Warning"])
    queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{q['name']}"
    targets = of_type(run, "aws:cloudwatch/eventTarget:EventTarget")
    assert len(targets) == 5 and all(inputs(t)["arn"] == queue_arn for t in targets)
    assert {inputs(t)["rule"] for t in targets} == {inputs(r)["name"] for r in rules}
    release = inputs(one(run, "kubernetes:helm.sh/v3:Release"))
    assert release["chart"] == "oci://public.ecr.aws/karpenter/karpenter" and release["version"] == "1.14.1"
    assert release["values"]["settings"] == {"clusterName": "llmserving-test", "interruptionQueue": q["name"],
                                             "featureGates": {"nodeRepair": True, "reservedCapacity": True}}


def test_karpenter_iam_pod_identity_and_node_access_entry():
    run = run_component(lambda: Karpenter("k", karpenter_args()))
    entry = inputs(one(run, "aws:eks/accessEntry:AccessEntry"))
    assert entry["type"] == "EC2_LINUX" and entry["principalArn"].endswith(":role/llmserving-test-karpenter-node")
    assoc = inputs(one(run, "aws:eks/podIdentityAssociation:PodIdentityAssociation"))
    assert assoc["serviceAccount"] == "karpenter" and assoc["namespace"] == "kube-system"
    assert assoc["roleArn"].endswith(":role/llmserving-test-karpenter-controller")
    roles = {inputs(r)["name"]: json.loads(inputs(r)["assumeRolePolicy"]) for r in of_type(run, "aws:iam/role:Role")}
    assert roles["llmserving-test-karpenter-controller"]["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    policy = json.loads(inputs(one(run, "aws:iam/rolePolicy:RolePolicy", "k-controller-IAMIntegrationPolicy"))["policy"])
    passrole = next(s for s in policy["Statement"] if s["Sid"] == "AllowPassingInstanceRole")
    assert passrole["Resource"] == entry["principalArn"]


def test_karpenter_rejects_v0_chart_and_unpinned_version():
    with pytest.raises(ArgsError) as e:
        validate_karpenter_args(karpenter_args(chart="karpenter/karpenter", chart_version="0.37.0"))
    assert "chart: got 'karpenter/karpenter'; the Karpenter chart is published at oci://public.ecr.aws/karpenter/karpenter" in str(e.value)
    assert "chart_version: got '0.37.0'; this component manages Karpenter v1" in str(e.value)


# --- KarpenterGpuPool ------------------------------------------------------------------

def pool_args(**kw) -> KarpenterGpuPoolArgs:
    base = dict(pool_name="g5-spot", cluster_name="llmserving-test", node_role_name="llmserving-test-karpenter-node",
                instance_types=["g5.2xlarge", "g6e.xlarge"], capacity_types=["spot", "on-demand"], gpu_limit=16,
                ami_alias="al2023@v20251103", root_volume_gib=200, zones=["us-east-1a", "us-east-1b"], tags=TAGS)
    return KarpenterGpuPoolArgs(**{**base, **kw})


def test_gpu_pool_renders_valid_nodepool_and_nodeclass():
    run = run_component(lambda: KarpenterGpuPool("p", pool_args()))
    pool = inputs(one(run, "kubernetes:karpenter.sh/v1:NodePool"))
    cls = inputs(one(run, "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"))
    validate_object(pool)
    validate_object(cls)
    spec = pool["spec"]
    assert spec["limits"] == {"nvidia.com/gpu": 16}
    reqs = {r["key"]: r["values"] for r in spec["template"]["spec"]["requirements"]}
    assert reqs["karpenter.sh/capacity-type"] == ["spot", "on-demand"]
    assert reqs["node.kubernetes.io/instance-type"] == ["g5.2xlarge", "g6e.xlarge"]
    assert spec["template"]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert spec["template"]["spec"]["expireAfter"] == "720h"
    assert spec["disruption"] == {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "1h", "budgets": [{"nodes": "10%"}]}
    assert spec["template"]["metadata"]["labels"]["llmserving.io/pool"] == "g5-spot"
    c = cls["spec"]
    assert c["amiSelectorTerms"] == [{"alias": "al2023@v20251103"}]
    assert c["subnetSelectorTerms"] == c["securityGroupSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "llmserving-test"}}]
    assert c["metadataOptions"]["httpTokens"] == "required"
    assert c["blockDeviceMappings"][0]["ebs"]["encrypted"] is True
    assert c["role"] == "llmserving-test-karpenter-node"


def test_gpu_pool_without_gpu_limit_is_impossible():
    with pytest.raises(ArgsError) as e:
        validate_karpenter_gpu_pool_args(pool_args(gpu_limit=None))
    assert "gpu_limit: got None; GPU pool 'g5-spot' must cap nvidia.com/gpu in spec.limits" in str(e.value)
    # The component raises at construction, so a program using it fails.
    with pytest.raises(Exception, match="must cap nvidia.com/gpu"):
        run_component(lambda: KarpenterGpuPool("p", pool_args(gpu_limit=None)))


def test_gpu_pool_rejects_bad_capacity_type_duration_and_alias():
    with pytest.raises(ArgsError) as e:
        validate_karpenter_gpu_pool_args(pool_args(capacity_types=["reserved-ish"], expire_after="30 days",
                                                   ami_alias="al2@latest", gpu_limit=0))
    msg = str(e.value)
    assert "capacity_types: got ['reserved-ish']; allowed: reserved, spot, on-demand" in msg
    assert "expire_after: got '30 days'; a duration such as 1h or 720h, or Never" in msg
    assert "ami_alias: got 'al2@latest'; an AL2023 alias" in msg
    assert "gpu_limit: got 0; must be at least 1" in msg
