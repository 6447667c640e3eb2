"""EKS platform inputs: multi-node (EFA) pools and bad input rejected before any resource exists."""

from __future__ import annotations

import pytest

from infra import capacity
from infra.config import ConfigError
from tests.harness import inputs, of_type, one, run_stack, settings_for, stack_value

NODEGROUP = "aws:eks/nodeGroup:NodeGroup"


def _gpu_node_groups(run):
    return [inputs(r) for r in of_type(run, NODEGROUP) if inputs(r).get("taints")]


def test_prod_pipeline_parallel_model_gets_efa_and_placement_group():
    models = stack_value("prod", "llmserving:models")
    pools = stack_value("prod", "llmserving:gpuPools")
    models[0].update({"source": "meta-llama/Llama-3.1-405B-Instruct-FP8", "pipelineParallel": 2, "minReplicas": 1,
                      "maxReplicas": 2, "maxModelLen": 8192, "tokensPerSecondPerReplica": 10000})
    pools[0].update({"minNodes": 2, "maxNodes": 4})
    run = run_stack("prod", changes={"llmserving:models": models, "llmserving:gpuPools": pools})
    (ng,) = _gpu_node_groups(run)
    assert len(ng["subnetIds"]) == 1
    pg = inputs(one(run, "aws:ec2/placementGroup:PlacementGroup"))
    assert pg["strategy"] == "cluster"
    lt = next(inputs(r) for r in of_type(run, "aws:ec2/launchTemplate:LaunchTemplate") if inputs(r).get("placement"))
    assert len(lt["networkInterfaces"]) == 32 and lt["placement"]["groupName"] == pg["name"]


# --- bad input: rejected before any resource exists ------------------------------------

def _config_error(stack, changes=None, remove=()):
    with pytest.raises(Exception) as e:
        run_stack(stack, changes=changes, remove=remove)
    return str(e.value)


def test_unknown_instance_type_is_a_config_error():
    pools = stack_value("dev", "llmserving:gpuPools")
    pools[0]["instanceTypes"] = ["g5.2xlarg"]
    with pytest.raises(ConfigError) as e:
        settings_for("dev", {"llmserving:gpuPools": pools})
    assert "llmserving:gpuPools[0].instanceTypes[0]: got 'g5.2xlarg'; unknown GPU instance type (did you mean 'g5.2xlarge'?)" in str(e.value)


def test_tensor_parallel_larger_than_node_is_a_plan_error():
    models = stack_value("dev", "llmserving:models")
    models[0]["tensorParallel"] = 4
    with pytest.raises(capacity.PlanError) as e:
        capacity.plan(settings_for("dev", {"llmserving:models": models}))
    assert ("llmserving:models[0].tensorParallel: got 4; g5.2xlarge has 1 GPUs per node, so tensorParallel must be "
            "at most 1") in str(e.value)


def test_single_zone_prod_is_a_config_error():
    net = stack_value("prod", "llmserving:network")
    net["zoneCount"] = 2
    with pytest.raises(ConfigError) as e:
        settings_for("prod", {"llmserving:network": net})
    assert "llmserving:network.zoneCount: got 2; prod needs at least 3 zones" in str(e.value)
    net["zoneCount"] = 1
    with pytest.raises(ConfigError) as e:
        settings_for("prod", {"llmserving:network": net})
    assert "llmserving:network.zoneCount: got 1;" in str(e.value)


def test_missing_gpu_limits_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        settings_for("dev", remove=("llmserving:gpuLimits",))
    assert "llmserving:gpuLimits: required key is missing" in str(e.value)


def test_pool_planned_over_gpu_limit_fails_before_any_resource():
    limits = stack_value("dev", "llmserving:gpuLimits")
    limits["maxGpusPerPool"] = 4
    msg = _config_error("dev", {"llmserving:gpuLimits": limits})
    assert "llmserving:gpuLimits.maxGpusPerPool: got 4; pool 'g5-spot' is planned at 8 GPUs (8 x g5.2xlarge)" in msg


def test_platform_checks_run_before_any_resource_is_registered(monkeypatch):
    # The platform validation runs first in stack.build: a failing check leaves no resource behind.
    from infra import eks_platform
    from infra import mockcloud
    recorded = []
    original = mockcloud.RecordingMonitor.RegisterResource

    def spy(self, request):
        if request.type != "pulumi:pulumi:Stack":
            recorded.append(request.type)
        return original(self, request)

    monkeypatch.setattr(mockcloud.RecordingMonitor, "RegisterResource", spy)
    net = stack_value("prod", "llmserving:network")
    net["apiPublicCidrs"] = ["198.51.100.0/24"]
    msg = _config_error("prod", {"llmserving:network": net})
    assert "llmserving:network.apiPublicCidrs: got ['198.51.100.0/24']; prod clusters use a private API endpoint: reach it from the VPC" in msg
    assert recorded == []
    assert eks_platform.validate  # the check lives in infra/eks_platform.py


def test_karpenter_pool_for_multi_node_model_and_mng_fallback_are_config_errors():
    from infra import eks_platform
    pools = stack_value("prod", "llmserving:gpuPools")
    pools[0]["provisioner"] = "karpenter"
    pools[1].update({"provisioner": "managed-node-group"})
    models = stack_value("prod", "llmserving:models")
    models[0].update({"source": "meta-llama/Llama-3.1-405B-Instruct-FP8", "pipelineParallel": 2, "minReplicas": 1,
                      "maxReplicas": 2, "maxModelLen": 8192, "tokensPerSecondPerReplica": 10000})
    settings = settings_for("prod", {"llmserving:gpuPools": pools, "llmserving:models": models})
    with pytest.raises(ConfigError) as e:
        eks_platform.validate(settings, capacity.plan(settings))
    msg = str(e.value)
    assert "llmserving:gpuPools[0].provisioner: got 'karpenter'; pool 'p5-ondemand' serves a model split across nodes" in msg
    assert ("llmserving:gpuPools[1].capacityType: got 'spot-with-on-demand-fallback'; a managed node group has one "
            "capacity type") in msg


def test_running_role_listed_as_admin_is_warned_about_the_creator_access_entry():
    """EKS gives the cluster's creator admin access (CreateCluster accessConfig
    bootstrapClusterCreatorAdminPermissions defaults to true; pulumi-eks 4.4.0 does not change it):
    an access entry for the same role fails with ResourceInUseException."""
    from infra.eks_platform import creator_admin_entry_warnings
    from tests.harness import settings_for

    admin = "arn:aws:iam::123456789012:role/platform/Deployer"
    settings = settings_for("prod", {"llmserving:eks": {"adminRoleArns": [admin]}})
    [warning] = creator_admin_entry_warnings(settings, "arn:aws:sts::123456789012:assumed-role/Deployer/gh-run-42")
    assert warning.startswith(f"llmserving:eks.adminRoleArns lists {admin}, the role running this deploy")
    assert creator_admin_entry_warnings(settings, "arn:aws:sts::123456789012:assumed-role/Runner/x") == []
    assert creator_admin_entry_warnings(settings, "arn:aws:iam::123456789012:user/preview") == []
