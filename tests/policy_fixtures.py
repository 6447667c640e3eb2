"""Synthetic resources for the policy tests, shaped as the engine sends them (camelCase inputs,
Kubernetes objects as apiVersion/kind/metadata/spec), and a shared client of the real pack.

`good_world()` is a stack that passes every rule under the shipped prod policy config: an EKS
control plane, a p5 managed node group and a g5 Karpenter NodePool, an ECS GPU auto scaling
group, the S3 adapter store with its log bucket, an ALB with WAF, a budget, vLLM workloads
(Deployment and LeaderWorkerSet) with PDBs and a KEDA ScaledObject. Each rule's failing
fixture mutates one field of it.
"""

from __future__ import annotations

import copy
import base64
import json
from pathlib import Path
from typing import Any, Optional

from infra.analyzer import PolicyPackProcess, Violation
from infra.mockcloud import Registration

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "policies"
TAGS = {"project": "llmserving", "stack": "prod", "environment": "prod", "tier": "medium"}
DELETE = object()


# The date the EKS version rule judges fixtures against (its release calendar is dated; see
# policies/rules/reliability.py EKS_VERSIONS): pinned, so the tests do not change verdicts as days pass.
AS_OF = "2026-12-01"


def shipped_config(stack: str) -> dict:
    """A stack's shipped policy config, with the EKS version rule's date pinned to AS_OF."""
    cfg = json.loads((PACK / "config" / f"{stack}.json").read_text())
    entry = cfg.get("eks-version-supported")
    level = entry if isinstance(entry, str) else (entry or {}).get("enforcementLevel")
    cfg["eks-version-supported"] = {"asOf": AS_OF, **({"enforcementLevel": level} if level else {})}
    return cfg


def urn(typ: str, name: str) -> str:
    return f"urn:pulumi:prod::llmserving::{typ}::{name}"


def reg(typ: str, name: str, inputs: dict, *, protect: bool = False, custom: bool = True,
        deps: Optional[dict[str, list[str]]] = None) -> Registration:
    return Registration(urn=urn(typ, name), type=typ, name=name, parent=None, custom=custom, protect=protect,
                        provider="", dependencies=sorted({u for v in (deps or {}).values() for u in v}),
                        property_dependencies=deps or {}, delete_before_replace=False, ignore_changes=[],
                        inputs=inputs)


def _k8s(api: str, kind: str, name: str, spec: dict, labels: Optional[dict] = None, ns: str = "llmserving") -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def _probe(path: str = "/health", failures: int = 60) -> dict:
    return {"httpGet": {"path": path, "port": 8000}, "periodSeconds": 10, "failureThreshold": failures}


# As components/vllm_workload.py renders them: non-root, no privilege escalation, every capability dropped.
NON_ROOT = {"privileged": False, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# The engine of an EFA group: uid 0 with only IPC_LOCK (components/vllm_workload.py engine_security).
EFA_ENGINE = {"privileged": False, "allowPrivilegeEscalation": False, "runAsNonRoot": False, "runAsUser": 0,
              "capabilities": {"drop": ["ALL"], "add": ["IPC_LOCK"]}}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}}


def vllm_container(name: str, model: str, tp: int, pp: int = 1, gpus: Optional[int] = None, *,
                   served: Optional[str] = None, startup_failures: int = 60, efa: int = 0) -> dict:
    args = ["--model", model, "--tensor-parallel-size", str(tp)]
    if served:
        args += ["--served-model-name", served]
    if pp > 1:
        args += ["--pipeline-parallel-size", str(pp), "--distributed-executor-backend", "ray"]
    gpus = tp if gpus is None else gpus
    extra = {"vpc.amazonaws.com/efa": str(efa)} if efa else {}
    return {
        "name": name, "image": "vllm/vllm-openai:v0.11.1", "command": ["vllm", "serve"], "args": args,
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"},
                {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "vllm-api-key", "key": "key"}}}],
        "resources": {"requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": str(gpus), **extra},
                      "limits": {"memory": "64Gi", "nvidia.com/gpu": str(gpus), **extra}},
        "startupProbe": _probe(failures=startup_failures), "readinessProbe": _probe(failures=3),
        "livenessProbe": _probe(failures=3),
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
        "securityContext": dict(EFA_ENGINE if efa else NON_ROOT),
    }


def _pod_spec(container: dict, pool: str) -> dict:
    return {
        "containers": [container],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}],
        "nodeSelector": {"llmserving.io/pool": pool},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
        "terminationGracePeriodSeconds": 120,
        "securityContext": dict(POD_SECURITY),
        "automountServiceAccountToken": False,
    }


ACCOUNT = "123456789012"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ADAPTERS = "llmserving-prod-adapters"
ADAPTER_KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/adapters-key"
CLUSTER_ARN = f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/llmserving-prod"
ADMIN_PATHS = ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]


def _doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _service_trust(service: str) -> str:
    return _doc({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})


def _pod_identity_trust(namespace: str, sa: str) -> dict:
    return {"Sid": "EksPodIdentity", "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {"aws:RequestTag/eks-cluster-arn": CLUSTER_ARN,
                                           "aws:RequestTag/kubernetes-namespace": namespace,
                                           "aws:RequestTag/kubernetes-service-account": sa}}}


