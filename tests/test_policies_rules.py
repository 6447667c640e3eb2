"""Every rule of the pack: a passing fixture and a failing fixture (one field mutated), judged through
the pack's Analyzer gRPC server (GetAnalyzerInfo, Configure with the shipped stack config,
ConfigureStack, Analyze per resource, AnalyzeStack), asserting the exact violation."""

from __future__ import annotations

import json

import pytest

from tests.policy_fixtures import (DELETE, PackClient, good_world, mutate, rule_message, shipped_config,
                                   stack_policy_names, world)

STACK_POLICIES = stack_policy_names()

DEP = "kubernetes:apps/v1:Deployment"
C0 = ("spec", "template", "spec", "containers", 0)
LWS_T = ("spec", "leaderWorkerTemplate")
NP_REQ = ("spec", "template", "spec", "requirements")
ASG_ON_DEMAND_PCT = ("mixedInstancesPolicy", "instancesDistribution", "onDemandPercentageAboveBaseCapacity")
ASG_ON_DEMAND_BASE = ("mixedInstancesPolicy", "instancesDistribution", "onDemandBaseCapacity")
TLS_DENY = ("policy", "Statement", 0)
WAF_RATE = ("rules", 0)
D = "llama-3-1-8b"


@pytest.fixture(scope="module")
def pack():
    client = PackClient()
    yield client
    client.close()


def _world(kind: str):
    return world(kind)


