"""Issue 15, class 3: unknown values. A real first `pulumi preview` sends values that depend on outputs as the
engine's unknown sentinels (pulumi/pulumi sdk/go/common/resource/plugin/rpc.go marshalUnknownProperty: a string
"04da6b54-80e4-46f7-96ec-b56ff0331ba9" for strings, one per type); pulumi-policy 1.21.0 hands them to rules behind
an unknown-checking proxy (pulumi_policy/proxy.py), and the pack reads them as UNKNOWN (policies/rules/common.py).

For every rule that reads an input which can be an output: a fixture with that input unknown, served through the
Analyzer gRPC server. The rule either reaches a correct verdict from the known parts, or reports an advisory whose
message starts with "could not judge: " followed by its subject and the unknown input's path (the contract with
infra/preview.py `policy.unjudged`). Never a false mandatory violation, never a silent pass.
"""

from __future__ import annotations

import pytest

from infra.mockcloud import UNKNOWN
from tests.policy_fixtures import C0, PackClient, judge_one_rule, mutate, rule_message, shipped_config, world

D = "llama-3-1-8b"
POD = ("spec", "template", "spec")
ECS0 = ("containerDefinitions", 0)
NP_REQ = ("spec", "template", "spec", "requirements")
TAIL = " is unknown in this preview (known only after apply)"
DEP = "Deployment llmserving/llama-3-1-8b"
C0P = "spec.template.spec.containers[0]"


def cj(subject: str, path: str) -> str:
    return f"could not judge: {subject}: {path}{TAIL}"


@pytest.fixture(scope="module")
def pack():
    client = PackClient()
    yield client
    client.close()


