"""GPU EKS cluster: the control plane, its add-ons and a Kubernetes provider.

The control plane is a `pulumi_eks.Cluster` with no default node group (GPU
capacity is declared separately as managed node groups and Karpenter pools,
so policies see it), API authentication mode with access entries, every
control-plane log type, and secrets envelope-encrypted with a customer KMS
key. The endpoint is private; a public endpoint is only allowed restricted to
listed CIDRs. The managed add-ons (VPC CNI, CoreDNS, kube-proxy, the Pod
Identity agent and the EBS CSI driver) are `aws.eks.Addon` resources with
pinned versions, so an upgrade is a reviewed diff. The cluster is protected:
replacing it would drop every workload.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from components.errors import ArgsError, out_of_range
from components.iam_trust import ec2_trust, pod_identity_trust

LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
REQUIRED_ADDONS = ("vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver")
# DaemonSets every node needs before it runs pods, vs Deployments that need nodes to run on
# (terraform-aws-modules/terraform-aws-eks `before_compute` does the same split).
ADDONS_BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")
ADDONS_AFTER_NODES = ("coredns", "aws-ebs-csi-driver")
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
# EKS node monitoring agent: the node conditions node auto repair acts on (EKS user guide node-repair.adoc).
NODE_MONITORING_AGENT = "eks-node-monitoring-agent"
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


@dataclass(frozen=True)
class EksClusterArgs:
    cluster_name: str
    kubernetes_version: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: list
    # add-on name -> pinned version (eksbuild)
    addon_versions: dict[str, str]
    # Where the cluster lives: its ARN scopes the Pod Identity trust of the EBS CSI role.
    region: str = ""
    account_id: str = ""
    partition: str = "aws"
    endpoint_public_access: bool = False
    public_access_cidrs: list[str] = field(default_factory=list)
    # Sources that reach the private endpoint (HTTPS on the cluster security
    # group): a deployer in the VPC, a peered network or a VPN.
    deployer_cidrs: list[str] = field(default_factory=list)
    deployer_security_group_ids: list = field(default_factory=list)
    log_types: tuple[str, ...] = LOG_TYPES
    admin_role_arns: list[str] = field(default_factory=list)
    # CPU nodes for cluster services (CoreDNS, Karpenter, device-plugin
    # controllers); GPU capacity is never declared here.
    system_instance_types: list[str] = field(default_factory=lambda: ["m6i.large"])
    system_nodes: int = 2
    system_root_volume_gib: int = 50
    node_policy_arns: list[str] = field(default_factory=list)
    # 1: pods must not reach IMDS (node credentials); Pod Identity serves them.
    imds_hop_limit: int = 1
    protect: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    # The EKS node monitoring agent add-on (None: not installed) and the tolerations its DCGM host
    # engine DaemonSet needs to reach tainted GPU nodes (the add-on's agent DaemonSet tolerates every
    # taint already; its dcgmAgent has none by default: aws/eks-node-monitoring-agent v1.7.0
    # charts/eks-node-monitoring-agent/values.yaml, configuration.schema.json DCGMAgent.tolerations).
    node_monitoring_agent_version: Optional[str] = None
    gpu_tolerations: list[dict] = field(default_factory=list)


def validate_eks_cluster_args(args: EksClusterArgs) -> None:
    p: list[str] = []
    if not args.cluster_name or len(args.cluster_name) > 100:
        p.append(f"cluster_name: got {args.cluster_name!r}; must be 1-100 characters")
    if not re.match(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", args.region):
        p.append(f"region: got {args.region!r}; the cluster's AWS region, e.g. us-east-1")
    if not (args.account_id.isdigit() and len(args.account_id) == 12):
        p.append(f"account_id: got {args.account_id!r}; must be a 12-digit AWS account id")
    if not args.private_subnet_ids or len(args.private_subnet_ids) < 2:
        p.append(f"private_subnet_ids: got {len(args.private_subnet_ids or [])}; EKS needs subnets in at least 2 zones")
    unknown_logs = [t for t in args.log_types if t not in LOG_TYPES]
    if unknown_logs:
        p.append(f"log_types: got {unknown_logs}; allowed: {', '.join(LOG_TYPES)}")
    missing_logs = [t for t in LOG_TYPES if t not in args.log_types]
    if missing_logs:
        p.append(f"log_types: missing {missing_logs}; every control-plane log type must be enabled")
    missing = [a for a in REQUIRED_ADDONS if not args.addon_versions.get(a)]
    if missing:
        p.append(f"addon_versions: no pinned version for {', '.join(missing)}; required add-ons: {', '.join(REQUIRED_ADDONS)}")
    if args.endpoint_public_access:
        if not args.public_access_cidrs:
            p.append("public_access_cidrs: got []; a public API endpoint must be restricted to listed CIDRs")
        for c in args.public_access_cidrs:
            if c.endswith("/0"):
                p.append(f"public_access_cidrs: got {c!r}; the API must not be open to the internet")
    elif args.public_access_cidrs:
        p.append(f"public_access_cidrs: got {args.public_access_cidrs}; set endpoint_public_access to use them")
    for c in args.deployer_cidrs:
        try:
            if ipaddress.ip_network(c).prefixlen == 0:
                p.append(f"deployer_cidrs: got {c!r}; the API must not admit every address")
        except ValueError:
            p.append(f"deployer_cidrs: got {c!r}; must be a CIDR")
    if not 1 <= args.system_nodes <= 10:
        p.append(f"system_nodes: got {args.system_nodes}; allowed 1-10 (cluster services only)")
    p += out_of_range("system_root_volume_gib", args.system_root_volume_gib, 20, 1000)
    if not args.system_instance_types:
        p.append("system_instance_types: got []; list at least one instance type for cluster services")
    if not args.node_policy_arns:
        p.append("node_policy_arns: got []; system nodes need the EKS worker-node policies")
    for arn in args.admin_role_arns:
        if not arn.startswith("arn:aws") or ":role/" not in arn:
            p.append(f"admin_role_arns: got {arn!r}; must be an IAM role ARN")
    v = args.node_monitoring_agent_version
    if v is not None and not re.match(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$", v):
        p.append(f"node_monitoring_agent_version: got {v!r}; an EKS add-on version such as v1.7.0-eksbuild.1")
    if p:
        raise ArgsError("EksCluster", p)


class EksCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    # The CPU node group for cluster services; depend on it before installing
    # anything that must schedule a pod (Helm releases wait for ready pods).
    system_node_group: aws.eks.NodeGroup
    addons: dict[str, aws.eks.Addon]
    cluster_security_group_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: EksClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_eks_cluster_args(args)
        super().__init__("llmserving:eks:EksCluster", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)

        key = aws.kms.Key(f"{name}-secrets", description=f"EKS secrets encryption for {args.cluster_name}",
                          enable_key_rotation=True, deletion_window_in_days=30, tags=args.tags,
                          # Deleting it makes every Kubernetes secret unreadable.
                          opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        aws.kms.Alias(f"{name}-secrets", name=f"alias/eks/{args.cluster_name}", target_key_id=key.key_id, opts=child)

        access_entries = {
            f"admin-{i}": eks.AccessEntryArgs(
                principal_arn=arn,
                access_policies={"cluster-admin": eks.AccessPolicyAssociationArgs(
                    policy_arn=CLUSTER_ADMIN_POLICY, access_scope={"type": "cluster"})})
            for i, arn in enumerate(args.admin_role_arns)
        }
        cluster = eks.Cluster(
            f"{name}-cluster",
            name=args.cluster_name,
            version=args.kubernetes_version,
            vpc_id=args.vpc_id,
            private_subnet_ids=args.private_subnet_ids,
            node_associate_public_ip_address=False,
            skip_default_node_group=True,
            skip_default_security_groups=True,
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=access_entries or None,
            create_oidc_provider=False,
            enabled_cluster_log_types=list(args.log_types),
            encryption_config_key_arn=key.arn,
            endpoint_private_access=True,
            endpoint_public_access=args.endpoint_public_access,
            public_access_cidrs=list(args.public_access_cidrs) or None,
            # Add-ons are managed below as aws.eks.Addon with pinned versions.
            bootstrap_self_managed_addons=False,
            use_default_vpc_cni=True,
            coredns_addon_options={"enabled": False},
            kube_proxy_addon_options={"enabled": False},
            deletion_protection=args.protect,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.cluster_name = cluster.cluster_security_group_id.apply(lambda _: args.cluster_name)
        self.cluster_security_group_id = cluster.cluster_security_group_id
        self.kubeconfig = cluster.kubeconfig_json

        # The cluster security group admits only itself (EKS user guide, "Amazon EKS
        # security group requirements"): a deployer outside it cannot reach the
        # private endpoint's HTTPS without these rules.
        for i, cidr in enumerate(args.deployer_cidrs):
            ip = {"cidr_ipv6": cidr} if ipaddress.ip_network(cidr).version == 6 else {"cidr_ipv4": cidr}
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-deployer-cidr-{i}", security_group_id=cluster.cluster_security_group_id, ip_protocol="tcp",
                from_port=443, to_port=443, description=f"cluster API from deployer network {cidr}", opts=child, **ip)
        for i, group in enumerate(args.deployer_security_group_ids):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-deployer-sg-{i}", security_group_id=cluster.cluster_security_group_id, ip_protocol="tcp",
                from_port=443, to_port=443, referenced_security_group_id=group,
                description="cluster API from the deployer security group", opts=child)

        # Karpenter finds the node security group by its discovery tag.
        aws.ec2.Tag(f"{name}-sg-discovery", resource_id=cluster.cluster_security_group_id,
                    key="karpenter.sh/discovery", value=args.cluster_name, opts=child)

        ebs_role = aws.iam.Role(
            f"{name}-ebs-csi", name=f"{args.cluster_name}-ebs-csi"[:64],
            assume_role_policy=json.dumps(pod_identity_trust(
                f"arn:{args.partition}:eks:{args.region}:{args.account_id}:cluster/{args.cluster_name}",
                "kube-system", EBS_CSI_SERVICE_ACCOUNT)),
            tags=args.tags, opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-ebs-csi", role=ebs_role.name,
                                     policy_arn="arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
                                     opts=child)

        def addon(addon_name: str, depends_on: list) -> aws.eks.Addon:
            extra = {}
            if addon_name == "aws-ebs-csi-driver":
                extra["pod_identity_associations"] = [{"role_arn": ebs_role.arn, "service_account": EBS_CSI_SERVICE_ACCOUNT}]
            if addon_name == "vpc-cni":
                # The add-on ships with NetworkPolicy enforcement off; without it
                # the serving NetworkPolicies would be decoration.
                extra["configuration_values"] = json.dumps({"enableNetworkPolicy": "true"})
            return aws.eks.Addon(f"{name}-{addon_name}", cluster_name=self.cluster_name, addon_name=addon_name,
                                 addon_version=args.addon_versions[addon_name], resolve_conflicts_on_create="OVERWRITE",
                                 resolve_conflicts_on_update="PRESERVE", tags=args.tags,
                                 opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on), **extra)

        # Node-level add-ons go first: a node without the CNI never turns Ready,
        # and pods started before the Pod Identity agent get no credentials.
        self.addons = {a: addon(a, [cluster]) for a in ADDONS_BEFORE_NODES}
        if args.node_monitoring_agent_version is not None:
            # A DaemonSet like the CNI: installed before any node, so every GPU node is watched from boot.
            self.addons[NODE_MONITORING_AGENT] = aws.eks.Addon(
                f"{name}-{NODE_MONITORING_AGENT}", cluster_name=self.cluster_name, addon_name=NODE_MONITORING_AGENT,
                addon_version=args.node_monitoring_agent_version, resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="PRESERVE",
                configuration_values=json.dumps({"dcgmAgent": {"tolerations": list(args.gpu_tolerations)}},
                                                sort_keys=True),
                tags=args.tags, opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster]))

        node_role = aws.iam.Role(f"{name}-system-node", name=f"{args.cluster_name}-system-node"[:64],
                                 assume_role_policy=json.dumps(ec2_trust()), tags=args.tags, opts=child)
        attachments = [aws.iam.RolePolicyAttachment(f"{name}-system-node-{arn.rsplit('/', 1)[-1]}", role=node_role.name,
                                                    policy_arn=arn, opts=child) for arn in args.node_policy_arns]
        lt = aws.ec2.LaunchTemplate(
            f"{name}-system", name=f"{args.cluster_name}-system", update_default_version=True,
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": args.imds_hop_limit},
            block_device_mappings=[{"device_name": "/dev/xvda", "ebs": {
                "volume_size": args.system_root_volume_gib, "volume_type": "gp3", "encrypted": "true", "delete_on_termination": "true"}}],
            tag_specifications=[{"resource_type": t, "tags": {**args.tags, "Name": f"{args.cluster_name}-system"}}
                                for t in ("instance", "volume")],
            tags=args.tags, opts=child)
        # Creating a managed node group returns once its nodes have joined, so
        # whatever depends on it can schedule pods on CPU nodes.
        self.system_node_group = aws.eks.NodeGroup(
            f"{name}-system", cluster_name=self.cluster_name, node_group_name="system", node_role_arn=node_role.arn,
            subnet_ids=args.private_subnet_ids, instance_types=list(args.system_instance_types),
            ami_type="AL2023_x86_64_STANDARD", capacity_type="ON_DEMAND",
            scaling_config={"min_size": args.system_nodes, "desired_size": args.system_nodes,
                            "max_size": args.system_nodes + 1},
            update_config={"max_unavailable": 1},
            launch_template={"id": lt.id, "version": lt.latest_version.apply(str)},
            labels={"llmserving.io/role": "system"}, tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster, *attachments, *self.addons.values()]))
        # Add-ons that run Deployments (CoreDNS, the EBS CSI controller) need
        # nodes: created before any exist they stay DEGRADED and the create,
        # which waits for ACTIVE, fails.
        self.addons.update({a: addon(a, [cluster, self.system_node_group]) for a in ADDONS_AFTER_NODES})

        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=cluster.kubeconfig_json,
                                     enable_server_side_apply=True, opts=child)
        self.register_outputs({
            "clusterName": self.cluster_name,
            "clusterSecurityGroupId": self.cluster_security_group_id,
            "kmsKeyArn": key.arn,
        })