# (policy, world, resource, path, new value, expected messages[, resource type])
CASES = [
    # --- capacity ---
    ("gpu-node-repair", "prod", "p5-ondemand", ("nodeRepairConfig", "enabled"), False,
     ["GPU node group 'p5-ondemand' has no node auto repair (nodeRepairConfig.enabled is False); a failed GPU node "
      "stays in service"]),
    ("gpu-capacity-reservation", "prod", "p5-ondemand", ("labels", "llmserving.io/pool"), "p5-other",
     ["node group 'p5-ondemand' launches on-demand p5.48xlarge without a capacity reservation; on-demand capacity of "
      "these types is often unobtainable: target an ODCR or Capacity Block (gpuPools[].capacityReservations) or "
      "acknowledge running without one (gpuPools[].acknowledgeNoReservation, which lists the pool in this policy's "
      "acknowledgedPools and puts a tag llmserving.io/no-reservation-ack on it)"]),
    # --- gpu ---
    ("gpu-allowed-instance-families", "prod", "p5-ondemand", ("instanceTypes",), ["p4d.24xlarge"],
     ["NodeGroup 'p5-ondemand' uses GPU instance type 'p4d.24xlarge' of family 'p4d'; this stack allows only: p5, g5, g6e"]),
    ("gpu-max-per-pool", "prod", "g5-lora", ("spec", "limits", "nvidia.com/gpu"), "80",
     ["Karpenter NodePool 'g5-lora' can grow to 80 GPUs at max size; the limit per pool is 64"]),
    ("gpu-max-total", "prod", "p5-ondemand", ("scalingConfig", "maxSize"), 8,
     ["GPU capacity at max size is 108 GPUs (node group 'p5-ondemand' 64, Karpenter NodePool 'g5-lora' 40, "
      "auto scaling group 'ecs-gpu' 4); the stack limit is 96"]),
    ("gpu-nodepool-gpu-limit", "prod", "g5-lora", ("spec", "limits"), DELETE,
     ["GPU NodePool 'g5-lora' sets no spec.limits[\"nvidia.com/gpu\"]; Karpenter could launch GPUs without bound"]),
    ("gpu-parallelism-matches-request", "prod", D, C0 + ("args", 3), "2",
     ["Deployment llmserving/llama-3-1-8b: tensor-parallel-size 2 x pipeline-parallel-size 1 over 1 pod(s) needs 2 GPUs "
      "per pod, but the pod requests 4 nvidia.com/gpu"]),
    ("gpu-parallelism-matches-request", "prod", "llama-3-1-70b",
     LWS_T + ("workerTemplate", "spec", "containers", 0, "resources", "limits", "nvidia.com/gpu"), "4",
     ["LeaderWorkerSet llmserving/llama-3-1-70b: tensor-parallel-size 8 x pipeline-parallel-size 2 over 2 pod(s) needs 8 "
      "GPUs per pod, but the worker pod requests 4 nvidia.com/gpu"]),
    ("gpu-parallelism-matches-request", "prod", "vllm-task", ("containerDefinitions", 0, "resourceRequirements", 0, "value"), "2",
     ["ECS task 'vllm-task' container 'vllm': tensor-parallel-size 4 x pipeline-parallel-size 1 needs 4 GPUs, but it reserves 2"]),
    ("gpu-pod-fits-node-type", "prod", "g5-lora", NP_REQ + (0, "values"), ["g5.12xlarge", "g5.2xlarge"],
     ["Deployment llmserving/llama-3-1-8b: a pod requests 4 nvidia.com/gpu but pool 'g5-lora' may place it on g5.2xlarge "
      "with 1 GPUs"]),
    ("gpu-pods-tolerate-taint", "prod", D, ("spec", "template", "spec", "tolerations"), [],
     ["Deployment llmserving/llama-3-1-8b: the pod requests nvidia.com/gpu but does not tolerate the GPU taint "
      "nvidia.com/gpu=true:NoSchedule"]),
    ("gpu-nodes-tainted", "prod", "p5-ondemand", ("taints",), [],
     ["GPU node group 'p5-ondemand' lacks the taint nvidia.com/gpu=true:NoSchedule, so non-GPU pods can take GPU nodes"]),
    ("gpu-nodegroup-nvidia-ami", "prod", "p5-ondemand", ("amiType",), "AL2023_x86_64_STANDARD",
     ["GPU node group 'p5-ondemand' uses amiType AL2023_x86_64_STANDARD; GPU nodes need one of: AL2023_x86_64_NVIDIA, "
      "BOTTLEROCKET_x86_64_NVIDIA"]),
    # --- cost ---
    ("cost-allocation-tags", "prod", "ecs-gpu", ("tags",),
     [{"key": k, "value": v, "propagateAtLaunch": True} for k, v in
      {"project": "llmserving", "stack": "prod", "environment": "prod"}.items()],
     ["aws:autoscaling/group:Group 'ecs-gpu' lacks cost-allocation tags: tier"]),
    ("cost-max-hourly-within-budget", "prod", "p5-ondemand", ("scalingConfig", "maxSize"), 5,
     ["GPU capacity at max size costs up to $362.31/hour (node group 'p5-ondemand' $275.20, Karpenter NodePool 'g5-lora' "
      "$81.44, auto scaling group 'ecs-gpu' $5.67); the stack budget is $320/hour"]),
    ("cost-spot-required", "dev-nodepool", "g5-lora", NP_REQ + (1, "values"), ["on-demand"],
     ["GPU NodePool 'g5-lora' cannot launch spot capacity (karpenter.sh/capacity-type: on-demand); this stack requires "
      "spot for GPU pools"]),
    ("cost-spot-required", "dev-asg", "ecs-gpu", ASG_ON_DEMAND_PCT, 100,
     ["GPU auto scaling group 'ecs-gpu' launches only on-demand capacity (mixedInstancesPolicy "
      "onDemandPercentageAboveBaseCapacity 100); this stack requires spot for GPU pools"]),
    ("cost-spot-required", "dev-asg", "ecs-gpu", ASG_ON_DEMAND_BASE, 1,
     ["GPU auto scaling group 'ecs-gpu' launches only on-demand capacity (mixedInstancesPolicy onDemandBaseCapacity 1 "
      "covers maxSize 1); this stack requires spot for GPU pools"]),
    ("cost-budget-exists", "prod", "gpu-budget", ("budgetType",), "USAGE",
     ["the stack runs GPU capacity but has no AWS Budgets cost budget (aws:budgets/budget:Budget, budgetType COST)"]),
    ("cost-budget-alerts", "prod", "gpu-budget", ("notifications", 0, "subscriberEmailAddresses"), [],
     ["budget 'gpu-budget' notifies nobody; add notifications with subscriber emails or SNS topics"]),
    ("cost-budget-monthly-limit", "prod", "gpu-budget", ("limitAmount",), "300000",
     ["budget 'gpu-budget' allows $300000/month; the stack's monthly budget is $240000"]),
    ("cost-nodepool-consolidation", "prod", "g5-lora", ("spec", "disruption", "consolidateAfter"), "Never",
     ["GPU NodePool 'g5-lora' never consolidates (consolidateAfter: Never); idle GPU nodes would bill forever"]),
    ("cost-autoscaler-bounded", "prod", "llama-3-1-8b-scaler", ("spec", "maxReplicaCount"), 100,
     ["ScaledObject 'llama-3-1-8b' may scale to 100 replicas; the stack allows at most 40"]),
    # --- security ---
    ("subnet-no-public-ip-on-launch", "prod", "private-a", ("mapPublicIpOnLaunch",), True,
     ["subnet 'private-a' assigns public IPs on launch; GPU nodes must stay private (CKV_AWS_130)"]),
    ("vpc-flow-logs", "prod", "vpc-flow", ("deps", "vpcId"), [],
     ["VPC 'vpc' has no flow log (CKV2_AWS_11)"]),
    ("log-group-retention", "prod", "cluster-logs", ("retentionInDays",), DELETE,
     ["log group 'cluster-logs' keeps logs forever; set retentionInDays"]),
    ("s3-sse-kms", "prod", "adapters-sse", ("rules", 0, "applyServerSideEncryptionByDefault", "sseAlgorithm"), "AES256",
     ["bucket 'llmserving-prod-adapters' is not encrypted with SSE-KMS (default encryption: AES256) (CKV_AWS_145)"]),
    ("s3-versioning", "prod", "adapters-versioning", ("versioningConfiguration", "status"), "Suspended",
     ["bucket 'llmserving-prod-adapters' does not have versioning enabled (CKV_AWS_21)"]),
    ("s3-block-public-access", "prod", "adapters-pab", ("blockPublicPolicy",), False,
     ["bucket 'llmserving-prod-adapters' public access block leaves off: blockPublicPolicy (CKV2_AWS_6)"]),
    ("s3-tls-only", "prod", "adapters-policy", ("policy", "Statement", 0, "Condition", "Bool", "aws:SecureTransport"), "true",
     ["bucket 'llmserving-prod-adapters' has no bucket policy statement denying requests without TLS "
      "(aws:SecureTransport false) (Security Hub S3.5)"]),
    ("s3-tls-only", "prod", "adapters-policy", TLS_DENY + ("Action",), "s3:GetObject",
     ["bucket 'llmserving-prod-adapters' denies requests without TLS only partly (actions s3:GetObject instead of s3:*); "
      "deny s3:* on the bucket ARN and bucket/* (Security Hub S3.5)"]),
    ("s3-tls-only", "prod", "adapters-policy", TLS_DENY + ("Resource",), "arn:aws:s3:::llmserving-prod-adapters",
     ["bucket 'llmserving-prod-adapters' denies requests without TLS only partly (not "
      "arn:aws:s3:::llmserving-prod-adapters/*); deny s3:* on the bucket ARN and bucket/* (Security Hub S3.5)"]),
    ("s3-no-wildcard-principal", "prod", "adapters-policy", ("policy", "Statement", 1, "Principal"), {"AWS": ["*"]},
     ["bucket policy 'adapters-policy' allows s3:GetObject to any principal (\"*\") (CKV_AWS_70)"]),
    ("s3-no-wildcard-principal", "prod", "adapters-policy", TLS_DENY + ("NotPrincipal",),
     {"AWS": "arn:aws:iam::123456789012:role/vllm"},
     ["bucket policy 'adapters-policy' has a Deny statement with NotPrincipal, which applies to every principal not "
      "listed (CKV_AWS_70)"]),
    ("s3-no-wildcard-principal", "prod", "adapters-policy", ("policy", "Statement", 1, "Principal"), "*",
     ["bucket policy 'adapters-policy' allows s3:GetObject to any principal (\"*\") (CKV_AWS_70)"]),
    ("s3-access-logging", "prod", "adapters-logging", ("bucket",), "llmserving-prod-other",
     ["bucket 'llmserving-prod-adapters' has no server access logging (CKV_AWS_18)"]),
    ("eks-endpoint-restricted", "prod", "eks", ("publicAccessCidrs",), ["0.0.0.0/0"],
     ["EKS cluster 'eks' public API endpoint allows 0.0.0.0/0; restrict publicAccessCidrs (CKV_AWS_38)"]),
    ("eks-endpoint-restricted", "prod", "cluster", ("vpcConfig", "endpointPublicAccess"), True,
     ["EKS cluster 'cluster' has a public API endpoint open to 0.0.0.0/0; make it private or list publicAccessCidrs (CKV_AWS_39)"]),
    ("eks-control-plane-logging", "prod", "cluster", ("enabledClusterLogTypes",), ["api", "audit"],
     ["EKS cluster 'cluster' does not log control-plane types: authenticator, controllerManager, scheduler (CKV_AWS_37)"]),
    ("eks-secrets-encryption", "prod", "cluster", ("encryptionConfig",), DELETE,
     ["EKS cluster 'cluster' does not encrypt Kubernetes secrets with a KMS key (CKV_AWS_58)"]),
    ("launch-template-imdsv2", "prod", "p5-lt", ("metadataOptions", "httpTokens"), "optional",
     ["launch template 'p5-lt' does not require IMDSv2 (metadataOptions.httpTokens: optional) (CKV_AWS_79)"]),
    ("launch-template-imds-hop-limit", "prod", "p5-lt", ("metadataOptions", "httpPutResponseHopLimit"), 2,
     ["launch template 'p5-lt' lets IMDS responses travel 2 hops; at most 1 (a pod one hop beyond the node would "
      "reach the node role's credentials) (CKV_AWS_341)"]),
    ("launch-template-imds-hop-limit", "prod", "gpu", ("spec", "metadataOptions", "httpPutResponseHopLimit"), 2,
     ["EC2NodeClass 'gpu' lets IMDS responses travel 2 hops; at most 1 (a pod one hop beyond the node would "
      "reach the node role's credentials) (CKV_AWS_341)"]),
    ("launch-template-ebs-encrypted", "prod", "p5-lt", ("blockDeviceMappings", 0, "ebs", "encrypted"), "false",
     ["launch template 'p5-lt' volume /dev/xvda is not encrypted (CKV_AWS_8)"]),
    ("alb-https-only", "prod", "http", ("defaultActions",), [{"type": "forward", "targetGroupArn": "arn:tg"}],
     ["listener 'http' serves plain HTTP; an HTTP listener may only redirect to HTTPS (CKV_AWS_2, CKV2_AWS_20)"]),
    ("alb-tls-policy", "prod", "https", ("sslPolicy",), "ELBSecurityPolicy-2016-08",
     ["listener 'https' uses TLS policy ELBSecurityPolicy-2016-08, which allows TLS below 1.2; use e.g. "
      "ELBSecurityPolicy-TLS13-1-2-2021-06 (CKV_AWS_103)"]),
    ("alb-access-logs", "prod", "alb", ("accessLogs", "enabled"), False,
     ["load balancer 'alb' has no access logs (CKV_AWS_91)"]),
    ("alb-drop-invalid-headers", "prod", "alb", ("dropInvalidHeaderFields",), False,
     ["load balancer 'alb' forwards invalid HTTP headers; set dropInvalidHeaderFields (CKV_AWS_131)"]),
    ("alb-deletion-protection", "prod", "alb", ("enableDeletionProtection",), False,
     ["load balancer 'alb' has no deletion protection (CKV_AWS_150)"]),
    ("waf-attached", "prod", "waf-alb", ("resourceArn",), "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/other",
     ["internet-facing load balancer 'alb' has no WAF web ACL attached (CKV2_AWS_28)"]),
    ("waf-rate-limit", "prod", "waf", ("rules", 0, "statement"),
     {"managedRuleGroupStatement": {"name": "AWSManagedRulesCommonRuleSet", "vendorName": "AWS"}},
     ["web ACL 'waf' has no rate-based rule; one client can flood the GPUs"]),
    ("waf-rate-limit", "prod", "waf", WAF_RATE + ("action",), {"count": {}},
     ["web ACL 'waf' has no blocking rate-based rule within 10000 requests per client per 5 minutes ('rate': action "
      "count instead of block); one client can flood the GPUs"]),
    ("waf-rate-limit", "prod", "waf", WAF_RATE + ("statement", "rateBasedStatement", "limit"), 20000,
     ["web ACL 'waf' has no blocking rate-based rule within 10000 requests per client per 5 minutes ('rate': limit "
      "20000 requests per 5 minutes above 10000); one client can flood the GPUs"]),
    ("vllm-api-key-required", "prod", D, C0 + ("env",), [],
     ["Deployment llmserving/llama-3-1-8b container 'vllm' runs vLLM without an API key; set VLLM_API_KEY from a secret"]),
    ("vllm-api-key-required", "prod", D, C0 + ("env",), [{"name": "VLLM_API_KEY", "value": "hunter2"}],
     ["Deployment llmserving/llama-3-1-8b container 'vllm' puts the vLLM API key in plain text; take VLLM_API_KEY from a secret"]),
    ("vllm-api-key-required", "prod", "vllm-task", ("containerDefinitions", 0, "secrets"), [],
     ["ECS task 'vllm-task' container 'vllm' runs vLLM without an API key; set VLLM_API_KEY from a secret"]),
    ("images-pinned", "prod", D, C0 + ("image",), "vllm/vllm-openai:latest",
     ["Deployment llmserving/llama-3-1-8b container 'vllm' image vllm/vllm-openai:latest uses the latest tag; pin a version "
      "tag or digest (CKV_K8S_14)"]),
    ("images-pinned", "prod", "vllm-task", ("containerDefinitions", 0, "image"), "vllm/vllm-openai",
     ["ECS task 'vllm-task' container 'vllm' image vllm/vllm-openai has no tag (means latest); pin a version tag or digest "
      "(CKV_K8S_14)"]),
    ("no-privileged-containers", "prod", D, C0 + ("securityContext", "privileged"), True,
     ["Deployment llmserving/llama-3-1-8b container 'vllm' runs privileged (CKV_K8S_16)"]),
    ("sqs-encrypted", "prod", "interruptions", ("sqsManagedSseEnabled",), False,
     ["SQS queue 'interruptions' is not encrypted at rest; set sqsManagedSseEnabled or kmsMasterKeyId (CKV_AWS_27)"]),
    ("kms-key-rotation", "prod", "cluster-key", ("enableKeyRotation",), False,
     ["KMS key 'cluster-key' does not rotate; set enableKeyRotation (CKV_AWS_7)"]),
    # --- reliability ---
    ("min-availability-zones", "prod", "private-c", ("availabilityZone",), "us-east-1a",
     ["private subnets span 2 zone(s) (us-east-1a, us-east-1b); at least 3 are required"]),
    ("serving-probes", "prod", D, C0 + ("startupProbe",), DELETE,
     ["Deployment llmserving/llama-3-1-8b serving container 'vllm' lacks startupProbe (CKV_K8S_8, CKV_K8S_9)"]),
    ("serving-probes", "prod", "vllm-task", ("containerDefinitions", 0, "healthCheck"), DELETE,
     ["ECS task 'vllm-task' serving container 'vllm' has no healthCheck"]),
    ("serving-pdb", "prod", "llama-3-1-8b-pdb", ("spec", "selector", "matchLabels"), {"app.kubernetes.io/name": "other"},
     ["Deployment llmserving/llama-3-1-8b has no PodDisruptionBudget selecting its pods"]),
    ("spot-interruption-queue", "prod", "spot-interruption", ("eventPattern",),
     json.dumps({"source": ["aws.health"], "detail-type": ["AWS Health Event"]}),
     ["Karpenter NodePool 'g5-lora' can launch spot GPUs but the stack has no EventBridge rule for 'EC2 Spot Instance "
      "Interruption Warning' for Karpenter"]),
    ("stateful-protected", "prod", "adapters", ("protect",), False,
     ["stateful resource aws:s3/bucket:Bucket 'adapters' is not protected (pulumi protect option)"]),
    ("stateful-protected", "prod", "cluster-key", ("protect",), False,
     ["stateful resource aws:kms/key:Key 'cluster-key' is not protected (pulumi protect option)"]),
    ("stateful-protected", "prod", "ecs", ("protect",), False,
     ["stateful resource aws:ecs/cluster:Cluster 'ecs' is not protected (pulumi protect option)"]),
    ("resource-requests", "prod", D, C0 + ("resources", "requests"), {"nvidia.com/gpu": "4"},
     ["Deployment llmserving/llama-3-1-8b container 'vllm' sets no cpu or memory request (CKV_K8S_10, CKV_K8S_12)"]),
    ("vllm-shared-memory", "prod", D, C0 + ("volumeMounts",), [],
     ["Deployment llmserving/llama-3-1-8b container 'vllm' runs tensor/pipeline parallel without a memory-backed /dev/shm "
      "(emptyDir medium: Memory); NCCL fails"]),
    ("vllm-shared-memory", "prod", "vllm-task", ("containerDefinitions", 0, "linuxParameters"), DELETE,
     ["ECS task 'vllm-task' container 'vllm' runs tensor/pipeline parallel without linuxParameters.sharedMemorySize "
      "(Docker's 64 MB /dev/shm); NCCL fails"]),
    ("lws-recreate-group-on-restart", "prod", "llama-3-1-70b", LWS_T + ("restartPolicy",), "None",
     ["LeaderWorkerSet llmserving/llama-3-1-70b has restartPolicy None; a multi-node vLLM group must use "
      "RecreateGroupOnPodRestart"]),
    ("serving-graceful-shutdown", "prod", D, ("spec", "template", "spec", "terminationGracePeriodSeconds"), 30,
     ["Deployment llmserving/llama-3-1-8b gives serving pods 30 s to drain; at least 60 s"]),
    ("ecs-deployment-circuit-breaker", "prod", "vllm-svc", ("deploymentCircuitBreaker", "rollback"), False,
     ["ECS service 'vllm-svc' has no deployment circuit breaker with rollback"]),
    ("gpu-nodepool-when-empty", "prod", "g5-lora", ("spec", "disruption", "consolidationPolicy"), "WhenEmptyOrUnderutilized",
     ["GPU NodePool 'g5-lora' consolidates WhenEmptyOrUnderutilized; use WhenEmpty so warm model replicas are not evicted"]),
]