# (policy, world, resource, path made unknown, expected advisories; [] = a correct verdict from the known parts)
CASES = [
    # --- capacity ---
    ("gpu-capacity-reservation", "prod", "p5-ondemand", ("labels",),
     [cj("node group 'p5-ondemand' (on-demand p5.48xlarge)", "its pool label")]),
    ("gpu-node-repair", "prod", "p5-ondemand", ("nodeRepairConfig", "enabled"),
     [cj("GPU node group 'p5-ondemand'", "nodeRepairConfig.enabled")]),
    # --- gpu ---
    ("gpu-allowed-instance-families", "prod", "p5-ondemand", ("instanceTypes",),
     [cj("NodeGroup 'p5-ondemand'", "instanceTypes")]),
    ("gpu-max-per-pool", "prod", "p5-ondemand", ("scalingConfig", "maxSize"),
     [cj("node group 'p5-ondemand'", "scalingConfig.maxSize")]),
    ("gpu-max-total", "prod", "p5-ondemand", ("scalingConfig", "maxSize"),
     [cj("GPU capacity of the stack (node group 'p5-ondemand')", "scalingConfig.maxSize")]),
    ("gpu-nodepool-gpu-limit", "prod", "g5-lora", ("spec", "limits", "nvidia.com/gpu"),
     [cj("GPU NodePool 'g5-lora'", "spec.limits.nvidia.com/gpu")]),
    ("gpu-parallelism-matches-request", "prod", D, C0 + ("args",), [cj(DEP, f"{C0P}.args")]),
    ("gpu-pod-fits-node-type", "prod", D, POD + ("nodeSelector",), [cj(DEP, "nodeSelector of the pod template")]),
    ("gpu-pods-tolerate-taint", "prod", D, POD + ("tolerations",), [cj(DEP, "spec.template.spec.tolerations")]),
    ("gpu-nodes-tainted", "prod", "p5-ondemand", ("taints",), [cj("GPU node group 'p5-ondemand'", "taints")]),
    ("gpu-nodegroup-nvidia-ami", "prod", "p5-ondemand", ("amiType",), [cj("GPU node group 'p5-ondemand'", "amiType")]),
    # --- cost ---
    ("cost-allocation-tags", "prod", "ecs-gpu", ("tags",), [cj("aws:autoscaling/group:Group 'ecs-gpu'", "tags")]),
    # A tag whose value comes from an output is still a tag.
    ("cost-allocation-tags", "prod", "alb", ("tags", "tier"), []),
    ("cost-max-hourly-within-budget", "prod", "p5-ondemand", ("scalingConfig", "maxSize"),
     [cj("GPU cost of the stack (node group 'p5-ondemand')", "scalingConfig.maxSize")]),
    ("cost-spot-required", "dev-nodepool", "g5-lora", NP_REQ, [cj("GPU pool 'g5-lora'", "spec.template.spec.requirements")]),
    ("cost-budget-exists", "prod", "gpu-budget", ("costFilters",),
     [cj("cost budget of the stack (budget 'gpu-budget')", "costFilters")]),
    ("cost-budget-alerts", "prod", "gpu-budget", ("notifications",), [cj("budget 'gpu-budget'", "notifications")]),
    # An SNS topic created in the same stack is still a subscriber.
    ("cost-budget-alerts", "prod", "gpu-budget", ("notifications", 0, "subscriberEmailAddresses"), []),
    ("cost-budget-monthly-limit", "prod", "gpu-budget", ("limitAmount",), [cj("budget 'gpu-budget'", "limitAmount")]),
    ("cost-nodepool-consolidation", "prod", "g5-lora", ("spec", "disruption", "consolidateAfter"),
     [cj("GPU NodePool 'g5-lora'", "spec.disruption.consolidateAfter")]),
    ("cost-autoscaler-bounded", "prod", "llama-3-1-8b-scaler", ("spec", "maxReplicaCount"),
     [cj("ScaledObject 'llama-3-1-8b'", "spec.maxReplicaCount")]),
    # --- security ---
    ("subnet-no-public-ip-on-launch", "prod", "private-a", ("mapPublicIpOnLaunch",),
     [cj("subnet 'private-a'", "mapPublicIpOnLaunch")]),
    ("vpc-flow-logs", "prod", "vpc-flow", ("vpcId",), [cj("VPC 'vpc'", "vpcId of flow log 'vpc-flow'")]),
    ("log-group-retention", "prod", "cluster-logs", ("retentionInDays",), [cj("log group 'cluster-logs'", "retentionInDays")]),
    ("s3-sse-kms", "prod", "adapters-sse", ("rules",), [cj("bucket 'llmserving-prod-adapters'", "rules of 'adapters-sse'")]),
    # A KMS key created in the same stack: the algorithm is known, the key id is not; a verdict all the same.
    ("s3-sse-kms", "prod", "adapters-sse", ("rules", 0, "applyServerSideEncryptionByDefault", "kmsMasterKeyId"), []),
    ("s3-versioning", "prod", "adapters-versioning", ("versioningConfiguration", "status"),
     [cj("bucket 'llmserving-prod-adapters'", "versioningConfiguration.status")]),
    ("s3-block-public-access", "prod", "adapters-pab", ("blockPublicPolicy",),
     [cj("bucket 'llmserving-prod-adapters'", "blockPublicPolicy")]),
    ("s3-tls-only", "prod", "adapters-policy", ("policy",),
     [cj("bucket 'llmserving-prod-adapters'", "policy of bucket policy 'adapters-policy'")]),
    ("s3-no-wildcard-principal", "prod", "adapters-policy", ("policy",), [cj("bucket policy 'adapters-policy'", "policy")]),
    ("s3-access-logging", "prod", "adapters-logging", ("bucket",),
     [cj("bucket 'llmserving-prod-adapters'", "bucket of BucketLogging 'adapters-logging'")]),
    ("eks-endpoint-restricted", "prod", "eks", ("publicAccessCidrs",), [cj("EKS cluster 'eks'", "publicAccessCidrs")]),
    ("eks-control-plane-logging", "prod", "cluster", ("enabledClusterLogTypes",),
     [cj("EKS cluster 'cluster'", "enabledClusterLogTypes")]),
    ("eks-secrets-encryption", "prod", "cluster", ("encryptionConfig",), [cj("EKS cluster 'cluster'", "encryptionConfig")]),
    # The key ARN of a key created in the same stack is unknown, and still a key.
    ("eks-secrets-encryption", "prod", "eks", ("encryptionConfigKeyArn",), []),
    ("launch-template-imdsv2", "prod", "p5-lt", ("metadataOptions", "httpTokens"),
     [cj("launch template 'p5-lt'", "metadataOptions.httpTokens")]),
    ("launch-template-imdsv2", "prod", "gpu", ("spec", "metadataOptions"),
     [cj("EC2NodeClass 'gpu'", "spec.metadataOptions")]),
    ("launch-template-imds-hop-limit", "prod", "p5-lt", ("metadataOptions", "httpPutResponseHopLimit"),
     [cj("launch template 'p5-lt'", "metadataOptions.httpPutResponseHopLimit")]),
    ("launch-template-ebs-encrypted", "prod", "p5-lt", ("blockDeviceMappings", 0, "ebs", "encrypted"),
     [cj("launch template 'p5-lt'", "blockDeviceMappings[0].ebs.encrypted")]),
    ("launch-template-ebs-encrypted", "prod", "gpu", ("spec", "blockDeviceMappings"),
     [cj("EC2NodeClass 'gpu'", "spec.blockDeviceMappings")]),
    ("alb-https-only", "prod", "http", ("defaultActions",), [cj("listener 'http'", "defaultActions")]),
    ("alb-http-listener-rules", "prod", "route-8b", ("listenerArn",), [cj("listener rule 'route-8b'", "listenerArn")]),
    ("alb-http-listener-rules", "prod", "http", ("protocol",), []),
    ("alb-tls-policy", "prod", "https", ("sslPolicy",), [cj("listener 'https'", "sslPolicy")]),
    ("alb-access-logs", "prod", "alb", ("accessLogs",), [cj("load balancer 'alb'", "accessLogs")]),
    # The access-log bucket from an output (a bucket created in the same stack) is still a bucket.
    ("alb-access-logs", "prod", "alb", ("accessLogs", "bucket"), []),
    ("alb-drop-invalid-headers", "prod", "alb", ("dropInvalidHeaderFields",),
     [cj("load balancer 'alb'", "dropInvalidHeaderFields")]),
    ("alb-deletion-protection", "prod", "alb", ("enableDeletionProtection",),
     [cj("load balancer 'alb'", "enableDeletionProtection")]),
    ("waf-attached", "prod", "waf-alb", ("resourceArn",),
     [cj("internet-facing load balancer 'alb'", "resourceArn of web ACL association 'waf-alb'")]),
    ("waf-rate-limit", "prod", "waf", ("rules",), [cj("web ACL 'waf'", "rules")]),
    ("vllm-api-key-required", "prod", D, C0 + ("env",), [cj(f"{DEP} container 'vllm'", f"{C0P}.env")]),
    ("images-pinned", "prod", D, C0 + ("image",), [cj(f"{DEP} container 'vllm'", f"{C0P}.image")]),
    ("no-privileged-containers", "prod", D, C0 + ("securityContext",),
     [cj(f"{DEP} container 'vllm'", f"{C0P}.securityContext")]),
    ("sqs-encrypted", "prod", "interruptions", ("sqsManagedSseEnabled",),
     [cj("SQS queue 'interruptions'", "sqsManagedSseEnabled")]),
    # An SQS key created in the same stack: encrypted.
    ("sqs-encrypted", "prod", "interruptions", ("kmsMasterKeyId",), []),
    ("kms-key-rotation", "prod", "cluster-key", ("enableKeyRotation",), [cj("KMS key 'cluster-key'", "enableKeyRotation")]),
    # --- IAM ---
    ("iam-no-wildcard-action", "prod", "adapters-reader-policy", ("policy",),
     [cj("role policy 'adapters-reader-policy'", "policy")]),
    ("iam-no-service-wildcard-on-all-resources", "prod", "karpenter-controller-iam", ("policy",),
     [cj("role policy 'karpenter-controller-iam'", "policy")]),
    ("iam-trust-not-public", "prod", "adapters-writer", ("assumeRolePolicy",), [cj("role 'adapters-writer'", "assumeRolePolicy")]),
    ("iam-no-admin-managed-policy", "prod", "p5-node-AmazonSSMManagedInstanceCore", ("policyArn",),
     [cj("role 'llmserving-prod-p5-node' (RolePolicyAttachment 'p5-node-AmazonSSMManagedInstanceCore')", "policyArn")]),
    ("iam-passrole-scoped", "prod", "karpenter-controller-iam", ("policy",),
     [cj("role policy 'karpenter-controller-iam'", "policy")]),
    ("kms-key-policy-not-public", "prod", "adapters-key", ("policy",), [cj("KMS key 'adapters-key'", "policy")]),
    ("adapter-store-readers", "prod", "adapters-reader-policy", ("policy",),
     [cj("readers of adapter bucket 'llmserving-prod-adapters' (role policy 'adapters-reader-policy')", "policy")]),
    ("adapter-store-tenant-isolation", "prod", "adapters-writer-policy", ("policy",),
     [cj("tenant isolation of the adapter store (role policy 'adapters-writer-policy')", "policy")]),
    ("adapter-store-tenant-isolation", "prod", "adapters-writer", ("assumeRolePolicy",),
     [cj("tenant isolation of role 'adapters-writer'", "assumeRolePolicy")]),
    # --- network ---
    ("sg-no-world-ingress", "prod", "alb-sg", ("ingress",), [cj("security group 'alb-sg'", "ingress")]),
    ("sg-no-world-ingress", "prod", "alb-sg", ("ingress", 0, "cidrBlocks"),
     [cj("security group 'alb-sg'", "ingress[0].cidrBlocks")]),
    ("sg-no-all-traffic-ingress", "prod", "tasks-sg", ("ingress",), [cj("security group 'tasks-sg'", "ingress")]),
    ("alb-egress-restricted", "prod", "alb-sg", ("egress",), [cj("security group 'alb-sg'", "egress")]),
    ("compute-in-private-subnets", "prod", "p5-ondemand", ("subnetIds",), [cj("node group 'p5-ondemand'", "subnetIds")]),
    ("compute-in-private-subnets", "prod", "vllm-svc", ("networkConfiguration",),
     [cj("ECS service 'vllm-svc'", "networkConfiguration")]),
    ("compute-in-private-subnets", "prod", "gpu", ("spec", "subnetSelectorTerms"),
     [cj("EC2NodeClass 'gpu'", "spec.subnetSelectorTerms")]),
    ("k8s-service-not-exposed", "prod", "llama-3-1-8b-service", ("spec", "type"),
     [cj("Service llmserving/llama-3-1-8b-http", "spec.type")]),
    ("model-network-policy", "prod", "llama-3-1-8b-netpol", ("spec", "ingress"),
     [cj(DEP, "spec of NetworkPolicy 'llama-3-1-8b-netpol'")]),
    # --- pod security ---
    ("pss-host-namespaces", "prod", D, POD + ("hostNetwork",), [cj(DEP, "spec.template.spec.hostNetwork")]),
    ("pss-host-path", "prod", D, POD + ("volumes",), [cj(DEP, "spec.template.spec.volumes")]),
    ("pss-capabilities", "prod", D, C0 + ("securityContext", "capabilities"),
     [cj(f"{DEP} container 'vllm'", f"{C0P}.securityContext.capabilities")]),
    ("pss-privilege-escalation", "prod", D, C0 + ("securityContext", "allowPrivilegeEscalation"),
     [cj(f"{DEP} container 'vllm'", f"{C0P}.securityContext.allowPrivilegeEscalation")]),
    ("pss-run-as-non-root", "prod", D, POD + ("securityContext",), [cj(DEP, "spec.template.spec.securityContext")]),
    ("rbac-no-admin-for-workloads", "prod", "llm-router-rolebinding", ("roleRef",), [cj("RoleBinding 'llm-router'", "roleRef")]),
    ("pss-namespace-not-privileged", "prod", "llmserving-ns", ("metadata", "labels"),
     [cj("namespace 'llmserving'", "metadata.labels")]),
    # --- vLLM ---
    ("vllm-trust-remote-code", "prod", D, C0 + ("args",), [cj(f"{DEP} container 'vllm'", f"{C0P}.args")]),
    ("vllm-runtime-lora-admin-closed", "runtime-lora", "deny-admin", ("priority",),
     [cj("listener 'https'", "defaultActions / rules")]),
    ("vllm-runtime-lora-admin-closed", "prod", D, C0 + ("env",), [cj(f"{DEP} container 'vllm'", f"{C0P}.env")]),
    ("vllm-secrets-not-plain", "prod", D, C0 + ("env",), [cj(f"{DEP} container 'vllm'", f"{C0P}.env")]),
    # --- reliability ---
    ("min-availability-zones", "prod", "private-c", ("availabilityZone",), [cj("subnet 'private-c'", "availabilityZone")]),
    ("min-availability-zones", "prod", "p5-ondemand", ("subnetIds",), [cj("node group 'p5-ondemand'", "subnetIds")]),
    ("serving-probes", "prod", D, C0 + ("startupProbe", "failureThreshold"),
     [cj(f"{DEP} serving container 'vllm'", f"{C0P}.startupProbe.failureThreshold")]),
    ("serving-probes", "prod", "vllm-task", ("containerDefinitions",), [cj("ECS task 'vllm-task'", "containerDefinitions")]),
    ("serving-pdb", "prod", "llama-3-1-8b-pdb", ("spec", "maxUnavailable"),
     [cj(DEP, "spec of PodDisruptionBudget 'llama-3-1-8b-pdb'")]),
    ("spot-interruption-queue", "prod", "spot-interruption", ("eventPattern",),
     [cj("Karpenter NodePool 'g5-lora'", "eventPattern of EventBridge rule 'spot-interruption'")]),
    ("resource-requests", "prod", D, C0 + ("resources",), [cj(f"{DEP} container 'vllm'", f"{C0P}.resources")]),
    ("vllm-shared-memory", "prod", D, C0 + ("volumeMounts",), [cj(DEP, f"{C0P}.volumeMounts")]),
    ("lws-recreate-group-on-restart", "prod", "llama-3-1-70b", ("spec", "leaderWorkerTemplate", "restartPolicy"),
     [cj("LeaderWorkerSet llmserving/llama-3-1-70b", "spec.leaderWorkerTemplate.restartPolicy")]),
    ("serving-graceful-shutdown", "prod", D, POD + ("terminationGracePeriodSeconds",),
     [cj(DEP, "spec.template.spec.terminationGracePeriodSeconds")]),
    ("ecs-deployment-circuit-breaker", "prod", "vllm-svc", ("deploymentCircuitBreaker",),
     [cj("ECS service 'vllm-svc'", "deploymentCircuitBreaker")]),
    ("gpu-nodepool-when-empty", "prod", "g5-lora", ("spec", "disruption", "consolidationPolicy"),
     [cj("GPU NodePool 'g5-lora'", "spec.disruption.consolidationPolicy")]),
    ("serving-min-replicas", "prod", "llama-3-1-8b-scaler", ("spec", "minReplicaCount"),
     [cj(DEP, "spec.minReplicaCount of 'llama-3-1-8b-scaler'")]),
    ("gpu-pool-on-demand-fallback", "prod", "p5-ondemand", ("capacityType",), [cj("node group 'p5-ondemand'", "capacityType")]),
    ("nodepool-disruption-budget", "prod", "g5-lora", ("spec", "disruption", "budgets"),
     [cj("NodePool 'g5-lora'", "spec.disruption.budgets")]),
    ("node-ami-pinned", "prod", "gpu", ("spec", "amiSelectorTerms"), [cj("EC2NodeClass 'gpu'", "spec.amiSelectorTerms")]),
    # An AMI id looked up at preview (an SSM data source) is a resolved id: pinned.
    ("node-ami-pinned", "prod", "ecs-gpu-lt", ("imageId",), []),
    ("ecs-health-check-grace", "prod", "vllm-svc", ("healthCheckGracePeriodSeconds",),
     [cj("ECS service 'vllm-svc'", "healthCheckGracePeriodSeconds")]),
    ("container-memory-limits", "prod", D, C0 + ("resources", "limits", "memory"),
     [cj(f"{DEP} container 'vllm'", f"{C0P}.resources.limits.memory")]),
    ("ecs-log-configuration", "prod", "vllm-task", ("containerDefinitions",), [cj("ECS task 'vllm-task'", "containerDefinitions")]),
    # The task's memory from an output, the container's own hard limit known: judged from the known part.
    ("ecs-container-memory-limits", "prod", "vllm-task", ("memory",), []),
    ("eks-version-supported", "prod", "cluster", ("version",), [cj("EKS cluster 'cluster'", "version")]),
]