def _adapter_iam(add) -> None:
    """The adapter store's reader and writer roles, as components/adapter_store.py renders them."""
    bucket_arn = f"arn:aws:s3:::{ADAPTERS}"
    reader = reg("aws:iam/role:Role", "adapters-reader", {
        "name": f"{ADAPTERS}-reader", "tags": TAGS,
        "assumeRolePolicy": _doc(
            {"Sid": "EcsTasks", "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
             "Action": ["sts:AssumeRole", "sts:TagSession"], "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}},
            _pod_identity_trust("llmserving", "vllm-lora"))})
    add(reader)
    add(reg("aws:iam/rolePolicy:RolePolicy", "adapters-reader-policy", {"role": f"{ADAPTERS}-reader", "policy": _doc(
        {"Sid": "ReadAdapters", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": f"{bucket_arn}/tenants/*"},
        {"Sid": "ListAdapters", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": ["tenants/*"]}}},
        {"Sid": "DecryptAdapters", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": ADAPTER_KEY_ARN})},
        deps={"role": [reader.urn]}))
    writer = reg("aws:iam/role:Role", "adapters-writer", {
        "name": f"{ADAPTERS}-writer", "maxSessionDuration": 3600, "tags": TAGS,
        "assumeRolePolicy": _doc({
            "Sid": "TaggedTenantSessionsOnly", "Effect": "Allow", "Principal": {"AWS": [ROOT]},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"Null": {"aws:RequestTag/tenant": "false"},
                          "ForAllValues:StringEquals": {"aws:TagKeys": ["tenant"]},
                          "StringEquals": {"aws:RequestTag/tenant": "${aws:PrincipalTag/tenant}"}}})})
    add(writer)
    own = "tenants/${aws:PrincipalTag/tenant}/"
    tagged = {"Null": {"aws:PrincipalTag/tenant": "false"}}
    add(reg("aws:iam/rolePolicy:RolePolicy", "adapters-writer-policy", {"role": f"{ADAPTERS}-writer", "policy": _doc(
        {"Sid": "OwnPrefixObjects", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject",
                    "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
         "Resource": f"{bucket_arn}/{own}*", "Condition": tagged},
        {"Sid": "OwnPrefixListing", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {**tagged, "StringLike": {"s3:prefix": [own, f"{own}*"]}}},
        {"Sid": "EncryptViaS3", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
         "Resource": ADAPTER_KEY_ARN,
         "Condition": {**tagged, "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}})},
        deps={"role": [writer.urn]}))
    add(reg("aws:kms/key:Key", "adapters-key", {
        "enableKeyRotation": True, "tags": TAGS, "policy": _doc({
            "Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*",
            "Resource": "*"})}, protect=True))


def _node_iam(add) -> None:
    """A GPU node role with the EKS worker policies, and Karpenter's controller role (PassRole scoped)."""
    node = reg("aws:iam/role:Role", "p5-node", {"name": "llmserving-prod-p5-node",
                                                "assumeRolePolicy": _service_trust("ec2.amazonaws.com"), "tags": TAGS})
    add(node)
    for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryPullOnly",
                   "AmazonSSMManagedInstanceCore"):
        add(reg("aws:iam/rolePolicyAttachment:RolePolicyAttachment", f"p5-node-{policy}", {
            "role": "llmserving-prod-p5-node", "policyArn": f"arn:aws:iam::aws:policy/{policy}"}, deps={"role": [node.urn]}))
    controller = reg("aws:iam/role:Role", "karpenter-controller", {
        "name": "llmserving-prod-karpenter-controller", "tags": TAGS,
        "assumeRolePolicy": _doc(_pod_identity_trust("kube-system", "karpenter"))})
    add(controller)
    add(reg("aws:iam/rolePolicy:RolePolicy", "karpenter-controller-iam", {
        "role": "llmserving-prod-karpenter-controller", "policy": _doc(
            {"Sid": "AllowPassingInstanceRole", "Effect": "Allow", "Action": "iam:PassRole",
             "Resource": f"arn:aws:iam::{ACCOUNT}:role/llmserving-prod-karpenter-node",
             "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com"]}}},
            {"Sid": "AllowRegionalReadActions", "Effect": "Allow", "Resource": "*",
             "Action": ["ec2:DescribeInstances", "ec2:DescribeSubnets"],
             "Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}})},
        deps={"role": [controller.urn]}))


def good_world() -> list[Registration]:
    R: list[Registration] = []
    add = R.append
    vpc = reg("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.50.0.0/16", "tags": TAGS})
    add(vpc)
    add(reg("aws:ec2/flowLog:FlowLog", "vpc-flow", {"trafficType": "ALL", "tags": TAGS}, deps={"vpcId": [vpc.urn]}))
    private = []
    for i, z in enumerate("abc"):
        sub = reg("aws:ec2/subnet:Subnet", f"private-{z}", {
            "cidrBlock": f"10.50.{i}.0/24", "availabilityZone": f"us-east-1{z}", "mapPublicIpOnLaunch": False,
            "tags": {**TAGS, "kubernetes.io/role/internal-elb": "1", "karpenter.sh/discovery": "llmserving-prod"}},
            deps={"vpcId": [vpc.urn]})
        private.append(sub)
        add(sub)
    # Public subnets (the ALB's), routed to the internet gateway, as components/network.py builds them.
    igw = reg("aws:ec2/internetGateway:InternetGateway", "igw", {"tags": TAGS}, deps={"vpcId": [vpc.urn]})
    add(igw)
    public_rt = reg("aws:ec2/routeTable:RouteTable", "public-rt", {
        "routes": [{"cidrBlock": "0.0.0.0/0", "gatewayId": "igw-0123"}], "tags": TAGS},
        deps={"routes": [igw.urn], "vpcId": [vpc.urn]})
    add(public_rt)
    for i, z in enumerate("abc"):
        sub = reg("aws:ec2/subnet:Subnet", f"public-{z}", {
            "cidrBlock": f"10.50.{208 + 16 * i}.0/20", "availabilityZone": f"us-east-1{z}", "mapPublicIpOnLaunch": False,
            "tags": {**TAGS, "kubernetes.io/role/elb": "1"}}, deps={"vpcId": [vpc.urn]})
        add(sub)
        add(reg("aws:ec2/routeTableAssociation:RouteTableAssociation", f"public-{z}-rta", {
            "subnetId": f"subnet-public-{z}", "routeTableId": "rtb-public"},
            deps={"subnetId": [sub.urn], "routeTableId": [public_rt.urn]}))
    for z, sub in zip("abc", private):
        add(reg("aws:ec2/routeTableAssociation:RouteTableAssociation", f"private-{z}-rta", {
            "subnetId": f"subnet-private-{z}", "routeTableId": f"rtb-private-{z}"}, deps={"subnetId": [sub.urn]}))
    private_deps = [s.urn for s in private]
    add(reg("aws:cloudwatch/logGroup:LogGroup", "cluster-logs", {"retentionInDays": 90, "tags": TAGS}))
    key = reg("aws:kms/key:Key", "cluster-key", {"enableKeyRotation": True, "tags": TAGS}, protect=True)
    add(key)
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/cluster-key"
    add(reg("aws:eks/cluster:Cluster", "cluster", {
        "name": "llmserving-prod", "version": "1.35",
        "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": False, "subnetIds": ["subnet-a"]},
        "enabledClusterLogTypes": ["api", "audit", "authenticator", "controllerManager", "scheduler"],
        "encryptionConfig": {"provider": {"keyArn": key_arn}, "resources": ["secrets"]}, "tags": TAGS},
        protect=True, deps={"encryptionConfig": [key.urn]}))
    add(reg("eks:index:Cluster", "eks", {
        "endpointPrivateAccess": True, "endpointPublicAccess": True, "publicAccessCidrs": ["198.51.100.0/24"],
        "enabledClusterLogTypes": ["api", "audit", "authenticator", "controllerManager", "scheduler"],
        "encryptionConfigKeyArn": key_arn, "version": "1.35", "tags": TAGS}, protect=True, custom=False))
    _node_iam(add)
    gpu_lt = reg("aws:ec2/launchTemplate:LaunchTemplate", "p5-lt", {
        "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1, "httpEndpoint": "enabled"},
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true", "volumeSize": 1000}}],
        "tags": TAGS})
    add(gpu_lt)
    add(reg("aws:eks/nodeGroup:NodeGroup", "p5-ondemand", {
        "clusterName": "llmserving-prod", "nodeGroupName": "p5-ondemand", "instanceTypes": ["p5.48xlarge"],
        "capacityType": "ON_DEMAND", "amiType": "AL2023_x86_64_NVIDIA",
        "scalingConfig": {"minSize": 2, "maxSize": 4, "desiredSize": 2},
        "launchTemplate": {"id": "lt-p5", "version": "1"},
        "nodeRoleArn": "arn:aws:iam::123456789012:role/llmserving-prod-p5-node",
        "subnetIds": ["subnet-private-a", "subnet-private-b", "subnet-private-c"],
        "labels": {"llmserving.io/pool": "p5-ondemand"},
        "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}],
        "nodeRepairConfig": {"enabled": True}, "tags": TAGS},
        deps={"launchTemplate": [gpu_lt.urn], "subnetIds": private_deps}))
    # Node repair acts on the conditions the node monitoring agent sets (gpu-node-repair).
    add(reg("aws:eks/addon:Addon", "node-monitoring-agent", {
        "clusterName": "llmserving-prod", "addonName": "eks-node-monitoring-agent",
        "addonVersion": "v1.7.0-eksbuild.1", "tags": TAGS}))
    add(reg("kubernetes:helm.sh/v3:Release", "karpenter", {
        "chart": "karpenter", "version": "1.14.1", "namespace": "kube-system",
        "repositoryOpts": {"repo": "oci://public.ecr.aws/karpenter"},
        "values": {"settings": {"clusterName": "llmserving-prod", "featureGates": {"nodeRepair": True}}}}))
    add(reg("kubernetes:karpenter.sh/v1:NodePool", "g5-lora", _k8s("karpenter.sh/v1", "NodePool", "g5-lora", {
        "template": {
            "metadata": {"labels": {"llmserving.io/pool": "g5-lora"}},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"},
                "requirements": [
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g5.12xlarge", "g5.24xlarge"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]}],
                "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
                "expireAfter": "720h"}},
        "limits": {"nvidia.com/gpu": "40"},
        "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "30m", "budgets": [{"nodes": "10%"}]}},
        ns=None)))
    add(reg("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", "gpu", _k8s("karpenter.k8s.aws/v1", "EC2NodeClass", "gpu", {
        "role": "llmserving-prod-karpenter-node", "amiSelectorTerms": [{"alias": "al2023@v20251103"}],
        "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": "llmserving-prod"}}],
        "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": "llmserving-prod"}}],
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "rootVolume": True,
                                 "ebs": {"encrypted": True, "volumeSize": "300Gi", "volumeType": "gp3"}}],
        "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}},
        ns=None)))
    q = reg("aws:sqs/queue:Queue", "interruptions", {"messageRetentionSeconds": 300, "sqsManagedSseEnabled": True, "tags": TAGS})
    add(q)
    add(reg("aws:cloudwatch/eventRule:EventRule", "spot-interruption", {
        "eventPattern": json.dumps({"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]}),
        "tags": TAGS}))
    ecs_lt = reg("aws:ec2/launchTemplate:LaunchTemplate", "ecs-gpu-lt", {
        "instanceType": "g5.12xlarge", "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
        "imageId": "ami-0123456789abcdef0", "tags": TAGS,
        # The GPU health check that marks a failed instance Unhealthy (components/ecs_gpu_cluster.py).
        "userData": base64.b64encode(b"#!/bin/bash\naws autoscaling set-instance-health --health-status Unhealthy\n"
                                     ).decode()})
    add(ecs_lt)
    # As components/ecs_gpu_cluster.py declares it: instance types as mixed-instances overrides, on-demand.
    add(reg("aws:autoscaling/group:Group", "ecs-gpu", {
        "maxSize": 1, "minSize": 0, "vpcZoneIdentifiers": ["subnet-private-a", "subnet-private-b", "subnet-private-c"],
        "mixedInstancesPolicy": {
            "instancesDistribution": {"onDemandBaseCapacity": 0, "onDemandPercentageAboveBaseCapacity": 100,
                                      "spotAllocationStrategy": "price-capacity-optimized"},
            "launchTemplate": {"launchTemplateSpecification": {"launchTemplateId": "lt-ecs", "version": "$Latest"},
                               "overrides": [{"instanceType": "g5.12xlarge"}]}},
        "tags": [{"key": k, "value": v, "propagateAtLaunch": True} for k, v in TAGS.items()]},
        deps={"mixedInstancesPolicy": [ecs_lt.urn], "vpcZoneIdentifiers": private_deps}))
    task = reg("aws:ecs/taskDefinition:TaskDefinition", "vllm-task", {"family": "vllm", "tags": TAGS, "containerDefinitions": json.dumps([{
        "name": "vllm", "image": "vllm/vllm-openai:v0.11.1",
        "entryPoint": ["vllm", "serve"], "command": ["meta-llama/Llama-3.1-8B-Instruct", "--tensor-parallel-size", "4"],
        "resourceRequirements": [{"type": "GPU", "value": "4"}], "memory": 150000, "memoryReservation": 140000,
        "secrets": [{"name": "VLLM_API_KEY", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:vllm"}],
        "environment": [{"name": "HOME", "value": "/tmp/vllm"}],
        "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost:8000/health || exit 1"]},
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/llmserving/ecs/vllm"}},
        "linuxParameters": {"sharedMemorySize": 16384}, "privileged": False, "user": "1000:1000"}])})
    add(task)
    add(reg("aws:ecs/cluster:Cluster", "ecs", {"name": "llmserving-prod", "tags": TAGS}, protect=True))
    task_sg = reg("aws:ec2/securityGroup:SecurityGroup", "tasks-sg", {
        "description": "vLLM tasks: ALB in, HTTPS out", "tags": TAGS,
        "ingress": [{"protocol": "tcp", "fromPort": 8000, "toPort": 8000, "securityGroups": ["sg-alb"]}],
        "egress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}]},
        deps={"vpcId": [vpc.urn]})
    add(task_sg)
    add(reg("aws:ecs/service:Service", "vllm-svc", {
        "name": "llama-3-1-8b", "desiredCount": 2, "healthCheckGracePeriodSeconds": 1200,
        "deploymentCircuitBreaker": {"enable": True, "rollback": True}, "tags": TAGS,
        "loadBalancers": [{"targetGroupArn": "arn:tg", "containerName": "vllm", "containerPort": 8000}],
        "networkConfiguration": {"assignPublicIp": False, "subnets": ["subnet-private-a", "subnet-private-b"],
                                 "securityGroups": ["sg-tasks"]}},
        deps={"taskDefinition": [task.urn], "networkConfiguration": private_deps[:2] + [task_sg.urn]}))
    add(reg("aws:appautoscaling/target:Target", "vllm-svc-scaling", {
        "serviceNamespace": "ecs", "scalableDimension": "ecs:service:DesiredCount",
        "resourceId": "service/llmserving-prod/llama-3-1-8b", "minCapacity": 2, "maxCapacity": 6, "tags": TAGS}))
    add(reg("aws:budgets/budget:Budget", "gpu-budget", {
        "budgetType": "COST", "timeUnit": "MONTHLY", "limitAmount": "200000", "limitUnit": "USD",
        "costFilters": [{"name": "TagKeyValue", "values": ["user:stack$prod"]}],
        "notifications": [{"comparisonOperator": "GREATER_THAN", "threshold": 80, "thresholdType": "PERCENTAGE",
                           "notificationType": "FORECASTED", "subscriberEmailAddresses": ["finops@example.com"]}],
        "tags": TAGS}))
    # S3: adapter bucket (SSE-KMS) logging into a log bucket (SSE-S3, also the ALB's access-log target).
    for name, algo in (("adapters", "aws:kms"), ("logs", "AES256")):
        b = reg("aws:s3/bucket:Bucket", name, {"bucket": f"llmserving-prod-{name}", "tags": TAGS}, protect=True)
        add(b)
        d = {"bucket": [b.urn]}
        rule: dict[str, Any] = {"applyServerSideEncryptionByDefault": {"sseAlgorithm": algo}}
        if algo == "aws:kms":
            rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] = key_arn
            rule["bucketKeyEnabled"] = True
        add(reg("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", f"{name}-sse",
                {"bucket": f"llmserving-prod-{name}", "rules": [rule]}, deps=d))
        add(reg("aws:s3/bucketVersioning:BucketVersioning", f"{name}-versioning",
                {"bucket": f"llmserving-prod-{name}", "versioningConfiguration": {"status": "Enabled"}}, deps=d))
        add(reg("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{name}-pab", {
            "bucket": f"llmserving-prod-{name}", "blockPublicAcls": True, "blockPublicPolicy": True,
            "ignorePublicAcls": True, "restrictPublicBuckets": True}, deps=d))
        policy = {"Version": "2012-10-17", "Statement": [
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [f"arn:aws:s3:::llmserving-prod-{name}", f"arn:aws:s3:::llmserving-prod-{name}/*"],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Sid": "ServingRole", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/vllm"},
             "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::llmserving-prod-{name}/manifests/*"}]}
        add(reg("aws:s3/bucketPolicy:BucketPolicy", f"{name}-policy",
                {"bucket": f"llmserving-prod-{name}", "policy": json.dumps(policy)}, deps=d))
    add(reg("aws:s3/bucketLogging:BucketLogging", "adapters-logging", {
        "bucket": "llmserving-prod-adapters", "targetBucket": "llmserving-prod-logs", "targetPrefix": "s3/"},
        deps={"bucket": [urn("aws:s3/bucket:Bucket", "adapters")], "targetBucket": [urn("aws:s3/bucket:Bucket", "logs")]}))
    _adapter_iam(add)
    alb_sg = reg("aws:ec2/securityGroup:SecurityGroup", "alb-sg", {
        "description": "ALB: HTTPS (and HTTP redirect) in, model servers out", "tags": TAGS,
        "ingress": [{"protocol": "tcp", "fromPort": p, "toPort": p, "cidrBlocks": ["0.0.0.0/0"]} for p in (443, 80)],
        "egress": [{"protocol": "tcp", "fromPort": 8000, "toPort": 8000, "cidrBlocks": ["10.50.0.0/16"]}]},
        deps={"vpcId": [vpc.urn]})
    add(alb_sg)
    lb = reg("aws:lb/loadBalancer:LoadBalancer", "alb", {
        "loadBalancerType": "application", "internal": False, "dropInvalidHeaderFields": True,
        "securityGroups": ["sg-alb"],
        "enableDeletionProtection": True, "accessLogs": {"bucket": "llmserving-prod-logs", "enabled": True, "prefix": "alb"},
        "tags": TAGS}, deps={"accessLogs": [urn("aws:s3/bucket:Bucket", "logs")], "securityGroups": [alb_sg.urn]})
    add(lb)
    https = reg("aws:lb/listener:Listener", "https", {
        "port": 443, "protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/x",
        "defaultActions": [{"type": "forward", "targetGroupArn": "arn:tg"}], "tags": TAGS}, deps={"loadBalancerArn": [lb.urn]})
    add(https)
    add(reg("aws:lb/listener:Listener", "http", {
        "port": 80, "protocol": "HTTP",
        "defaultActions": [{"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}],
        "tags": TAGS}, deps={"loadBalancerArn": [lb.urn]}))
    # components/load_balancer.py: the admin-path deny first, then one header rule per model.
    add(reg("aws:lb/listenerRule:ListenerRule", "deny-admin", {
        "priority": 1, "conditions": [{"pathPattern": {"values": list(ADMIN_PATHS)}}],
        "actions": [{"type": "fixed-response", "fixedResponse": {"contentType": "application/json", "statusCode": "403",
                                                                 "messageBody": "{}"}}], "tags": TAGS},
        deps={"listenerArn": [https.urn]}))
    add(reg("aws:lb/listenerRule:ListenerRule", "route-8b", {
        "priority": 2, "conditions": [{"httpHeader": {"httpHeaderName": "x-llm-model", "values": ["llama-3-1-8b"]}}],
        "actions": [{"type": "forward", "targetGroupArn": "arn:tg"}], "tags": TAGS}, deps={"listenerArn": [https.urn]}))
    acl = reg("aws:wafv2/webAcl:WebAcl", "waf", {
        "scope": "REGIONAL", "defaultAction": {"allow": {}}, "tags": TAGS,
        "rules": [{"name": "rate", "priority": 1, "action": {"block": {}},
                   "statement": {"rateBasedStatement": {"limit": 2000, "aggregateKeyType": "IP"}},
                   "visibilityConfig": {"cloudwatchMetricsEnabled": True, "metricName": "rate", "sampledRequestsEnabled": True}}]})
    add(acl)
    add(reg("aws:wafv2/webAclAssociation:WebAclAssociation", "waf-alb", {},
            deps={"resourceArn": [lb.urn], "webAclArn": [acl.urn]}))
    # Kubernetes: namespaces, the router's RBAC, vLLM workloads with their Services, PDBs, NetworkPolicies.
    add(reg("kubernetes:core/v1:Namespace", "llmserving-ns", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llmserving", "labels": {"app.kubernetes.io/part-of": "llmserving"}}}))
    add(reg("kubernetes:core/v1:Namespace", "gpu-monitoring-ns", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "gpu-monitoring", "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}))
    add(reg("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "llm-router-rolebinding", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "llm-router", "namespace": "llmserving"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "llm-router"},
        "subjects": [{"kind": "ServiceAccount", "name": "llm-router", "namespace": "llmserving"}]}))
    router_peers = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "llm-router"}}},
                    {"ipBlock": {"cidr": "10.50.208.0/20"}}]
    labels8 = {"app.kubernetes.io/name": "llama-3-1-8b", "llmserving.io/serves": "true"}
    add(reg("kubernetes:apps/v1:Deployment", "llama-3-1-8b", _k8s("apps/v1", "Deployment", "llama-3-1-8b", {
        "replicas": 4, "selector": {"matchLabels": {"app.kubernetes.io/name": "llama-3-1-8b"}},
        "template": {"metadata": {"labels": labels8},
                     "spec": _pod_spec(vllm_container("vllm", "meta-llama/Llama-3.1-8B-Instruct", 4, served="llama-3-1-8b"),
                                       "g5-lora")}})))
    labels70 = {"app.kubernetes.io/name": "llama-3-1-70b"}
    # A multi-node group as components/vllm_workload.py renders it: EFA engines (uid 0, IPC_LOCK only).
    leader = vllm_container("vllm", "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8", 8, pp=2, served="llama-3-1-70b",
                            startup_failures=180, efa=32)
    worker = copy.deepcopy(leader)
    worker.update({"name": "ray-worker", "command": ["/bin/bash", "-c"],
                   "args": ["ray start --block --address=$(LWS_LEADER_ADDRESS):6379"]})
    for k in ("startupProbe", "readinessProbe", "livenessProbe"):
        worker.pop(k)
    add(reg("kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet", "llama-3-1-70b",
            _k8s("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "llama-3-1-70b", {
                "replicas": 2,
                "leaderWorkerTemplate": {
                    "size": 2, "restartPolicy": "RecreateGroupOnPodRestart",
                    "leaderTemplate": {"metadata": {"labels": {**labels70, "llmserving.io/serves": "true"}},
                                       "spec": _pod_spec(leader, "p5-ondemand")},
                    "workerTemplate": {"metadata": {"labels": labels70}, "spec": _pod_spec(worker, "p5-ondemand")}}})))
    for name, labels in (("llama-3-1-8b", {"app.kubernetes.io/name": "llama-3-1-8b"}), ("llama-3-1-70b", labels70)):
        add(reg("kubernetes:policy/v1:PodDisruptionBudget", f"{name}-pdb", _k8s("policy/v1", "PodDisruptionBudget", name, {
            "maxUnavailable": 1, "selector": {"matchLabels": labels}})))
        add(reg("kubernetes:networking.k8s.io/v1:NetworkPolicy", f"{name}-netpol", _k8s(
            "networking.k8s.io/v1", "NetworkPolicy", name, {
                "podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"],
                "ingress": [{"from": copy.deepcopy(router_peers), "ports": [{"protocol": "TCP", "port": 8000}]}]})))
        add(reg("kubernetes:core/v1:Service", f"{name}-service", _k8s("v1", "Service", f"{name}-http", {
            "type": "ClusterIP", "selector": labels, "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]})))
    add(reg("kubernetes:keda.sh/v1alpha1:ScaledObject", "llama-3-1-8b-scaler", _k8s("keda.sh/v1alpha1", "ScaledObject", "llama-3-1-8b", {
        "scaleTargetRef": {"name": "llama-3-1-8b"}, "minReplicaCount": 4, "maxReplicaCount": 40,
        "triggers": [{"type": "prometheus", "metadata": {"query": "sum(vllm:num_requests_waiting)", "threshold": "10"}}]})))
    return R


def mutate(regs: list[Registration], name: str, path: tuple, value: Any, typ: Optional[str] = None) -> list[Registration]:
    """A deep copy of regs with one field of resource `name` changed (DELETE removes it; path ("protect",) is the option)."""
    out = copy.deepcopy(regs)
    hits = [r for r in out if r.name == name and (typ is None or r.type == typ)]
    assert len(hits) == 1, f"fixture has {len(hits)} resources named {name!r}"
    r = hits[0]
    if path == ("protect",):
        r.protect = value
        return out
    if len(path) > 1 and isinstance(r.inputs.get(path[0]), str):
        # An input that is JSON text (containerDefinitions, policy documents): edit inside the document.
        doc = json.loads(r.inputs[path[0]])
        _set(doc, path[1:], value)
        r.inputs[path[0]] = json.dumps(doc)
        return out
    if path[0] == "deps":
        r.property_dependencies[path[1]] = value
        r.dependencies = sorted({u for v in r.property_dependencies.values() for u in v})
        return out
    _set(r.inputs, path, value)
    if len(path) == 1:
        # A literal top-level value depends on no other resource any more.
        r.property_dependencies.pop(path[0], None)
    return out


def _set(obj: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    if value is DELETE:
        del obj[path[-1]]
    elif isinstance(value, Append):
        obj[path[-1]] = obj[path[-1]] + list(value.items)
    else:
        obj[path[-1]] = value


class Append:
    """A mutation value that appends to a list instead of replacing it."""

    def __init__(self, *items: Any):
        self.items = items


def with_resources(regs: list[Registration], *extra: Registration) -> list[Registration]:
    """A deep copy of regs plus more resources (worlds one mutation cannot reach)."""
    return copy.deepcopy(regs) + list(extra)


def pack_policies() -> list:
    """The pack's policy objects, imported from its own modules (as policies/__main__.py lists them)."""
    import sys

    if str(PACK) not in sys.path:
        sys.path.insert(0, str(PACK))
    return [p for _, m in pack_modules() for p in m.POLICIES]


def pack_modules() -> list[tuple[str, object]]:
    """(area, module) in the order policies/__main__.py lists them."""
    import sys

    if str(PACK) not in sys.path:
        sys.path.insert(0, str(PACK))
    from rules import capacity, cost, gpu, iam, network, pod_security, reliability, security, vllm

    return [("gpu", gpu), ("cost", cost), ("security", security), ("iam", iam), ("network", network),
            ("pod-security", pod_security), ("vllm", vllm), ("reliability", reliability), ("capacity", capacity)]


def stack_policy_names() -> set[str]:
    """Names of the pack's stack-level (AnalyzeStack) policies, read from the pack's own modules."""
    from pulumi_policy import StackValidationPolicy

    return {p.name for p in pack_policies() if isinstance(p, StackValidationPolicy)}


class PackClient:
    """One policy pack process for a test session; each judge() reconfigures it like the CLI does."""

    def __init__(self) -> None:
        self.proc = PolicyPackProcess(PACK)
        self.info = self.proc.info()
        self._configured: Optional[tuple] = None
        self._passing: dict[str, list[Violation]] = {}

    def judge(self, regs: list[Registration], config: dict, stack: str = "prod",
              only: Optional[set[str]] = None, stack_policies: bool = True,
              rule: Optional[str] = None) -> list[Violation]:
        """Configure, ConfigureStack, Analyze each resource (or only those named), AnalyzeStack.

        Resource policies judge one resource at a time, so after a one-field mutation only the
        mutated resource needs Analyze again; the stack is always analysed whole. `rule`: a test
        that reads one rule's verdicts runs only that rule, at the level `config` gives it (else
        the pack's default); every other rule is disabled, which the SDK skips before it reads a
        resource (pulumi_policy policy.py Analyze/AnalyzeStack). Rules never see each other's
        verdicts, so that rule's verdicts are the same.
        """
        if rule is not None:
            config = self._only(config, rule)
        key = (json.dumps(config, sort_keys=True), stack)
        if key != self._configured:
            self.proc.configure(self.info, config)
            self.proc.configure_stack(project="llmserving", stack=stack, config={}, tags={})
            self._configured = key
        out: list[Violation] = self.proc.analyze_all([r for r in regs if only is None or r.name in only])
        if stack_policies:
            out += self.proc.analyze_stack(regs)
        return out

    def passing(self, kind: str) -> list[Violation]:
        """World `kind` judged whole under its stack's shipped config (once per pack process)."""
        if kind not in self._passing:
            regs, stack = world(kind)
            self._passing[kind] = self.judge(regs, shipped_config(stack), stack)
        return self._passing[kind]

    def _only(self, config: dict, rule: str) -> dict:
        from infra.analyzer import _LEVEL_NAMES, _level_of

        default = {p.name: _LEVEL_NAMES[p.enforcementLevel] for p in self.info.policies}
        assert rule in default, f"no rule {rule!r} in the pack"
        out: dict = {}
        for name in default:
            entry = config.get(name)
            if name == rule:
                level = _level_of(entry) or _level_of(config.get("all")) or default[name]
                out[name] = {**(entry if isinstance(entry, dict) else {}), "enforcementLevel": level}
            else:
                out[name] = {**entry, "enforcementLevel": "disabled"} if isinstance(entry, dict) else "disabled"
        return out

    def close(self) -> None:
        self.proc.close()


def judge_one_rule(pack: PackClient, kind: str, name: str, path: tuple, value: Any, policy: str) -> list[Violation]:
    """World `kind` with one field of resource `name` set to `value`, judged by `policy` alone: Analyze on the
    mutated resource (resource rules) or AnalyzeStack (stack rules). Rules the shipped configs keep below the
    pack's level (infra/policy_config.py SHIPPED_ADVISORY, SHIPPED_DISABLED) are judged at the pack's default."""
    from infra.policy_config import SHIPPED_ADVISORY, SHIPPED_DISABLED

    regs, stack = world(kind)
    stackwide = policy in stack_policy_names()
    config = shipped_config(stack)
    for rule in SHIPPED_ADVISORY + SHIPPED_DISABLED:
        config.pop(rule, None) if isinstance(config.get(rule), str) else config.get(rule, {}).pop("enforcementLevel", None)
    return pack.judge(mutate(regs, name, path, value), config, stack,
                      only=set() if stackwide else {name}, stack_policies=stackwide, rule=policy)


# --- worlds one mutation cannot reach: each passes every rule, and its cases mutate one field -----

ASG_ON_DEMAND_PCT = ("mixedInstancesPolicy", "instancesDistribution", "onDemandPercentageAboveBaseCapacity")
C0 = ("spec", "template", "spec", "containers", 0)


def _gpu_instance() -> Registration:
    """A standalone GPU instance as an engineer might add one: small, private, IMDSv2, encrypted."""
    return reg("aws:ec2/instance:Instance", "trainer", {
        "instanceType": "g5.xlarge", "ami": "ami-0123456789abcdef0", "subnetId": "subnet-private-a",
        "associatePublicIpAddress": False, "tags": TAGS,
        "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1, "httpEndpoint": "enabled"},
        "rootBlockDevice": {"encrypted": True, "volumeSize": 200}},
        deps={"subnetId": [urn("aws:ec2/subnet:Subnet", "private-a")]})


def _cpu_pool() -> Registration:
    """A general-purpose NodePool that excludes GPU categories (not GPU capacity)."""
    return reg("kubernetes:karpenter.sh/v1:NodePool", "general", _k8s("karpenter.sh/v1", "NodePool", "general", {
        "template": {"spec": {
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"},
            "requirements": [{"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m", "r"]},
                             {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]}},
        "limits": {"cpu": "200"},
        "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "30m"}}, ns=None))


def _hpa() -> Registration:
    return reg("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "llama-3-1-70b-hpa", _k8s(
        "autoscaling/v2", "HorizontalPodAutoscaler", "llama-3-1-70b", {
            "scaleTargetRef": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                               "name": "llama-3-1-70b"},
            "minReplicas": 2, "maxReplicas": 8,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                                     "averageUtilization": 80}}}]}))


def world(kind: str) -> tuple[list[Registration], str]:
    """(registrations, stack whose shipped policy config judges them)."""
    regs = good_world()
    if kind == "prod":
        return regs, "prod"
    if kind == "dev-nodepool":
        return [r for r in regs if r.name == "g5-lora"], "dev"
    if kind == "dev-asg":  # an ECS GPU pool that may launch spot above its on-demand base
        regs = mutate(regs, "ecs-gpu", ASG_ON_DEMAND_PCT, 0)
        return [r for r in regs if r.name == "ecs-gpu"], "dev"
    if kind == "runtime-lora":  # the 8B server registers adapters at runtime (the ALB denies the admin paths)
        return mutate(regs, "llama-3-1-8b", C0 + ("env",), Append(
            {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"})), "prod"
    if kind == "ecs-runtime-lora":
        return mutate(regs, "vllm-task", ("containerDefinitions", 0, "environment"), Append(
            {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"})), "prod"
    if kind == "gpu-instance":
        return with_resources(regs, _gpu_instance()), "prod"
    if kind == "cpu-pool":
        return with_resources(regs, _cpu_pool()), "prod"
    if kind == "hpa":
        return with_resources(regs, _hpa()), "prod"
    if kind == "custom-server":
        # The 8B server in a custom image started by its own entrypoint (no `vllm serve` on the command line):
        # recognised by the serving label; the ECS server by the container name the component gives it.
        regs = mutate(regs, "llama-3-1-8b", C0 + ("image",), "registry.example.com/acme/llm-server:1.4.2")
        regs = mutate(regs, "llama-3-1-8b", C0 + ("command",), ["/opt/acme/start-server"])
        regs = mutate(regs, "vllm-task", ("containerDefinitions", 0, "image"), "registry.example.com/acme/llm-server:1.4.2")
        return mutate(regs, "vllm-task", ("containerDefinitions", 0, "entryPoint"), ["/opt/acme/start-server"]), "prod"
    raise ValueError(kind)


def rule_message(v: Violation) -> str:
    """The rule's own message: the pack reports "<description>\\n<message>"; unjudged advisories carry only the message."""
    return v.message.split("\n", 1)[-1]