def _reported(violations, policy):
    # The pack reports "<policy description>\n<violation>"; the second part is the rule's message.
    return sorted(rule_message(v) for v in violations if v.policy == policy)


def _id(case):
    return f"{case[0]}:{case[2]}:{'.'.join(map(str, case[3]))}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_rule_passes_then_fails_on_one_mutation(pack, case):
    policy, kind, name, path, value, expected = case
    assert _reported(pack.passing(kind), policy) == []
    regs, stack = _world(kind)
    # Resource policies judge one resource: only the mutated one needs Analyze again; stack
    # policies need AnalyzeStack over the whole (mutated) stack.
    stackwide = policy in STACK_POLICIES
    violations = pack.judge(mutate(regs, name, path, value), shipped_config(stack), stack,
                            only=set() if stackwide else {name}, stack_policies=stackwide, rule=policy)
    assert _reported(violations, policy) == sorted(expected)


def test_passing_world_has_no_violation_at_all_under_prod_config(pack):
    assert [(v.policy, v.message) for v in pack.passing("prod")] == []


def test_every_rule_has_a_case_and_there_are_at_least_40(pack):
    from tests.test_policies_depth import CASES as DEPTH_CASES

    names = {p.name for p in pack.info.policies}
    assert len(names) >= 40
    assert names == {c[0] for c in CASES + DEPTH_CASES}