def _id(case):
    return f"{case[0]}:{case[2]}:{'.'.join(map(str, case[3]))}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_unknown_input_is_reported_never_a_false_violation_or_a_silent_pass(pack, case):
    policy, kind, name, path, expected = case
    violations = [v for v in judge_one_rule(pack, kind, name, path, UNKNOWN, policy) if v.policy == policy]
    assert [rule_message(v) for v in violations if v.level == "mandatory"] == []
    assert sorted(v.message for v in violations if v.level == "advisory") == sorted(expected)
    assert all(v.message.startswith("could not judge: ") for v in violations)


def test_every_rule_that_reads_inputs_has_an_unknown_fixture(pack):
    # stateful-protected reads only the `protect` option, which is never unknown.
    judged = {c[0] for c in CASES}
    assert {p.name for p in pack.info.policies} - judged == {"stateful-protected"}


ECS_RULES = ["gpu-parallelism-matches-request", "vllm-api-key-required", "images-pinned", "no-privileged-containers",
             "serving-probes", "vllm-shared-memory", "ecs-container-memory-limits", "ecs-log-configuration",
             "vllm-trust-remote-code", "vllm-secrets-not-plain", "ecs-health-check-grace", "vllm-runtime-lora-admin-closed"]


def test_unknown_container_definitions_are_reported_by_every_ecs_rule(pack):
    # A task definition built from secret ARNs and the log group's name is unknown as a whole on a first preview:
    # every rule that judges its containers says so (it used to judge nothing, silently).
    regs, stack = world("prod")
    regs = mutate(regs, "vllm-task", ("containerDefinitions",), UNKNOWN)
    got = {(v.policy, v.level, v.message) for v in pack.judge(regs, shipped_config(stack), stack)}
    expected = {(p, "advisory", cj("ECS task 'vllm-task'", "containerDefinitions")) for p in ECS_RULES}
    assert got == expected


