"""Issue 13.3: a failing GPU is taken out of service. Node repair on for every GPU pool of every shipped
stack (EKS node auto repair on managed node groups, Karpenter's NodeRepair gate, both fed by the EKS node
monitoring agent add-on), the policy gpu-node-repair through the pack's Analyzer, XID/ECC alert rules on
metrics the pinned DCGM exporter actually exports, and the ECS instance GPU health check.

Upstream: awsdocs/amazon-eks-user-guide latest/ug/nodes/node-repair.adoc (repair acts on the conditions the
node monitoring agent sets; Karpenter needs NodeRepair=true), node-health-nma.adoc (XID table);
aws/karpenter-provider-aws v1.14.1 charts/karpenter/values.yaml (settings.featureGates.nodeRepair: false by
default); NVIDIA/dcgm-exporter 4.4.1-4.6.0 etc/default-counters.csv (vendored in infra/upstream).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess

import pytest

from components.ecs_gpu_cluster import (HEALTH_SCRIPT, EcsCapacityPool, EcsGpuCluster, EcsGpuClusterArgs,
                                        gpu_health_script)
from components.gpu_health import FATAL_XIDS
from components.observability import GPU_HEALTH_METRICS, AlertThresholds, ObservabilityArgs, DcgmScrape, render
from infra import eks_catalog as ec
from infra import policy_config, upstream
from infra.analyzer import run_policy_pack
from tests.harness import (ROOT, inputs, of_type, one, only_policy, run_component, settings_for, shipped_preview,
                           shipped_run)
from tests.iam_sim import ACCOUNT, Request, evaluate
from tests.k8s_validation import validate_object

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
RELEASE = "kubernetes:helm.sh/v3:Release"
ADDON = "aws:eks/addon:Addon"
SHIPPED = ["dev", "prod", "large-use1-a"]
GPU_TAINT = ("nvidia.com/gpu", "true", "NoSchedule")


def _gpu_groups(resources: list[dict]) -> list[dict]:
    return [r for r in resources if r["type"] == NODE_GROUP and (r["inputs"].get("labels") or {}).get("nvidia.com/gpu.present")]


def _tolerates(tolerations: list[dict], taint: tuple) -> bool:
    key, value, effect = taint
    return any(t.get("effect") in (None, effect) and t.get("key") in (None, key)
               and (t.get("operator") == "Exists" or str(t.get("value")) == value) for t in tolerations)


@pytest.mark.parametrize("stack", SHIPPED)
def test_every_gpu_pool_of_every_shipped_stack_is_repaired(stack):
    res = shipped_preview(stack)["resources"]
    [agent] = [r for r in res if r["type"] == ADDON and r["inputs"]["addonName"] == ec.NODE_MONITORING_AGENT]
    assert agent["inputs"]["addonVersion"] == ec.NODE_MONITORING_AGENT_VERSIONS["1.33"].value
    # Its DCGM host engine DaemonSet has no tolerations by default (chart v1.7.0 values.yaml dcgmAgent):
    # without this, tainted GPU nodes get no DCGM checks.
    assert _tolerates(json.loads(agent["inputs"]["configurationValues"])["dcgmAgent"]["tolerations"], GPU_TAINT)
    for ng in _gpu_groups(res):
        assert ng["inputs"]["nodeRepairConfig"]["enabled"] is True
        # Watched from the first boot: the group waits for the agent.
        assert agent["urn"] in ng["dependencies"]
    pools = [r for r in res if r["type"] == NODEPOOL]
    if pools:
        [k] = [r for r in res if r["type"] == RELEASE and r["inputs"]["name"] == "karpenter"]
        assert k["inputs"]["values"]["settings"]["featureGates"]["nodeRepair"] is True
    assert _gpu_groups(res) or pools


def _judge(regs) -> list[str]:
    cfg = policy_config.policy_config(settings_for("prod"))
    # Only the rule read below runs (as prod configures it); the pack's other rules are disabled.
    violations, _ = run_policy_pack(ROOT / "policies", regs, policy_config=only_policy(cfg, "gpu-node-repair") or cfg,
                                    project="llmserving", stack="prod", stack_config={}, stack_tags={})
    return sorted(v.message.split("\n", 1)[1] for v in violations if v.policy == "gpu-node-repair")


def _prod_with(mutate) -> list:
    regs = copy.deepcopy(shipped_run("prod").registrations)
    return [r for r in regs if mutate(r) is not False]


def test_node_repair_policy_passes_prod():
    assert _judge(shipped_run("prod").registrations) == []


def test_node_repair_policy_fails_a_node_group_without_repair():
    def off(r):
        if r.type == NODE_GROUP and r.inputs.get("nodeRepairConfig"):
            r.inputs["nodeRepairConfig"]["enabled"] = False
    assert _judge(_prod_with(off)) == [
        "GPU node group 'llmserving-prod-p5-ondemand-gpu' has no node auto repair (nodeRepairConfig.enabled is False); "
        "a failed GPU node stays in service"]


def test_node_repair_policy_fails_karpenter_without_the_gate():
    def off(r):
        if r.type == RELEASE and r.inputs.get("name") == "karpenter":
            r.inputs["values"]["settings"]["featureGates"]["nodeRepair"] = False
    assert _judge(_prod_with(off)) == [
        "GPU Karpenter NodePool 'g5-lora': the Karpenter release does not enable the NodeRepair feature gate "
        "(values settings.featureGates.nodeRepair; off by default), so Karpenter never replaces an unhealthy node"]


def test_node_repair_policy_fails_without_the_monitoring_agent():
    def drop(r):
        return not (r.type == ADDON and r.inputs.get("addonName") == ec.NODE_MONITORING_AGENT)
    assert _judge(_prod_with(drop)) == [
        "node group 'llmserving-prod-p5-ondemand-gpu', Karpenter NodePool 'g5-lora': no eks-node-monitoring-agent "
        "add-on; EKS node auto repair and Karpenter's NodeRepair act on the node conditions it sets (a failed GPU is "
        "never detected without it)"]


# --- XID / ECC alerts on what the exporter exports ---------------------------------------------------------

def _exported(counters_csv: str) -> set[str]:
    return {line.split(",")[0].strip() for line in counters_csv.splitlines()
            if line.strip() and not line.lstrip().startswith("#")}


def test_default_exporter_counters_lack_the_ecc_fields():
    # What the pinned chart exports unless told otherwise: XIDs yes, ECC and pending retirements no.
    default = _exported(upstream.dcgm_default_counters())
    assert "DCGM_FI_DEV_XID_ERRORS" in default
    assert not {"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "DCGM_FI_DEV_RETIRED_PENDING"} & default


@pytest.mark.parametrize("stack", ["prod", "large-use1-a"])  # dev runs no DCGM exporter
def test_gpu_health_alerts_read_metrics_the_exporter_exports(stack):
    res = shipped_preview(stack)["resources"]
    [dcgm] = [r for r in res if r["type"] == RELEASE and r["inputs"]["name"] == "dcgm-exporter"]
    exported = _exported(dcgm["inputs"]["values"]["customMetrics"])
    assert _exported(upstream.dcgm_default_counters()) <= exported  # nothing the dashboard reads is lost
    [rule] = [r for r in res if r["type"] == "kubernetes:monitoring.coreos.com/v1:PrometheusRule"]
    validate_object(rule["inputs"])
    [group] = [g for g in rule["inputs"]["spec"]["groups"] if g["name"] == "gpu-health"]
    alerts = {a["alert"]: a for a in group["rules"]}
    assert {"GpuFatalXidError", "GpuXidError", "GpuDoubleBitEccError", "GpuSingleBitEccErrorsHigh"} <= set(alerts)
    read = {m for a in group["rules"] for m in re.findall(r"DCGM_FI_[A-Z_]+", a["expr"])}
    assert read == set(GPU_HEALTH_METRICS) and read <= exported
    fatal = {int(x) for x in re.findall(r"DCGM_FI_DEV_XID_ERRORS == (\d+)", alerts["GpuFatalXidError"]["expr"])}
    assert fatal == set(FATAL_XIDS) and alerts["GpuFatalXidError"]["labels"]["severity"] == "critical"


def test_no_gpu_alerts_without_dcgm_metrics():
    args = ObservabilityArgs(namespace="llmserving", alerts=AlertThresholds(2.0, 10, 5, 0.95, 3))
    [rule] = [o for o in render(args) if o["kind"] == "PrometheusRule"]
    assert [g["name"] for g in rule["spec"]["groups"]] == ["vllm"]
    with_dcgm = ObservabilityArgs(namespace="llmserving", alerts=AlertThresholds(2.0, 10, 5, 0.95, 3),
                                  dcgm=DcgmScrape(namespace="gpu-monitoring", pod_labels={"app": "dcgm"}))
    [rule] = [o for o in render(with_dcgm) if o["kind"] == "PrometheusRule"]
    assert [g["name"] for g in rule["spec"]["groups"]] == ["vllm", "gpu-health"]


# --- ECS: the instance takes itself out of its group ---------------------------------------------------------

def _ecs_run():
    pool = EcsCapacityPool(name="p5", instance_types=("p5.48xlarge",), gpus_per_instance=8, capacity_type="on-demand",
                           min_size=0, max_size=2, desired_size=1)
    return run_component(lambda: EcsGpuCluster("ecs", EcsGpuClusterArgs(
        cluster_name="llmserving-test", vpc_id="vpc-1", subnet_ids=["subnet-a"], pools=(pool,), protect=False)))


def test_ecs_instances_install_the_gpu_health_check_by_default():
    run = _ecs_run()
    data = base64.b64decode(inputs(one(run, "aws:ec2/launchTemplate:LaunchTemplate"))["userData"]).decode()
    assert HEALTH_SCRIPT in data and "systemctl enable --now llmserving-gpu-health.timer" in data
    assert "expected=8" in data and "set-instance-health" in data
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n"], input=data, text=True).returncode == 0


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("line, fatal", [
    ("NVRM: Xid (PCI:0000:10:1c): 79, pid=0, name=python3, GPU has fallen off the bus.", True),
    ("NVRM: Xid (PCI:0000:53:00): 48, pid=1234, name=vllm, An uncorrectable double bit error", True),
    ("NVRM: Xid (PCI:0000:53:00): 13, pid=1234, Graphics Exception", False),
    ("NVRM: Xid (PCI:0000:53:00): 31, pid=1234, MMU Fault", False),
])
def test_ecs_health_check_reads_fatal_xids_from_the_kernel_log(line, fatal):
    script = gpu_health_script(8, FATAL_XIDS)
    [pattern] = re.findall(r"grep -Eq '([^']+)'", script)
    got = subprocess.run(["bash", "-c", f"grep -Eq {json.dumps(pattern)}"], input=line + "\n", text=True).returncode
    assert (got == 0) == fatal


def test_ecs_instances_may_mark_only_their_own_groups_unhealthy():
    run = _ecs_run()
    [reg] = [r for r in of_type(run, "aws:iam/rolePolicy:RolePolicy") if r.name == "ecs-instance-health"]
    doc = json.loads(inputs(reg)["policy"])
    group = one(run, "aws:autoscaling/group:Group")
    # Exactly the cluster's groups, by their ARN outputs; the mock's ARN is not AWS-shaped, so evaluate with
    # the shape AWS gives an Auto Scaling group ARN.
    assert reg.property_dependencies["policy"] == [group.urn] and len(doc["Statement"][0]["Resource"]) == 1
    ours = inputs(group)["name"]
    arn = (f"arn:aws:autoscaling:us-east-1:{ACCOUNT}:autoScalingGroup:0a1b2c3d-0000-4000-8000-000000000000:"
           f"autoScalingGroupName/{ours}")
    doc["Statement"][0]["Resource"] = [arn]
    principal = f"arn:aws:sts::{ACCOUNT}:assumed-role/llmserving-test-gpu-instance/i-0123"
    other = arn.replace(ours, "someone-elses-group")
    assert evaluate([Request("autoscaling:SetInstanceHealth", arn, principal, {}, [doc]),
                     Request("autoscaling:SetInstanceHealth", other, principal, {}, [doc])]) == [
        "Allowed", "ImplicitlyDenied"]