def test_levels_in_prod_are_mandatory_for_gpu_cost_and_security(pack):
    effective = pack.proc.configure(pack.info, shipped_config("prod"))
    pack._configured = None
    advisory = sorted(n for n, c in effective.items() if c["enforcementLevel"] == "advisory")
    disabled = sorted(n for n, c in effective.items() if c["enforcementLevel"] == "disabled")
    assert advisory == ["ecs-container-memory-limits", "ecs-health-check-grace", "gpu-nodepool-when-empty"]
    assert disabled == ["eks-version-supported"]


def test_mutated_violation_is_mandatory_in_prod(pack):
    regs, _ = _world("prod")
    v = pack.judge(mutate(regs, "alb", ("dropInvalidHeaderFields",), False), shipped_config("prod"))
    assert [(x.policy, x.level, x.urn) for x in v] == [
        ("alb-drop-invalid-headers", "mandatory", "urn:pulumi:prod::llmserving::aws:lb/loadBalancer:LoadBalancer::alb")]


# --- worlds a one-field mutation cannot reach ---------------------------------------------------

def _subnets_tagged(regs, tags: dict):
    """Every fixture subnet without the internal-elb tag, plus `tags`."""
    for z in "abc":
        old = next(r for r in regs if r.name == f"private-{z}").inputs["tags"]
        kept = {k: v for k, v in old.items() if k != "kubernetes.io/role/internal-elb"}
        regs = mutate(regs, f"private-{z}", ("tags",), {**kept, **tags})
    return regs