def test_a_typed_unknown_sentinel_is_unknown_too(pack):
    # The engine marks an unknown boolean with its own sentinel (rpc.go UnknownBoolValue).
    regs, stack = world("prod")
    regs = mutate(regs, "alb", ("dropInvalidHeaderFields",), "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7")
    got = [(v.level, v.message) for v in pack.judge(regs, shipped_config(stack), stack, only={"alb"},
                                                    stack_policies=False)]
    assert got == [("advisory", cj("load balancer 'alb'", "dropInvalidHeaderFields"))]


def test_known_bad_parts_still_fail_beside_an_unknown(pack):
    # One pool's size unknown, the known pools already over the budget: a mandatory verdict from the known parts.
    regs, stack = world("prod")
    regs = mutate(regs, "ecs-gpu", ("maxSize",), UNKNOWN)
    regs = mutate(regs, "p5-ondemand", ("scalingConfig", "maxSize"), 5)
    v = [x for x in pack.judge(regs, shipped_config(stack), stack, only=set()) if x.policy == "cost-max-hourly-within-budget"]
    assert [(x.level, rule_message(x)) for x in v] == [
        ("mandatory", "GPU capacity at max size costs up to $356.64/hour (node group 'p5-ondemand' $275.20, Karpenter "
                      "NodePool 'g5-lora' $81.44); the stack budget is $320/hour")]


