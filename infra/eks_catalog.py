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