def test_min_zones_counts_private_subnets_without_the_internal_elb_tag(pack):
    regs = _subnets_tagged(good_world(), {})
    assert _reported(pack.judge(regs, shipped_config("prod"), only=set()), "min-availability-zones") == []
    regs = mutate(regs, "private-c", ("availabilityZone",), "us-east-1a")
    assert _reported(pack.judge(regs, shipped_config("prod"), only=set()), "min-availability-zones") == [
        "private subnets span 2 zone(s) (us-east-1a, us-east-1b); at least 3 are required"]


def test_min_zones_reports_a_stack_whose_subnets_are_all_public(pack):
    regs = _subnets_tagged(good_world(), {"kubernetes.io/role/elb": "1"})
    assert _reported(pack.judge(regs, shipped_config("prod"), only=set()), "min-availability-zones") == [
        "the stack has 6 subnet(s) but none is private (mapPublicIpOnLaunch false, not tagged kubernetes.io/role/elb); "
        "GPU nodes need private subnets in at least 3 zones"]


def test_a_bucket_logging_into_itself_is_no_log_bucket(pack):
    regs = mutate(good_world(), "adapters-logging", ("targetBucket",), "llmserving-prod-adapters")
    regs = mutate(regs, "adapters-sse", ("rules", 0, "applyServerSideEncryptionByDefault", "sseAlgorithm"), "AES256")
    v = pack.judge(regs, shipped_config("prod"), only=set())
    assert _reported(v, "s3-sse-kms") == [
        "bucket 'llmserving-prod-adapters' is not encrypted with SSE-KMS (default encryption: AES256) (CKV_AWS_145)"]
    assert _reported(v, "s3-access-logging") == [
        "bucket 'llmserving-prod-adapters' writes its server access logs into itself; log to a separate log bucket "
        "(CKV_AWS_18)"]
