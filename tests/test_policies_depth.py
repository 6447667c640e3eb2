"""Issue 15: the rules added for IAM, network exposure, pod security, vLLM risks and reliability, and the
variants of existing rules that used to slip past. Each case mutates one field of a world that passes
every rule (tests/policy_fixtures.py `world()`), serves it through the pack's Analyzer gRPC server and
asserts the exact violation; benign changes raise nothing mandatory.
"""

from __future__ import annotations

import json

import pytest

from tests.policy_fixtures import (C0, DELETE, Append, PackClient, judge_one_rule, mutate, rule_message, shipped_config,
                                   urn, world)

D = "llama-3-1-8b"
POD = ("spec", "template", "spec")
SC0 = C0 + ("securityContext",)
LWS_T = ("spec", "leaderWorkerTemplate")
LEADER_C = LWS_T + ("leaderTemplate", "spec", "containers", 0)
WORKER_C = LWS_T + ("workerTemplate", "spec", "containers", 0)
NP_REQ = ("spec", "template", "spec", "requirements")
ECS0 = ("containerDefinitions", 0)
ADAPTERS = "arn:aws:s3:::llmserving-prod-adapters"
SUBNET = "aws:ec2/subnet:Subnet"
ONLY_EKS = "(trusted by pods.eks.amazonaws.com / ecs-tasks.amazonaws.com)"


@pytest.fixture(scope="module")
def pack():
    client = PackClient()
    yield client
    client.close()


