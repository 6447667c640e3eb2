"""Data tables for the EKS platform: add-on, chart and AMI pins and the
Karpenter defaults, each with its source and the date it was taken.

Bump a pin here (in one reviewed change) and the preview diff shows which
resources it touches. Logic in infra/eks_platform.py reads these tables and
never hard-codes a version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pin:
    value: str
    source: str
    as_of: str


_ADDON_SRC = "aws eks describe-addon-versions --kubernetes-version {k8s} (default version per add-on)"

# EKS managed add-on versions, per Kubernetes minor version. A Kubernetes
# version that is not listed here is a configuration error (pin first).
ADDON_VERSIONS: dict[str, dict[str, Pin]] = {
    "1.33": {
        "vpc-cni": Pin("v1.20.4-eksbuild.1", _ADDON_SRC.format(k8s="1.33"), "2025-10"),
        "coredns": Pin("v1.12.1-eksbuild.2", _ADDON_SRC.format(k8s="1.33"), "2025-10"),
        "kube-proxy": Pin("v1.33.3-eksbuild.6", _ADDON_SRC.format(k8s="1.33"), "2025-10"),
        "eks-pod-identity-agent": Pin("v1.3.8-eksbuild.2", _ADDON_SRC.format(k8s="1.33"), "2025-10"),
        "aws-ebs-csi-driver": Pin("v1.48.0-eksbuild.2", _ADDON_SRC.format(k8s="1.33"), "2025-10"),
    },
}


@dataclass(frozen=True)
class ChartPin:
    chart: str
    version: str
    repository: str  # empty for OCI charts (the chart is the full oci:// reference)
    source: str
    as_of: str


HELM_CHARTS: dict[str, ChartPin] = {
    "karpenter": ChartPin(
        chart="oci://public.ecr.aws/karpenter/karpenter", version="1.14.1", repository="",
        # The chart installs the NodePool/EC2NodeClass CRDs the tests validate against.
        source="aws/karpenter-provider-aws v1.14.1 (chart and CRDs; ../shared/crds/README.md)", as_of="2026-11"),
    "nvidia-device-plugin": ChartPin(
        chart="nvidia-device-plugin", version="0.18.0", repository="https://nvidia.github.io/k8s-device-plugin",
        source="NVIDIA/k8s-device-plugin releases (chart nvidia-device-plugin 0.18.0)", as_of="2025-10"),
    "dcgm-exporter": ChartPin(
        chart="dcgm-exporter", version="4.6.0", repository="https://nvidia.github.io/dcgm-exporter/helm-charts",
        source="NVIDIA/dcgm-exporter helm-charts index (chart dcgm-exporter 4.6.0)", as_of="2025-10"),
    # Advertises vpc.amazonaws.com/efa on EFA nodes (multi-node models); chart v0.5.20 ships plugin v0.5.13.
    "aws-efa-k8s-device-plugin": ChartPin(
        chart="aws-efa-k8s-device-plugin", version="v0.5.20", repository="https://aws.github.io/eks-charts",
        source="aws/eks-charts stable/aws-efa-k8s-device-plugin/Chart.yaml (version v0.5.20, appVersion v0.5.13)",
        as_of="2026-11"),
}

# Karpenter picks the NVIDIA variant of an AL2023 AMI for GPU instance types
# when the alias names the AL2023 family; the version pins the AMI release.
KARPENTER_AMI_ALIAS = Pin("al2023@v20251103", "awslabs/amazon-eks-ami releases (v20251103)", "2025-11")

# EKS managed node groups: the accelerated AL2023 AMI type.
MANAGED_NODE_GROUP_AMI_TYPE = Pin("AL2023_x86_64_NVIDIA", "EKS API AMITypes (botocore eks service model)", "2025-10")

# Disruption settings for GPU inference pools. Loading a 70B model takes
# minutes, so empty nodes are kept warm for a while and nodes are rotated
# monthly at most, a few at a time.
KARPENTER_DISRUPTION = {
    "consolidation_policy": Pin("WhenEmpty", "Karpenter v1 docs, Disruption (FACTS.md: inference pools)", "2025-10"),
    "consolidate_after": Pin("1h", "project assumption: keep an idle warm GPU node an hour", "2025-10"),
    "expire_after": Pin("720h", "project assumption: rotate GPU nodes at most every 30 days", "2025-10"),
    "budget_nodes": Pin("10%", "Karpenter v1 docs, Disruption budgets (default nodes: 10%)", "2025-10"),
}

# Control-plane log types EKS offers (all are enabled).
EKS_LOG_TYPES = Pin("api,audit,authenticator,controllerManager,scheduler", "EKS API LogType enum", "2025-10")

# Managed policies a GPU worker node needs (nodes pull images, join the
# cluster, and are reachable through SSM instead of SSH).
NODE_MANAGED_POLICIES = Pin(
    "AmazonEKSWorkerNodePolicy,AmazonEKS_CNI_Policy,AmazonEC2ContainerRegistryPullOnly,AmazonSSMManagedInstanceCore",
    "EKS User Guide, Amazon EKS node IAM role", "2025-10")

# Metadata hop limit 1: IMDSv2 responses never reach a pod (one hop beyond the
# node), so no pod can take the node role's credentials. Pods get credentials
# from EKS Pod Identity, which injects no region (awsdocs/amazon-eks-user-guide
# pod-id-how-it-works.adoc: only AWS_CONTAINER_CREDENTIALS_FULL_URI and
# AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE): a pod that calls AWS sets AWS_REGION
# or the service's region setting. Karpenter and the AWS Load Balancer
# Controller get it explicitly (components/karpenter.py, alb_bindings.py); the
# EBS CSI driver falls back to the Kubernetes API for its metadata
# (kubernetes-sigs/aws-ebs-csi-driver docs/install.md, "Metadata").
IMDS_HOP_LIMIT = Pin("1", "EKS best practices guide, Security, 'Restrict access to the instance profile assigned to "
                          "the worker node' (hop limit 1); Checkov CKV_AWS_341", "2026-12")

# CPU nodes for cluster services (CoreDNS, Karpenter controller): two on-demand
# nodes so a node loss keeps the controller and DNS up.
SYSTEM_NODES = {
    "instance_types": Pin("m6i.large,m7i.large", "project assumption: 2 vCPU / 8 GiB per system node", "2025-10"),
    "count": Pin("2", "project assumption: survive one node loss", "2025-10"),
    "root_volume_gib": Pin("50", "project assumption: OS + container images of cluster services", "2025-10"),
}

# Helm release timeouts (seconds) for a FIRST install. pulumi-kubernetes'
# helm.v3.Release waits for every object to be ready (skipAwait false) for
# `timeout` seconds, 300 when unset (pulumi/pulumi-kubernetes
# provider/pkg/provider/helm_release.go: defaultTimeoutSeconds = 300, applied
# in setDefaults; Python SDK 4.34.2 Release.timeout); with `atomic` a timed-out
# install is purged and `pulumi up` fails. The releases wait for the system node
# group (nodes have joined), so their time goes to image pulls and webhooks;
# the GPU DaemonSets also wait for GPU nodes that join meanwhile (a p5 boots
# and joins in several minutes).
_HELM_SRC = ("pulumi-kubernetes helm_release.go defaultTimeoutSeconds=300 (too short when nodes join during the "
             "install); project sizing for a first install")
HELM_TIMEOUTS: dict[str, Pin] = {
    "karpenter": Pin("600", _HELM_SRC + ": 2 controller replicas + webhooks on fresh system nodes", "2026-12"),
    "aws-load-balancer-controller": Pin("600", _HELM_SRC + ": 2 replicas + webhook certificate", "2026-12"),
    "nvidia-device-plugin": Pin("900", _HELM_SRC + ": DaemonSet on GPU nodes that may still be joining", "2026-12"),
    "dcgm-exporter": Pin("900", _HELM_SRC + ": DaemonSet on GPU nodes that may still be joining", "2026-12"),
    "aws-efa-k8s-device-plugin": Pin("900", _HELM_SRC + ": DaemonSet on EFA nodes that may still be joining", "2026-12"),
}

# --- GPU capacity: node autoscaling, repair, reservations, node storage (issue 13, issue 12 item 3) ---

# EKS node monitoring agent: sets the node conditions (AcceleratedHardwareReady for NVIDIA XID/DCGM
# faults, KernelReady, NetworkingReady, ...) that EKS managed node group auto repair and Karpenter's
# NodeRepair act on (awsdocs/amazon-eks-user-guide latest/ug/nodes/node-repair.adoc, node-health-nma.adoc).
# The add-on build is the image tag of the agent's chart at aws/eks-node-monitoring-agent v1.7.0
# (charts/eks-node-monitoring-agent/values.yaml nodeAgent.image.tag, tagged 2026-08-04); confirm with
# `aws eks describe-addon-versions --addon-name eks-node-monitoring-agent --kubernetes-version 1.33`.
NODE_MONITORING_AGENT = "eks-node-monitoring-agent"
NODE_MONITORING_AGENT_VERSIONS: dict[str, Pin] = {
    "1.33": Pin("v1.7.0-eksbuild.1", "aws/eks-node-monitoring-agent v1.7.0 chart values.yaml nodeAgent.image.tag; "
                + _ADDON_SRC.format(k8s="1.33"), "2026-12"),
}

# Cluster Autoscaler: scales the managed node groups (EKS does not; Karpenter does not touch them).
# The chart 9.51.0 is the last chart whose appVersion is 1.33 (kubernetes/autoscaler tag
# cluster-autoscaler-chart-9.51.0, Chart.yaml appVersion 1.33.0); the image follows the cluster's
# Kubernetes minor, as the autoscaler's README asks, at its newest patch (tag cluster-autoscaler-1.33.6,
# 2026-07-22). Its AWS provider vendors aws-sdk-go 1.48.7 (cloudprovider/aws/aws-sdk-go/aws/version.go),
# which reads EKS Pod Identity credentials (container credentials provider, >= 1.47.11).
CLUSTER_AUTOSCALER_CHART = ChartPin(
    chart="cluster-autoscaler", version="9.51.0", repository="https://kubernetes.github.io/autoscaler",
    source="kubernetes/autoscaler tag cluster-autoscaler-chart-9.51.0 (charts/cluster-autoscaler)", as_of="2026-12")
CLUSTER_AUTOSCALER_IMAGE: dict[str, Pin] = {
    "1.33": Pin("v1.33.6", "kubernetes/autoscaler tag cluster-autoscaler-1.33.6 (registry.k8s.io/autoscaling/"
                            "cluster-autoscaler)", "2026-12"),
}
HELM_TIMEOUTS["cluster-autoscaler"] = Pin("600", _HELM_SRC + ": 1 controller replica on fresh system nodes", "2026-12")
# Flags (kubernetes/autoscaler cluster-autoscaler-1.33.6 config/flags/flags.go for the defaults).
CLUSTER_AUTOSCALER_SETTINGS: dict[str, Pin] = {
    # Default true: a node whose pods use an emptyDir (vLLM's /dev/shm and caches) is never scaled
    # down, so an idle p5 would run forever.
    "skip_nodes_with_local_storage": Pin("false", "flags.go skip-nodes-with-local-storage (default true)", "2026-12"),
    # Same warm-node policy as Karpenter's consolidateAfter: a 70B replica takes minutes to load.
    "scale_down_unneeded_time": Pin("1h", "project assumption, as KARPENTER_DISRUPTION consolidate_after", "2026-12"),
    # A p5.48xlarge boots, joins and gets its GPUs advertised in well over the 15m default on a bad day.
    "max_node_provision_time": Pin("25m", "flags.go max-node-provision-time (default 15m); project sizing for p5",
                                   "2026-12"),
    "expander": Pin("least-waste", "flags.go expander (default least-waste)", "2026-12"),
    "balance_similar_node_groups": Pin("true", "EKS user guide managed-node-groups.adoc: balance similar node "
                                               "groups", "2026-12"),
}

# The label the Cluster Autoscaler's AWS provider treats as "this node has a GPU" (cloudprovider/aws
# aws_cloud_provider.go GPULabel at 1.33.6): a node carrying it whose nvidia.com/gpu is not yet
# allocatable (device plugin starting) counts as not ready, so CA does not add a second node for the
# same pending pod (cloudprovider/aws/README.md, "Special note on GPU instances").
CA_GPU_LABEL = "k8s.amazonaws.com/accelerator"

# EKS managed node group auto repair (pulumi-aws 7.51.1 eks.NodeGroup node_repair_config; EKS API
# NodeRepairConfig). Without thresholds EKS stops repairing when more than 20% of a group with more
# than five nodes is unhealthy (node-repair.adoc); GPU groups are small, so repair one node at a time.
NODE_REPAIR = {
    "max_parallel_nodes_repaired_count": Pin("1", "project assumption: replace one GPU node at a time (a 70B "
                                                  "replica reloads for minutes)", "2026-12"),
}

# Root volumes of GPU nodes: gp3 with explicit throughput and IOPS. gp3 defaults to 125 MiB/s and
# 3,000 IOPS; botocore's ec2 model (LaunchTemplateEbsBlockDeviceRequest.Throughput/Iops) allows
# 125-2,000 MiB/s and 3,000-80,000 IOPS for gp3. With the instance store carrying kubelet, containerd
# and the caches, the root volume still holds the AMI and whatever spills; images on nodes without
# instance store pull through it.
GPU_ROOT_VOLUME = {
    "throughput_mibs": Pin("1000", "botocore ec2 LaunchTemplateEbsBlockDeviceRequest.Throughput (gp3 125-2000)",
                           "2026-12"),
    "iops": Pin("8000", "botocore ec2 LaunchTemplateEbsBlockDeviceRequest.Iops (gp3 3000-80000); EBS allows 0.25 "
                        "MiB/s per provisioned IOPS, so 1000 MiB/s needs at least 4000", "2026-12"),
}

# Where the node-local NVMe array is mounted. AL2023 nodeadm (`spec.instance.localStorage.strategy:
# RAID0`, awslabs/amazon-eks-ami v20251103 nodeadm/api/v1alpha1/nodeconfig_types.go, mountPath default
# /mnt/k8s-disks/) and Karpenter's `instanceStorePolicy: RAID0` (which writes that NodeConfig, Karpenter
# v1.14.1 docs concepts/nodeclasses.md) both run setup-local-disks, which mounts the array at
# `<mountPath>/0` and bind-mounts /var/lib/kubelet, /var/lib/containerd and /var/log/pods onto it
# (templates/shared/runtime/bin/setup-local-disks). The ECS GPU instances mount theirs at the same path.
NODE_LOCAL_STORAGE_MOUNT = "/mnt/k8s-disks/0"
# The node-level model/compile cache (hostPath on EKS, host volume on ECS): on the NVMe array where
# the node has instance store, else on the root volume. It outlives pods, so a restarted replica on
# the same node finds its weights and torch.compile/CUDA graph caches. Nodes whose array exists carry
# LOCAL_NVME_LABEL=raid0 (node label on EKS; ECS container instance attribute of the same name).
NODE_CACHE_HOST_PATH = NODE_LOCAL_STORAGE_MOUNT + "/llmserving-cache"
# The node label of GPU nodes whose boot script creates NODE_CACHE_HOST_PATH (set on the Karpenter NodePool
# template and the managed node groups); the serving pods that mount the cache select it. On an existing
# Karpenter cluster a userData change only drifts the running nodes (karpenter-provider-aws v1.14.1
# pkg/apis/v1/ec2nodeclass.go hashes userData; they run until replaced) while Pulumi rolls the Deployment at
# once: without the selector a new pod could land on an old node and hang on "hostPath type check failed".
# Karpenter puts template labels on nodes at launch only (a template change drifts them), so old nodes never
# carry it. Bump the value whenever the pods need something a new boot script adds to the directory.
NODE_CACHE_LABEL = ("llmserving.io/node-cache", "v1")
LOCAL_NVME_LABEL = "llmserving.io/local-nvme"

# NVIDIA DCGM exporter counters: the exporter chart's default list at the pinned chart (NVIDIA/dcgm-exporter
# tag 4.4.1-4.6.0, etc/default-counters.csv and deployment/templates/metrics-configmap.yaml) exports
# DCGM_FI_DEV_XID_ERRORS but leaves every ECC and retired-page counter commented out. These are added
# (chart value `customMetrics` replaces the list) so the ECC alerts have something to read.
DCGM_EXTRA_COUNTERS = Pin(
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL, counter, Total number of single-bit volatile ECC errors.\n"
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL, counter, Total number of double-bit volatile ECC errors.\n"
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL, counter, Total number of single-bit persistent ECC errors.\n"
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL, counter, Total number of double-bit persistent ECC errors.\n"
    "DCGM_FI_DEV_RETIRED_DBE, counter, Total number of retired pages due to double-bit errors.\n"
    "DCGM_FI_DEV_RETIRED_PENDING, counter, Total number of pages pending retirement.",
    "NVIDIA/dcgm-exporter 4.4.1-4.6.0 etc/default-counters.csv (commented-out ECC and retired-page fields)",
    "2026-12")