def test_unjudged_advisories_never_block_the_preview_exit_status(pack):
    # The preview exits 1 only on mandatory violations (infra/preview.py); an unjudged input is advisory at any level.
    regs, stack = world("prod")
    for name, path in (("p5-ondemand", ("scalingConfig", "maxSize")), ("adapters-writer-policy", ("policy",)),
                       ("vllm-task", ("containerDefinitions",)), ("alb-sg", ("ingress",))):
        regs = mutate(regs, name, path, UNKNOWN)
    violations = pack.judge(regs, shipped_config(stack), stack)
    assert violations and {v.level for v in violations} == {"advisory"}
    assert all(v.message.startswith("could not judge: ") for v in violations)


def test_an_sqs_key_created_in_the_same_stack_counts_as_encryption(pack):
    # The example: a queue encrypted with a KMS key of the same stack (its id unknown at preview) used to
    # raise a false mandatory violation.
    regs, stack = world("prod")
    regs = mutate(regs, "interruptions", ("sqsManagedSseEnabled",), False)
    regs = mutate(regs, "interruptions", ("kmsMasterKeyId",), UNKNOWN)
    assert [v for v in pack.judge(regs, shipped_config(stack), stack, only={"interruptions"}, stack_policies=False)
            if v.policy == "sqs-encrypted"] == []
