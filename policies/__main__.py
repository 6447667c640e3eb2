"""The llmserving CrossGuard policy pack.

`pulumi preview --policy-pack policies --policy-pack-config policies/config/<stack>.json`
runs it; the offline preview (`python -m infra.preview`) drives the same
process over the same Analyzer gRPC interface. One module per area.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from rules import capacity, cost, gpu, iam, network, pod_security, reliability, security, vllm

PolicyPack(
    name="llmserving-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[*gpu.POLICIES, *cost.POLICIES, *security.POLICIES, *iam.POLICIES, *network.POLICIES,
              *pod_security.POLICIES, *vllm.POLICIES, *reliability.POLICIES,
              *capacity.POLICIES],
)