# (policy, world, resource, path, new value, expected messages)
CASES = [
    # --- IAM ---
    ("iam-no-wildcard-action", "prod", "adapters-reader-policy", ("policy", "Statement", 2, "Action"), "*",
     ["role policy 'adapters-reader-policy' statement 'DecryptAdapters' allows every action (Action \"*\") on "
      "arn:aws:kms:us-east-1:123456789012:key/adapters-key (CKV_AWS_62, CKV_AWS_63)"]),
    ("iam-no-wildcard-action", "prod", "karpenter-controller-iam", ("policy", "Statement", 1, "NotAction"), "iam:*",
     ["role policy 'karpenter-controller-iam' statement 'AllowRegionalReadActions' allows every action except iam:* "
      "(Allow with NotAction) (CKV_AWS_62, CKV_AWS_63)"]),
    ("iam-no-service-wildcard-on-all-resources", "prod", "karpenter-controller-iam", ("policy", "Statement", 1, "Action"),
     "s3:*",
     ["role policy 'karpenter-controller-iam' statement 'AllowRegionalReadActions' allows s3:* on every resource "
      "(Resource \"*\"); name the resources it needs (CKV_AWS_355)"]),
    ("iam-trust-not-public", "prod", "adapters-writer", ("assumeRolePolicy", "Statement", 0, "Principal"), {"AWS": "*"},
     ["role 'adapters-writer' trust policy statement 'TaggedTenantSessionsOnly' lets any AWS principal assume it "
      "(Principal {\"AWS\": \"*\"}) with no account condition (CKV_AWS_60)"]),
    ("iam-no-admin-managed-policy", "prod", "p5-node-AmazonSSMManagedInstanceCore", ("policyArn",),
     "arn:aws:iam::aws:policy/AdministratorAccess",
     ["role 'llmserving-prod-p5-node' gets the AWS managed policy AdministratorAccess (every action on every "
      "resource); node, task and pod roles get only the permissions they use (CKV_AWS_274)"]),
    ("iam-no-admin-managed-policy", "prod", "p5-node-AmazonEKS_CNI_Policy", ("policyArn",),
     "arn:aws:iam::aws:policy/PowerUserAccess",
     ["role 'llmserving-prod-p5-node' gets the AWS managed policy PowerUserAccess (every action except most of IAM); "
      "node, task and pod roles get only the permissions they use (CKV_AWS_274)"]),
    ("iam-passrole-scoped", "prod", "karpenter-controller-iam", ("policy", "Statement", 1, "Action"),
     ["ec2:DescribeInstances", "iam:PassRole"],
     ["role policy 'karpenter-controller-iam' statement 'AllowRegionalReadActions' allows iam:PassRole on every role "
      "(Resource \"*\") without an iam:PassedToService condition: whoever holds it can hand any role, admin roles "
      "included, to a service it controls (CKV_AWS_286)"]),
    ("kms-key-policy-not-public", "prod", "adapters-key", ("policy", "Statement", 0, "Principal"), "*",
     ["KMS key 'adapters-key' statement 'AccountAdministers' allows kms:* to any principal (\"*\") with no "
      "kms:CallerAccount or aws:PrincipalAccount condition (CKV_AWS_33)"]),
    ("adapter-store-readers", "prod", "adapters-policy", ("policy", "Statement", 1, "Resource"), f"{ADAPTERS}/tenants/*",
     ["principal {\"AWS\": \"arn:aws:iam::123456789012:role/vllm\"} (bucket policy 'adapters-policy' statement "
      f"'ServingRole') can read every tenant's adapters in bucket 'llmserving-prod-adapters'; only the serving reader "
      f"role {ONLY_EKS} may read across tenants"]),
    ("adapter-store-readers", "prod", "adapters-reader-policy", ("role",), "llmserving-prod-p5-node",
     ["role 'p5-node' (assumed by Service:ec2.amazonaws.com) can read every tenant's adapters in bucket "
      f"'llmserving-prod-adapters'; only the serving reader role {ONLY_EKS} may read across tenants"]),
    ("adapter-store-tenant-isolation", "prod", "adapters-writer-policy", ("policy", "Statement", 0, "Resource"),
     f"{ADAPTERS}/tenants/*",
     ["role 'adapters-writer' (role policy 'adapters-writer-policy' statement 'OwnPrefixObjects') can write every "
      "tenant's adapters in bucket 'llmserving-prod-adapters' (s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload "
      f"on {ADAPTERS}/tenants/*); a writer may only write tenants/${{aws:PrincipalTag/tenant}}/"]),
    ("adapter-store-tenant-isolation", "prod", "adapters-writer-policy", ("policy", "Statement", 0, "Condition"), DELETE,
     ["role 'adapters-writer' (role policy 'adapters-writer-policy' statement 'OwnPrefixObjects') does not fail closed: "
      "it lacks Null {aws:PrincipalTag/tenant: false}, so a session without the tenant tag is not refused outright"]),
    ("adapter-store-tenant-isolation", "prod", "adapters-writer-policy", ("policy", "Statement", 0, "Condition"),
     {"Null": {"aws:PrincipalTag/tenant": "false"}, "StringNotEquals": {"aws:PrincipalTag/tenant": "admin"}},
     ["role 'adapters-writer' (role policy 'adapters-writer-policy' statement 'OwnPrefixObjects') uses negated "
      "condition operators (StringNotEquals), which match when the key is absent; tenant scoping must use positive "
      "operators and Null checks"]),
    ("adapter-store-tenant-isolation", "prod", "adapters-writer-policy",
     ("policy", "Statement", 1, "Condition", "StringLike", "s3:prefix"), ["tenants/*"],
     ["role 'adapters-writer' (role policy 'adapters-writer-policy' statement 'OwnPrefixListing') lists the adapter "
      "bucket beyond the tenant's own prefix (s3:prefix tenants/*); limit it to tenants/${aws:PrincipalTag/tenant}/"]),
    ("adapter-store-tenant-isolation", "prod", "adapters-writer",
     ("assumeRolePolicy", "Statement", 0, "Condition", "StringEquals"), DELETE,
     ["role 'adapters-writer' is scoped to the caller's tenant, but its trust policy does not make the session carry "
      "the caller's own tenant: aws:RequestTag/tenant not bound to ${aws:PrincipalTag/tenant} (StringEquals); any "
      "caller could open a session for another tenant"]),
    # --- network exposure ---
    ("sg-no-world-ingress", "prod", "tasks-sg", ("ingress", 0, "cidrBlocks"), ["0.0.0.0/0"],
     ["security group 'tasks-sg' admits 0.0.0.0/0 on port 8000 (tcp); only an internet-facing ALB's security group "
      "may take 443/80 from the internet (AVD-AWS-0107)"]),
    ("sg-no-world-ingress", "prod", "tasks-sg", ("ingress", 0, "ipv6CidrBlocks"), ["::/0"],
     ["security group 'tasks-sg' admits ::/0 on port 8000 (tcp); only an internet-facing ALB's security group may "
      "take 443/80 from the internet (AVD-AWS-0107)"]),
    ("sg-no-world-ingress", "prod", "alb-sg", ("ingress", 1),
     {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]},
     ["security group 'alb-sg' admits 0.0.0.0/0 on port 22 (tcp); only an internet-facing ALB's security group may "
      "take 443/80 from the internet (AVD-AWS-0107)"]),
    ("sg-no-all-traffic-ingress", "prod", "tasks-sg", ("ingress", 0),
     {"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["10.50.0.0/16"]},
     ["security group 'tasks-sg' admits all traffic (all ports, protocol -1) from 10.50.0.0/16; open only the ports a "
      "service listens on"]),
    ("alb-egress-restricted", "prod", "alb-sg", ("egress", 0),
     {"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]},
     ["ALB security group 'alb-sg' sends anything anywhere (all ports to 0.0.0.0/0); the ALB only talks to its "
      "targets: allow their port to the VPC (AVD-AWS-0104)"]),
    ("compute-in-private-subnets", "prod", "p5-ondemand", ("subnetIds",), ["subnet-private-a", "subnet-public-b"],
     ["node group 'p5-ondemand' places nodes or tasks in public subnet(s) 'public-b'; they must sit in private "
      "subnets behind the ALB and NAT"]),
    ("compute-in-private-subnets", "prod", "vllm-svc", ("networkConfiguration", "assignPublicIp"), True,
     ["ECS service 'vllm-svc' gives its tasks public IPs (networkConfiguration.assignPublicIp); tasks stay private "
      "behind the ALB"]),
    ("compute-in-private-subnets", "prod", "gpu", ("spec", "subnetSelectorTerms", 0, "tags"),
     {"kubernetes.io/role/elb": "1"},
     ["EC2NodeClass 'gpu' selects public subnet(s) 'public-a', 'public-b', 'public-c' (spec.subnetSelectorTerms); "
      "Karpenter would launch GPU nodes there"]),
    ("compute-in-private-subnets", "prod", "gpu", ("spec", "subnetSelectorTerms"), [{"id": "subnet-public-c"}],
     ["EC2NodeClass 'gpu' selects public subnet(s) 'public-c' (spec.subnetSelectorTerms); Karpenter would launch GPU "
      "nodes there"]),
    ("compute-in-private-subnets", "prod", "ecs-gpu", ("vpcZoneIdentifiers",), ["subnet-public-a", "subnet-public-b"],
     ["auto scaling group 'ecs-gpu' places nodes or tasks in public subnet(s) 'public-a', 'public-b'; they must sit "
      "in private subnets behind the ALB and NAT"]),
    ("compute-in-private-subnets", "prod", "p5-lt", ("networkInterfaces",),
     [{"deviceIndex": 0, "associatePublicIpAddress": "true"}],
     ["launch template 'p5-lt' gives its instances public IPs (networkInterfaces[0].associatePublicIpAddress); GPU "
      "nodes stay private"]),
    ("k8s-service-not-exposed", "prod", "llama-3-1-8b-service", ("spec", "type"), "LoadBalancer",
     ["Service llmserving/llama-3-1-8b-http is of type LoadBalancer: it opens a path to the pods that bypasses the "
      "ALB, its WAF and TLS; use ClusterIP behind the TargetGroupBinding"]),
    ("k8s-service-not-exposed", "prod", "llama-3-1-70b-service", ("spec", "type"), "NodePort",
     ["Service llmserving/llama-3-1-70b-http is of type NodePort: it opens a path to the pods that bypasses the "
      "ALB, its WAF and TLS; use ClusterIP behind the TargetGroupBinding"]),
    ("model-network-policy", "prod", "llama-3-1-8b-netpol", ("spec", "podSelector", "matchLabels"),
     {"app.kubernetes.io/name": "other"},
     ["Deployment llmserving/llama-3-1-8b has no NetworkPolicy selecting its pods: every pod in the cluster can call "
      "the model and its admin endpoints"]),
    ("model-network-policy", "prod", "llama-3-1-8b-netpol", ("spec", "ingress", 0, "from"), [],
     ["Deployment llmserving/llama-3-1-8b: NetworkPolicy 'llama-3-1-8b' admits all traffic to the model (ingress[0] "
      "has no `from`, which admits every source); only the router, the load balancer's subnets and Prometheus may "
      "reach it"]),
    ("model-network-policy", "prod", "llama-3-1-70b-netpol", ("spec", "ingress", 0, "from", 1, "ipBlock", "cidr"),
     "0.0.0.0/0",
     ["LeaderWorkerSet llmserving/llama-3-1-70b: NetworkPolicy 'llama-3-1-70b' admits all traffic to the model "
      "(ingress[0] admits ipBlock 0.0.0.0/0); only the router, the load balancer's subnets and Prometheus may reach "
      "it"]),
    # --- pod security (PSS restricted) ---
    ("pss-host-namespaces", "prod", D, POD + ("hostNetwork",), True,
     ["Deployment llmserving/llama-3-1-8b sets hostNetwork: the pods share the node's network namespace (PSS "
      "baseline; CKV_K8S_19)"]),
    ("pss-host-namespaces", "prod", D, POD + ("hostPID",), True,
     ["Deployment llmserving/llama-3-1-8b sets hostPID: the pods share the node's process namespace (PSS baseline; "
      "CKV_K8S_17)"]),
    ("pss-host-path", "prod", D, POD + ("volumes", 0), {"name": "shm", "hostPath": {"path": "/dev/shm"}},
     ["Deployment llmserving/llama-3-1-8b mounts hostPath /dev/shm (volume 'shm'): node files in a pod (PSS "
      "baseline; AVD-KSV-0023)"]),
    ("pss-capabilities", "prod", D, SC0 + ("capabilities", "add"), ["SYS_ADMIN"],
     ["Deployment llmserving/llama-3-1-8b container 'vllm' adds capabilities SYS_ADMIN; PSS restricted allows only "
      "NET_BIND_SERVICE (CKV_K8S_25, AVD-KSV-0022)"]),
    ("pss-capabilities", "prod", D, SC0 + ("capabilities", "add"), ["IPC_LOCK"],
     ["Deployment llmserving/llama-3-1-8b container 'vllm' adds capabilities IPC_LOCK; PSS restricted allows only "
      "NET_BIND_SERVICE (IPC_LOCK is allowed only to a container that requests vpc.amazonaws.com/efa, drops ALL and "
      "cannot escalate) (CKV_K8S_25, AVD-KSV-0022)"]),
    ("pss-capabilities", "prod", "llama-3-1-70b", LEADER_C + ("securityContext", "capabilities", "add"),
     ["IPC_LOCK", "SYS_PTRACE"],
     ["LeaderWorkerSet llmserving/llama-3-1-70b container 'vllm' adds capabilities IPC_LOCK, SYS_PTRACE; PSS "
      "restricted allows only NET_BIND_SERVICE (IPC_LOCK is allowed only to a container that requests "
      "vpc.amazonaws.com/efa, drops ALL and cannot escalate) (CKV_K8S_25, AVD-KSV-0022)"]),
    ("pss-capabilities", "prod", D, SC0 + ("capabilities", "drop"), ["NET_RAW"],
     ["Deployment llmserving/llama-3-1-8b container 'vllm' does not drop ALL capabilities "
      "(securityContext.capabilities.drop); PSS restricted requires it (AVD-KSV-0003)"]),
    ("pss-privilege-escalation", "prod", D, SC0 + ("allowPrivilegeEscalation",), DELETE,
     ["Deployment llmserving/llama-3-1-8b container 'vllm' does not set securityContext.allowPrivilegeEscalation: "
      "false (PSS restricted; CKV_K8S_20, AVD-KSV-0001)"]),
    ("pss-run-as-non-root", "prod", D, POD + ("securityContext", "runAsNonRoot"), DELETE,
     ["Deployment llmserving/llama-3-1-8b container 'vllm' may run as root: neither it nor its pod sets runAsNonRoot: "
      "true (PSS restricted; CKV_K8S_23, AVD-KSV-0012)"]),
    ("pss-run-as-non-root", "prod", D, SC0 + ("runAsUser",), 0,
     ["Deployment llmserving/llama-3-1-8b container 'vllm' runs as uid 0 (runAsUser 0); PSS restricted forbids root "
      "(CKV_K8S_23, AVD-KSV-0012)"]),
    # The EFA exception is narrow: the same uid-0 engine without its EFA request is refused.
    ("pss-run-as-non-root", "prod", "llama-3-1-70b", WORKER_C + ("resources",),
     {"requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "8"}, "limits": {"memory": "64Gi", "nvidia.com/gpu": "8"}},
     ["LeaderWorkerSet llmserving/llama-3-1-70b container 'ray-worker' runs as uid 0 (runAsUser 0); PSS restricted "
      "forbids root (CKV_K8S_23, AVD-KSV-0012)"]),
    ("rbac-no-admin-for-workloads", "prod", "llm-router-rolebinding", ("roleRef",),
     {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
     ["RoleBinding 'llm-router' gives service account llmserving/llm-router the ClusterRole cluster-admin; a "
      "compromised pod would own the cluster (AVD-KSV-0111)"]),
    ("pss-namespace-not-privileged", "prod", "llmserving-ns", ("metadata", "labels", "pod-security.kubernetes.io/enforce"),
     "privileged",
     ["namespace 'llmserving' runs model workloads and is labelled pod-security.kubernetes.io/enforce=privileged: any "
      "pod there may run privileged; serving namespaces enforce baseline or restricted"]),
    ("pss-namespace-not-privileged", "prod", "gpu-monitoring-ns", ("metadata", "name"), "tools",
     ["namespace 'tools' is labelled pod-security.kubernetes.io/enforce=privileged, which admits privileged, "
      "host-namespace and hostPath pods; only the node-agent namespaces named in the policy config may be "
      "(gpu-monitoring)"]),
    # --- vLLM risks ---
    ("vllm-trust-remote-code", "prod", D, C0 + ("args",), Append("--trust-remote-code"),
     ["Deployment llmserving/llama-3-1-8b container 'vllm' serves 'llama-3-1-8b' with --trust-remote-code, which runs "
      "Python from the model repository at load time; opt the model in (policy config "
      "vllm-trust-remote-code.allowedModels) only after reviewing that code"]),
    ("vllm-trust-remote-code", "prod", "vllm-task", ECS0 + ("command",), Append("--trust-remote-code"),
     ["ECS task 'vllm-task' container 'vllm' serves 'vllm-task' with --trust-remote-code, which runs Python from the "
      "model repository at load time; opt the model in (policy config vllm-trust-remote-code.allowedModels) only after "
      "reviewing that code"]),
    ("vllm-runtime-lora-admin-closed", "runtime-lora", "deny-admin", ("priority",), 5,
     ["runtime LoRA updates are on (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in Deployment llmserving/llama-3-1-8b "
      "container 'vllm') while listener 'https' passes /v1/load_lora_adapter, /v1/unload_lora_adapter on (rule 'deny-admin' (its priority comes after a forward)): any API key holder "
      "could load or unload every tenant's adapters; deny those paths first (fixed-response rule)"]),
    ("vllm-runtime-lora-admin-closed", "runtime-lora", "deny-admin", ("conditions", 0, "pathPattern", "values"),
     ["/v1/load_lora_adapter"],
     ["runtime LoRA updates are on (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in Deployment llmserving/llama-3-1-8b "
      "container 'vllm') while listener 'https' passes /v1/load_lora_adapter, /v1/unload_lora_adapter on (rule 'deny-admin' (its path patterns miss /v1/unload_lora_adapter)): any API "
      "key holder could load or unload every tenant's adapters; deny those paths first (fixed-response rule)"]),
    ("vllm-runtime-lora-admin-closed", "ecs-runtime-lora", "deny-admin", ("conditions",),
     [{"pathPattern": {"values": ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]}},
      {"sourceIp": {"values": ["203.0.113.0/24"]}}],
     ["runtime LoRA updates are on (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in ECS task 'vllm-task' container "
      "'vllm') while listener 'https' passes /v1/load_lora_adapter, /v1/unload_lora_adapter on (rule 'deny-admin' (it "
      "also requires sourceIp)): any API key holder could load or unload every tenant's adapters; deny those paths "
      "first (fixed-response rule)"]),
    ("vllm-secrets-not-plain", "prod", D, C0 + ("env", 0), {"name": "HF_TOKEN", "value": "hf_abcdef"},
     ["Deployment llmserving/llama-3-1-8b container 'vllm' puts HF_TOKEN in plain env values; take them from a Secret "
      "(valueFrom.secretKeyRef)"]),
    ("vllm-secrets-not-plain", "prod", "vllm-task", ECS0 + ("environment",), Append({"name": "HF_TOKEN", "value": "hf_x"}),
     ["ECS task 'vllm-task' container 'vllm' puts HF_TOKEN in plain environment values; ECS injects them from Secrets "
      "Manager or SSM with `secrets` (valueFrom)"]),
    ("vllm-secrets-not-plain", "prod", D, C0 + ("args",), Append("--hf-token", "hf_abcdef"),
     ["Deployment llmserving/llama-3-1-8b container 'vllm' passes --hf-token on the command line in plain text "
      "(visible in the pod spec and process list); use the environment from a secret"]),
    # --- reliability ---
    ("serving-min-replicas", "prod", "llama-3-1-8b-scaler", ("spec", "minReplicaCount"), 1,
     ["Deployment llmserving/llama-3-1-8b can scale down to 1 replica(s) (ScaledObject 'llama-3-1-8b' "
      "minReplicaCount); this stack serves every model from at least 2"]),
    ("serving-min-replicas", "prod", "llama-3-1-70b", ("spec", "replicas"), 1,
     ["LeaderWorkerSet llmserving/llama-3-1-70b runs 1 replica(s); this stack serves every model from at least 2 "
      "(one node drain or crash takes the model offline)"]),
    ("serving-min-replicas", "prod", "vllm-svc-scaling", ("minCapacity",), 1,
     ["ECS service 'vllm-svc' can run 1 task(s) (minCapacity of the scaling target); this stack serves every model "
      "from at least 2"]),
    ("serving-min-replicas", "hpa", "llama-3-1-70b-hpa", ("spec", "minReplicas"), 1,
     ["LeaderWorkerSet llmserving/llama-3-1-70b can scale down to 1 replica(s) (HorizontalPodAutoscaler "
      "'llama-3-1-70b' minReplicas); this stack serves every model from at least 2"]),
    ("gpu-pool-on-demand-fallback", "prod", "g5-lora", NP_REQ + (1, "values"), ["spot"],
     ["Karpenter NodePool 'g5-lora' runs only on spot capacity; a prod pool needs an on-demand fallback (capacity "
      "type spot and on-demand, or an on-demand NodePool/base capacity beside it) so a spot drought cannot take every "
      "replica away"]),
    ("gpu-pool-on-demand-fallback", "prod", "p5-ondemand", ("capacityType",), "SPOT",
     ["node group 'p5-ondemand' runs only on spot capacity; a prod pool needs an on-demand fallback (capacity type "
      "spot and on-demand, or an on-demand NodePool/base capacity beside it) so a spot drought cannot take every "
      "replica away"]),
    ("nodepool-disruption-budget", "prod", "g5-lora", ("spec", "disruption", "budgets", 0, "nodes"), "100%",
     ["NodePool 'g5-lora' lets Karpenter disrupt 100% of its nodes at once (spec.disruption.budgets[0]); at most 20%, "
      "or every replica on it can go together"]),
    ("node-ami-pinned", "prod", "gpu", ("spec", "amiSelectorTerms", 0, "alias"), "al2023@latest",
     ["EC2NodeClass 'gpu' selects AMI alias al2023@latest (spec.amiSelectorTerms[0]); pin a release such as "
      "al2023@v20251103 so nodes do not drift to untested images"]),
    ("node-ami-pinned", "prod", "ecs-gpu-lt", ("imageId",),
     "resolve:ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
     ["launch template 'ecs-gpu-lt' resolves its AMI at launch from "
      "resolve:ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id; every instance may boot "
      "a different image: resolve the parameter once (at deploy) or pin the AMI id"]),
    ("ecs-health-check-grace", "prod", "vllm-svc", ("healthCheckGracePeriodSeconds",), 30,
     ["ECS service 'vllm-svc' ignores failed health checks for 30 s after a task starts "
      "(healthCheckGracePeriodSeconds); model 'llama-3-1-8b' takes up to 69 s to load, so ECS would replace tasks "
      "that are still loading"]),
    ("container-memory-limits", "prod", D, C0 + ("resources", "limits", "memory"), DELETE,
     ["Deployment llmserving/llama-3-1-8b container 'vllm' sets no memory limit; a leak or a large batch can take the "
      "node's memory from its neighbours (CKV_K8S_13)"]),
    ("ecs-container-memory-limits", "prod", "vllm-task", ECS0 + ("memory",), DELETE,
     ["ECS task 'vllm-task' container 'vllm' has no hard memory limit (memory, or the task's memory); "
      "memoryReservation alone lets it take the whole instance"]),
    ("ecs-log-configuration", "prod", "vllm-task", ECS0 + ("logConfiguration",), DELETE,
     ["ECS task 'vllm-task' container 'vllm' has no logConfiguration; its output is lost when the task stops (use the "
      "awslogs driver)"]),
    ("eks-version-supported", "prod", "cluster", ("version",), "1.33",
     ["EKS cluster 'cluster' runs Kubernetes 1.33, past the end of EKS standard support on 2026-07-29 (extended "
      "support until 2027-07-29 bills extra per cluster-hour); upgrade to a version in standard support"]),
    ("eks-version-supported", "prod", "eks", ("version",), "1.31",
     ["EKS cluster 'eks' runs Kubernetes 1.31, past the end of EKS extended support on 2026-11-26: EKS upgrades the "
      "control plane on its own schedule"]),
    ("eks-version-supported", "prod", "eks", ("version",), "1.27",
     ["EKS cluster 'eks' runs Kubernetes 1.27, older than every version in EKS's release calendar (1.29-1.35): past "
      "the end of extended support"]),
    # --- variants of existing rules that used to slip past ---
    ("launch-template-imdsv2", "prod", "gpu", ("spec", "metadataOptions", "httpTokens"), "optional",
     ["EC2NodeClass 'gpu' does not require IMDSv2 (spec.metadataOptions.httpTokens: optional) (CKV_AWS_79)"]),
    ("launch-template-ebs-encrypted", "prod", "gpu", ("spec", "blockDeviceMappings", 0, "ebs", "encrypted"), False,
     ["EC2NodeClass 'gpu' volume /dev/xvda (the root volume) is not encrypted (CKV_AWS_8)"]),
    ("gpu-allowed-instance-families", "prod", "g5-lora", NP_REQ + (0,),
     {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["g"]},
     ["NodePool 'g5-lora' can launch any GPU family (its requirements restrict neither instance types nor families); "
      "this stack allows only: p5, g5, g6e"]),
    ("gpu-allowed-instance-families", "prod", "g5-lora", NP_REQ + (0,),
     {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g5", "g6"]},
     ["NodePool 'g5-lora' can launch GPU families g6; this stack allows only: p5, g5, g6e"]),
    ("gpu-allowed-instance-families", "prod", "g5-lora", NP_REQ + (0,),
     {"key": "node.kubernetes.io/instance-type", "operator": "NotIn", "values": ["t3.large"]},
     ["NodePool 'g5-lora' can launch any GPU family (its requirements restrict neither instance types nor families); "
      "this stack allows only: p5, g5, g6e"]),
    ("cost-max-hourly-within-budget", "prod", "g5-lora", NP_REQ + (0,),
     {"key": "karpenter.k8s.aws/instance-category", "operator": "NotIn", "values": ["t"]},
     ["cannot price GPU capacity at max size for Karpenter NodePool 'g5-lora' (unbounded or instance type not in the "
      "policy's instanceTypes table)"]),
    # A general-purpose NodePool opened to GPUs by a NotIn: now GPU capacity, judged for taint and limit.
    ("gpu-nodes-tainted", "cpu-pool", "general", NP_REQ + (0, "operator"), "NotIn",
     ["GPU NodePool 'general' lacks the taint nvidia.com/gpu=true:NoSchedule, so non-GPU pods can take GPU nodes"]),
    ("gpu-nodepool-gpu-limit", "cpu-pool", "general", NP_REQ + (0, "operator"), "NotIn",
     ["GPU NodePool 'general' sets no spec.limits[\"nvidia.com/gpu\"]; Karpenter could launch GPUs without bound"]),
    # A standalone GPU instance is GPU capacity: families, cost, IMDS, subnets.
    ("gpu-allowed-instance-families", "gpu-instance", "trainer", ("instanceType",), "p4d.24xlarge",
     ["Instance 'trainer' uses GPU instance type 'p4d.24xlarge' of family 'p4d'; this stack allows only: p5, g5, g6e"]),
    ("cost-max-hourly-within-budget", "gpu-instance", "trainer", ("instanceType",), "p5.48xlarge",
     ["GPU capacity at max size costs up to $362.31/hour (node group 'p5-ondemand' $220.16, Karpenter NodePool "
      "'g5-lora' $81.44, auto scaling group 'ecs-gpu' $5.67, EC2 instance 'trainer' $55.04); the stack budget is "
      "$320/hour"]),
    ("launch-template-imdsv2", "gpu-instance", "trainer", ("metadataOptions", "httpTokens"), "optional",
     ["EC2 instance 'trainer' does not require IMDSv2 (metadataOptions.httpTokens: optional) (CKV_AWS_79)"]),
    ("launch-template-ebs-encrypted", "gpu-instance", "trainer", ("rootBlockDevice", "encrypted"), False,
     ["EC2 instance 'trainer' volume /dev/root is not encrypted (CKV_AWS_8)"]),
    ("compute-in-private-subnets", "gpu-instance", "trainer", ("associatePublicIpAddress",), True,
     ["EC2 instance 'trainer' gets a public IP (associatePublicIpAddress); GPU nodes stay private"]),
    # vLLM servers recognised by the serving label or the ECS container name, whatever the image.
    ("vllm-api-key-required", "custom-server", D, C0 + ("env",), [],
     ["Deployment llmserving/llama-3-1-8b container 'vllm' runs vLLM without an API key; set VLLM_API_KEY from a "
      "secret"]),
    ("serving-probes", "custom-server", D, C0 + ("startupProbe",), DELETE,
     ["Deployment llmserving/llama-3-1-8b serving container 'vllm' lacks startupProbe (CKV_K8S_8, CKV_K8S_9)"]),
    ("vllm-shared-memory", "custom-server", D, C0 + ("volumeMounts",), [],
     ["Deployment llmserving/llama-3-1-8b container 'vllm' runs tensor/pipeline parallel without a memory-backed "
      "/dev/shm (emptyDir medium: Memory); NCCL fails"]),
    ("serving-pdb", "custom-server", "llama-3-1-8b-pdb", ("spec", "selector", "matchLabels"),
     {"app.kubernetes.io/name": "other"},
     ["Deployment llmserving/llama-3-1-8b has no PodDisruptionBudget selecting its pods"]),
    ("vllm-api-key-required", "custom-server", "vllm-task", ECS0 + ("secrets",), [],
     ["ECS task 'vllm-task' container 'vllm' runs vLLM without an API key; set VLLM_API_KEY from a secret"]),
    ("serving-probes", "custom-server", "vllm-task", ECS0 + ("healthCheck",), DELETE,
     ["ECS task 'vllm-task' serving container 'vllm' has no healthCheck"]),
    # Values, not presence.
    ("serving-probes", "prod", D, C0 + ("startupProbe", "failureThreshold"), 6,
     ["Deployment llmserving/llama-3-1-8b serving container 'vllm' gives model 'llama-3-1-8b' 60 s to start "
      "(startupProbe failureThreshold x periodSeconds); loading it takes up to 69 s, so the kubelet would kill it "
      "while loading"]),
    ("serving-pdb", "prod", "llama-3-1-8b-pdb", ("spec", "maxUnavailable"), "100%",
     ["Deployment llmserving/llama-3-1-8b: PodDisruptionBudget 'llama-3-1-8b' allows maxUnavailable 100%, so a node "
      "drain may evict every replica at once"]),
    ("cost-budget-exists", "prod", "gpu-budget", ("costFilters", 0, "values"), ["user:stack$dev"],
     ["budget 'gpu-budget' filters on dev (user:stack$dev), not this stack's stack=prod; no cost budget watches this "
      "stack"]),
    ("s3-tls-only", "prod", "adapters-policy", ("policy", "Statement", 0, "Principal"),
     {"AWS": "arn:aws:iam::123456789012:role/vllm"},
     ["bucket 'llmserving-prod-adapters' denies requests without TLS only partly (principal narrowed to "
      "arn:aws:iam::123456789012:role/vllm); deny s3:* on the bucket ARN and bucket/* (Security Hub S3.5)"]),
    ("alb-http-listener-rules", "prod", "route-8b", ("deps", "listenerArn"), [urn("aws:lb/listener:Listener", "http")],
     ["listener rule 'route-8b' on HTTP listener 'http' forwards plain HTTP (forward); rules of an HTTP listener may "
      "only redirect to HTTPS or answer fixed responses (CKV2_AWS_20)"]),
    ("waf-rate-limit", "prod", "waf", ("rules", 0, "statement", "rateBasedStatement", "scopeDownStatement"),
     {"byteMatchStatement": {"searchString": "/v1/chat/completions", "fieldToMatch": {"uriPath": {}},
                             "positionalConstraint": "EXACTLY", "textTransformations": [{"priority": 0, "type": "NONE"}]}},
     ["web ACL 'waf' has no blocking rate-based rule within 10000 requests per client per 5 minutes ('rate': scoped "
      "down to byteMatchStatement '/v1/chat/completions', so other requests are not counted); one client can flood "
      "the GPUs"]),
    ("images-pinned", "prod", D, C0 + ("image",), "vllm/vllm-openai:nightly",
     ["Deployment llmserving/llama-3-1-8b container 'vllm' image vllm/vllm-openai:nightly uses the floating tag "
      "nightly; pin a version tag or digest (CKV_K8S_14)"]),
    ("images-pinned", "prod", "vllm-task", ECS0 + ("image",), "vllm/vllm-openai:main",
     ["ECS task 'vllm-task' container 'vllm' image vllm/vllm-openai:main uses the floating tag main; pin a version "
      "tag or digest (CKV_K8S_14)"]),
    ("cost-autoscaler-bounded", "hpa", "llama-3-1-70b-hpa", ("spec", "maxReplicas"), 100,
     ["HorizontalPodAutoscaler 'llama-3-1-70b' may scale to 100 replicas; the stack allows at most 40"]),
    ("min-availability-zones", "prod", "p5-ondemand", ("subnetIds",), ["subnet-private-a"],
     ["node group 'p5-ondemand' places its nodes in 1 zone(s) (us-east-1a); at least 3 are required"]),
    ("min-availability-zones", "prod", "ecs-gpu", ("vpcZoneIdentifiers",), ["subnet-private-b", "subnet-private-b"],
     ["auto scaling group 'ecs-gpu' places its nodes in 1 zone(s) (us-east-1b); at least 3 are required"]),
]


def _reported(violations, policy, level=None):
    return sorted(rule_message(v) for v in violations if v.policy == policy and (level is None or v.level == level))


def _id(case):
    return f"{case[0]}:{case[1]}:{case[2]}:{'.'.join(map(str, case[3]))}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_rule_passes_then_fails_on_one_mutation(pack, case):
    policy, kind, name, path, value, expected = case
    assert _reported(pack.passing(kind), policy) == []
    violations = judge_one_rule(pack, kind, name, path, value, policy)
    assert _reported(violations, policy) == sorted(expected)
    assert {v.level for v in violations if v.policy == policy} == {"mandatory"}


@pytest.mark.parametrize("kind", ["prod", "runtime-lora", "ecs-runtime-lora", "gpu-instance", "cpu-pool", "hpa",
                                  "custom-server"])
def test_every_world_passes_every_rule(pack, kind):
    assert [(v.policy, rule_message(v)) for v in pack.passing(kind)] == []


# --- benign changes: what a careful engineer changes every week raises nothing -----------------------------

BENIGN = [
    ("llama-3-1-8b", ("spec", "replicas"), 6),
    ("llama-3-1-8b-scaler", ("spec", "maxReplicaCount"), 20),
    ("llama-3-1-8b", C0 + ("startupProbe", "failureThreshold"), 90),
    ("llama-3-1-8b", C0 + ("image",), "vllm/vllm-openai:v0.11.2"),
    ("llama-3-1-8b", C0 + ("env",), Append({"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"})),
    ("llama-3-1-8b", C0 + ("args",), Append("--max-num-seqs", "128")),
    ("llama-3-1-8b", SC0 + ("readOnlyRootFilesystem",), True),
    ("llama-3-1-8b-pdb", ("spec", "maxUnavailable"), "25%"),
    ("llama-3-1-8b-netpol", ("spec", "ingress", 0, "from"), Append({"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}})),
    ("g5-lora", ("spec", "limits", "nvidia.com/gpu"), "32"),
    ("g5-lora", ("spec", "disruption", "budgets"), Append({"nodes": "0", "schedule": "0 9 * * mon-fri",
                                                           "duration": "8h"})),
    ("g5-lora", NP_REQ, Append({"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["us-east-1e"]})),
    ("gpu", ("spec", "amiSelectorTerms", 0, "alias"), "al2023@v20251201"),
    ("p5-ondemand", ("scalingConfig", "maxSize"), 3),
    ("gpu-budget", ("limitAmount",), "150000"),
    ("waf", ("rules", 0, "statement", "rateBasedStatement", "limit"), 1000),
    ("cluster-logs", ("retentionInDays",), 30),
    ("tasks-sg", ("egress",), Append({"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["10.50.0.0/16"]})),
    ("alb-sg", ("ingress", 0, "cidrBlocks"), ["203.0.113.0/24"]),
    ("adapters-reader-policy", ("policy", "Statement", 0, "Action"), ["s3:GetObject"]),
    ("adapters-writer", ("maxSessionDuration",), 1800),
    ("karpenter-controller-iam", ("policy", "Statement", 1, "Action"), Append("ec2:DescribeImages")),
    ("vllm-svc", ("healthCheckGracePeriodSeconds",), 1800),
    ("vllm-task", ECS0 + ("environment",), Append({"name": "VLLM_HTTP_TIMEOUT_KEEP_ALIVE", "value": "315"})),
    ("cluster", ("version",), "1.34"),
]


@pytest.mark.parametrize("change", BENIGN, ids=[f"{c[0]}:{'.'.join(map(str, c[1]))}" for c in BENIGN])
def test_benign_changes_raise_nothing_mandatory(pack, change):
    name, path, value = change
    regs, stack = world("prod")
    # Resource policies judge one resource at a time: the unmutated ones pass (test_every_world_passes_every_rule).
    violations = pack.judge(mutate(regs, name, path, value), shipped_config(stack), stack, only={name})
    assert [(v.policy, rule_message(v)) for v in violations if v.level == "mandatory"] == []


def test_eks_version_rule_flags_the_shipped_stacks_it_is_disabled_for(pack):
    # The shipped stacks pin 1.33, past EKS standard support since 2026-07-29: the rule finds it; the generated configs
    # disable it until they move (infra/policy_config.py SHIPPED_DISABLED; a finding for the lead, issue 15).
    from tests.harness import shipped_run

    for stack in ("dev", "prod"):
        assert shipped_config(stack)["eks-version-supported"]["enforcementLevel"] == "disabled"
        config = shipped_config(stack)
        config["eks-version-supported"].pop("enforcementLevel")
        clusters = [r for r in shipped_run(stack).registrations if r.type == "eks:index:Cluster"]
        v = pack.judge(clusters, config, stack, stack_policies=False)
        assert [(x.policy, x.level, rule_message(x)) for x in v] == [
            ("eks-version-supported", "mandatory", f"EKS cluster 'llmserving-{stack}-cluster' runs Kubernetes 1.33, past "
             "the end of EKS standard support on 2026-07-29 (extended support until 2027-07-29 bills extra per "
             "cluster-hour); upgrade to a version in standard support")]


def test_eks_version_table_has_its_source_and_covers_the_shipped_version():
    from tests.policy_fixtures import pack_policies

    pack_policies()
    from rules.reliability import EKS_VERSIONS

    import yaml
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    shipped = {yaml.safe_load(p.read_text())["config"]["llmserving:kubernetesVersion"] for p in root.glob("Pulumi.*.yaml")}
    assert shipped <= set(EKS_VERSIONS)
    # 14 months of standard support, 12 more of extended (EKS user guide, "Kubernetes version lifecycle").
    import datetime as dt
    for version, (release, standard, extended) in EKS_VERSIONS.items():
        r, s, e = (dt.date.fromisoformat(x) for x in (release, standard, extended))
        assert (s.year - r.year) * 12 + s.month - r.month == 14, version
        assert (e.year - s.year) * 12 + e.month - s.month == 12, version


def test_known_gpu_families_match_the_ec2_model():
    # Every family EC2's service model lists with a P or G prefix and a generation digit (botocore 1.44.5).
    import re

    from tests.aws_models import instance_types
    from tests.policy_fixtures import pack_policies

    pack_policies()
    from rules.common import KNOWN_GPU_FAMILIES, is_gpu_type

    families = {t.split(".")[0] for t in instance_types() if re.match(r"^(p|g|gr)\d", t)}
    assert families == set(KNOWN_GPU_FAMILIES)
    assert all(is_gpu_type(f"{f}.xlarge") for f in families)


def test_a_pdb_that_allows_every_pod_is_no_pdb_even_with_min_available_zero(pack):
    regs, stack = world("prod")
    regs = mutate(regs, "llama-3-1-70b-pdb", ("spec",), {"minAvailable": 0, "selector": {"matchLabels": {
        "app.kubernetes.io/name": "llama-3-1-70b"}}})
    got = _reported(pack.judge(regs, shipped_config(stack), stack, only=set()), "serving-pdb")
    assert got == ["LeaderWorkerSet llmserving/llama-3-1-70b: PodDisruptionBudget 'llama-3-1-70b' allows minAvailable 0, "
                   "so a node drain may evict every replica at once"]


def test_a_weighted_on_demand_nodepool_is_the_spot_pools_fallback(pack):
    # Two NodePools for one pool label: spot first, on-demand beside it (FACTS.md, Karpenter).
    regs, stack = world("prod")
    spot = mutate(regs, "g5-lora", NP_REQ + (1, "values"), ["spot"])
    fallback = next(r for r in regs if r.name == "g5-lora")
    import copy as _copy

    od = _copy.deepcopy(fallback)
    od.name, od.urn = "g5-lora-od", urn(od.type, "g5-lora-od")
    od.inputs["metadata"]["name"] = "g5-lora-od"
    od.inputs["spec"]["template"]["spec"]["requirements"][1]["values"] = ["on-demand"]
    od.inputs["spec"]["limits"]["nvidia.com/gpu"] = "8"
    got = _reported(pack.judge(spot + [od], shipped_config(stack), stack, only=set()), "gpu-pool-on-demand-fallback")
    assert got == []
    assert _reported(pack.judge(spot, shipped_config(stack), stack, only=set()), "gpu-pool-on-demand-fallback") != []


def test_writer_with_every_tenant_also_reads_every_tenant(pack):
    # One field (the writer's object resource) makes the writer a cross-tenant reader and writer: both rules say so.
    regs, stack = world("prod")
    regs = mutate(regs, "adapters-writer-policy", ("policy", "Statement", 0, "Resource"), f"{ADAPTERS}/tenants/*")
    v = pack.judge(regs, shipped_config(stack), stack, only=set())
    assert _reported(v, "adapter-store-readers") == [
        "role 'adapters-writer' (assumed by AWS:arn:aws:iam::123456789012:root) can read every tenant's adapters in "
        f"bucket 'llmserving-prod-adapters'; only the serving reader role {ONLY_EKS} may read across tenants"]
    assert len(_reported(v, "adapter-store-tenant-isolation")) == 1


def test_policy_documents_as_objects_are_judged_like_text(pack):
    # pulumi-aws accepts a policy document as an object too; the rules parse both.
    regs, stack = world("prod")
    r = next(x for x in regs if x.name == "karpenter-controller-iam")
    doc = json.loads(r.inputs["policy"])
    doc["Statement"][1]["Action"] = "*"
    regs = mutate(regs, "karpenter-controller-iam", ("policy",), doc)
    assert _reported(pack.judge(regs, shipped_config(stack), stack, only={"karpenter-controller-iam"},
                                stack_policies=False), "iam-no-wildcard-action") == [
        "role policy 'karpenter-controller-iam' statement 'AllowRegionalReadActions' allows every action (Action \"*\") "
        "on * (CKV_AWS_62, CKV_AWS_63)"]


def test_an_efa_group_in_a_cluster_placement_group_may_sit_in_one_zone(pack):
    # A cluster placement group lives in one Availability Zone (EC2 user guide, "Placement strategies"): the
    # multi-node EFA pool (components/gpu_node_group.py) is exempt from the per-group zone spread, nothing else is.
    from tests.policy_fixtures import reg, with_resources

    regs, stack = world("prod")
    pg = reg("aws:ec2/placementGroup:PlacementGroup", "p5-efa", {"name": "p5-efa", "strategy": "cluster"})
    regs = with_resources(regs, pg)
    one_zone = mutate(regs, "p5-ondemand", ("subnetIds",), ["subnet-private-a"])
    placed = mutate(one_zone, "p5-lt", ("deps", "placement"), [pg.urn])
    assert _reported(pack.judge(placed, shipped_config(stack), stack, only=set()), "min-availability-zones") == []
    spread = mutate(placed, "p5-efa", ("strategy",), "spread")
    assert _reported(pack.judge(spread, shipped_config(stack), stack, only=set()), "min-availability-zones") == [
        "node group 'p5-ondemand' places its nodes in 1 zone(s) (us-east-1a); at least 3 are required"]
