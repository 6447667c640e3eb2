"""ECS GPU cluster and vLLM ECS service components."""

from __future__ import annotations

import base64
import json

import pytest

from components.ecs_gpu_cluster import EcsCapacityPool, EcsGpuCluster, EcsGpuClusterArgs, validate_ecs_gpu_cluster_args
from components.errors import ArgsError
from components.vllm_ecs_service import (AdapterSync, VllmEcsService, VllmEcsServiceArgs, sync_script,
                                        validate_vllm_ecs_service_args)
from components.vllm_server_args import LoraSpec, VllmServerSpec
from infra.mockcloud import _digest
from tests.aws_models import enum, instance_types
from tests.harness import inputs, of_type, one, run_component
from tests.test_vllm_server_args import assert_real_flags

TAGS = {"project": "llmserving", "stack": "test", "environment": "dev", "tier": "small"}
AMI_PARAM = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"


def _pool(**over) -> EcsCapacityPool:
    base = dict(name="g5", instance_types=("g5.12xlarge", "g5.24xlarge"), gpus_per_instance=4,
                capacity_type="spot-with-on-demand-fallback", min_size=1, max_size=4, desired_size=2,
                root_volume_gib=300, on_demand_base_capacity=1)
    base.update(over)
    return EcsCapacityPool(**base)


def _cluster_args(**over) -> EcsGpuClusterArgs:
    base = dict(cluster_name="llmserving-test", vpc_id="vpc-1", subnet_ids=["subnet-a", "subnet-b"],
                pools=(_pool(), _pool(name="p5", instance_types=("p5.48xlarge",), gpus_per_instance=8,
                                      capacity_type="on-demand", min_size=0, max_size=2, desired_size=1)),
                tags=TAGS)
    base.update(over)
    return EcsGpuClusterArgs(**base)


@pytest.fixture(scope="module")
def cluster_run():
    return run_component(lambda: EcsGpuCluster("gpu", _cluster_args()))


def test_cluster_has_container_insights_and_is_protected(cluster_run):
    c = one(cluster_run, "aws:ecs/cluster:Cluster")
    assert inputs(c)["settings"] == [{"name": "containerInsights", "value": "enhanced"}]
    assert inputs(c)["settings"][0]["name"] in enum("ecs", "ClusterSettingName")
    assert c.protect


def test_launch_templates_use_the_ecs_gpu_ami_imdsv2_and_encrypted_root(cluster_run):
    lts = {inputs(r)["name"]: inputs(r) for r in of_type(cluster_run, "aws:ec2/launchTemplate:LaunchTemplate")}
    assert set(lts) == {"llmserving-test-g5", "llmserving-test-p5"}
    for lt in lts.values():
        # The mock answers the SSM parameter with ami-<digest of its name>: the AMI came from SSM.
        assert lt["imageId"] == f"ami-{_digest(AMI_PARAM)}"
        assert lt["metadataOptions"]["httpTokens"] == "required"
        assert lt["metadataOptions"]["httpPutResponseHopLimit"] == 1
        ebs = lt["blockDeviceMappings"][0]["ebs"]
        assert ebs["encrypted"] == "true" and ebs["volumeType"] == "gp3"
        script = base64.b64decode(lt["userData"]).decode()
        assert "ECS_CLUSTER=llmserving-test" in script and "ECS_ENABLE_GPU_SUPPORT=true" in script
    assert lts["llmserving-test-g5"]["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 300


def test_auto_scaling_groups_mix_spot_over_an_on_demand_base(cluster_run):
    asgs = {inputs(r)["name"]: r for r in of_type(cluster_run, "aws:autoscaling/group:Group")}
    g5 = inputs(asgs["llmserving-test-g5"])
    dist = g5["mixedInstancesPolicy"]["instancesDistribution"]
    assert dist == {"onDemandBaseCapacity": 1, "onDemandPercentageAboveBaseCapacity": 0,
                    "spotAllocationStrategy": "price-capacity-optimized"}
    overrides = g5["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
    assert [o["instanceType"] for o in overrides] == ["g5.12xlarge", "g5.24xlarge"]
    assert (g5["minSize"], g5["maxSize"], g5["desiredCapacity"]) == (1, 4, 2)
    assert g5["protectFromScaleIn"] is True and g5["capacityRebalance"] is True
    assert {"key": "AmazonECSManaged", "value": "true", "propagateAtLaunch": True} in g5["tags"]
    assert "desiredCapacity" in asgs["llmserving-test-g5"].ignore_changes
    p5 = inputs(asgs["llmserving-test-p5"])["mixedInstancesPolicy"]["instancesDistribution"]
    assert p5["onDemandPercentageAboveBaseCapacity"] == 100


def test_capacity_providers_use_managed_scaling(cluster_run):
    cps = [inputs(r) for r in of_type(cluster_run, "aws:ecs/capacityProvider:CapacityProvider")]
    assert len(cps) == 2
    for cp in cps:
        p = cp["autoScalingGroupProvider"]
        assert p["managedScaling"]["status"] == "ENABLED" and p["managedScaling"]["targetCapacity"] == 100
        assert p["managedTerminationProtection"] == "ENABLED" and p["managedDraining"] == "ENABLED"
        assert p["managedScaling"]["status"] in enum("ecs", "ManagedScalingStatus")
        assert p["managedTerminationProtection"] in enum("ecs", "ManagedTerminationProtection")
        assert p["managedDraining"] in enum("ecs", "ManagedDraining")
    attached = inputs(one(cluster_run, "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"))
    assert attached["capacityProviders"] == ["llmserving-test-g5", "llmserving-test-p5"]


def test_instance_types_exist_in_botocore(cluster_run):
    for r in of_type(cluster_run, "aws:autoscaling/group:Group"):
        for o in inputs(r)["mixedInstancesPolicy"]["launchTemplate"]["overrides"]:
            assert o["instanceType"] in instance_types()


def test_bad_cluster_args_are_listed_before_anything_exists():
    with pytest.raises(ArgsError) as e:
        validate_ecs_gpu_cluster_args(_cluster_args(
            pools=(_pool(instance_types=("g5 12xlarge",), min_size=5, capacity_type="reserved"),),
            ami_parameter="/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"))
    assert e.value.problems == [
        "pools[g5].instance_types: got 'g5 12xlarge'; not an EC2 instance type name such as g5.12xlarge",
        "pools[g5].capacity_type: got 'reserved'; allowed: on-demand, spot, spot-with-on-demand-fallback",
        "pools[g5]: sizes min 5 <= desired 2 <= max 4 do not hold",
        "ami_parameter: got '/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id'; must be an "
        "ECS-optimized GPU AMI parameter",
    ]


# --- vLLM ECS service ------------------------------------------------------------------------------

def _server(**over) -> VllmServerSpec:
    base = dict(served_model_name="llama-3-1-8b", model="meta-llama/Llama-3.1-8B-Instruct", precision="bf16",
                checkpoint_precision="bf16", tensor_parallel=2, pipeline_parallel=1, max_model_len=8192,
                gpu_memory_utilization=0.9, gpu_compute_capability=8.0)
    base.update(over)
    return VllmServerSpec(**base)


def _service_args(**over) -> VllmEcsServiceArgs:
    base = dict(
        service_name="llama-3-1-8b", name_prefix="llmserving-test", cluster_name="llmserving-test",
        cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/llmserving-test", capacity_provider="llmserving-test-p4d",
        account_id="123456789012", region="us-east-1", image="vllm/vllm-openai:v0.11.1",
        server=_server(),
        gpus_per_task=2, instance_gpus=8, instance_memory_mib=1152 * 1024, instance_vcpus=96, vpc_id="vpc-1",
        subnet_ids=["subnet-a", "subnet-b", "subnet-c"], alb_security_group_id="sg-alb",
        target_group_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1",
        alb_arn_suffix="app/llmserving-test/abc", target_group_arn_suffix="targetgroup/t/1",
        desired_count=4, min_count=2, max_count=8, requests_per_target_per_minute=120,
        secrets={"VLLM_API_KEY": "arn:aws:secretsmanager:us-east-1:123456789012:secret:key"},
        environment={"VLLM_NO_USAGE_STATS": "1"}, tags={**TAGS, "model": "llama-3-1-8b"})
    base.update(over)
    return VllmEcsServiceArgs(**base)


@pytest.fixture(scope="module")
def service_run():
    return run_component(lambda: VllmEcsService("svc", _service_args()))


def _container(run) -> dict:
    td = inputs(one(run, "aws:ecs/taskDefinition:TaskDefinition"))
    (container,) = json.loads(td["containerDefinitions"])
    return container


def test_task_definition_reserves_gpus_shm_and_checks_health(service_run):
    td = inputs(one(service_run, "aws:ecs/taskDefinition:TaskDefinition"))
    assert td["family"] == "llmserving-test-llama-3-1-8b"
    assert td["networkMode"] == "awsvpc" and td["networkMode"] in enum("ecs", "NetworkMode")
    assert td["requiresCompatibilities"] == ["EC2"] and set(td["requiresCompatibilities"]) <= enum("ecs", "Compatibility")
    c = _container(service_run)
    assert c["image"] == "vllm/vllm-openai:v0.11.1" and c["entryPoint"] == ["vllm", "serve"]
    assert c["resourceRequirements"] == [{"type": "GPU", "value": "2"}]
    assert c["resourceRequirements"][0]["type"] in enum("ecs", "ResourceType")
    # p4d.24xlarge: 4 tasks of 2 GPUs share 96 vCPUs and 1,152 GiB at 85%.
    assert c["cpu"] == int(96 * 1024 * 0.85 // 4) and c["memoryReservation"] == int(1152 * 1024 * 0.85 // 4)
    assert c["linuxParameters"]["sharedMemorySize"] == 2 * 4096
    assert {u["name"] for u in c["ulimits"]} == {"memlock", "nofile"} and {u["name"] for u in c["ulimits"]} <= enum("ecs", "UlimitName")
    hc = c["healthCheck"]
    assert "http://localhost:8000/health" in hc["command"][1] and hc["startPeriod"] == 300
    assert c["logConfiguration"]["logDriver"] == "awslogs" and c["logConfiguration"]["logDriver"] in enum("ecs", "LogDriver")
    assert c["logConfiguration"]["options"]["awslogs-group"] == "/llmserving/ecs/llmserving-test/llama-3-1-8b"
    # The Hugging Face token is the mirror task's alone (components/vllm_ecs_service.py MirrorTask).
    assert c["secrets"] == [{"name": "VLLM_API_KEY", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:key"}]
    assert not any("api-key" in a for a in c["command"])
    assert c["stopTimeout"] == 120


def test_task_runs_the_canonical_vllm_arguments(service_run):
    c = _container(service_run)
    assert_real_flags(c["command"])
    a = c["command"]
    assert a[0] == "meta-llama/Llama-3.1-8B-Instruct"
    assert [a[a.index(f) + 1] for f in ("--served-model-name", "--port", "--tensor-parallel-size", "--dtype")] == [
        "llama-3-1-8b", "8000", "2", "bfloat16"]
    assert "--enable-lora" not in a and "dependsOn" not in c and "mountPoints" not in c
    assert inputs(one(service_run, "aws:ecs/taskDefinition:TaskDefinition")).get("volumes") in (None, [])


def test_service_rolls_back_spreads_zones_and_waits_for_model_load(service_run):
    svc = one(service_run, "aws:ecs/service:Service")
    s = inputs(svc)
    assert s["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert s["orderedPlacementStrategies"][0] == {"type": "spread", "field": "attribute:ecs.availability-zone"}
    assert {p["type"] for p in s["orderedPlacementStrategies"]} <= enum("ecs", "PlacementStrategyType")
    assert s["capacityProviderStrategies"] == [{"capacityProvider": "llmserving-test-p4d", "weight": 1, "base": 0}]
    assert s["healthCheckGracePeriodSeconds"] == 1200
    assert s["loadBalancers"] == [{"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1",
                                   "containerName": "vllm", "containerPort": 8000}]
    assert s["networkConfiguration"]["assignPublicIp"] is False
    assert s["propagateTags"] in enum("ecs", "PropagateTags")
    assert s["availabilityZoneRebalancing"] in enum("ecs", "AvailabilityZoneRebalancing")
    assert "desiredCount" in svc.ignore_changes and s["desiredCount"] == 4


def test_autoscaling_tracks_alb_requests_per_target(service_run):
    target = inputs(one(service_run, "aws:appautoscaling/target:Target"))
    assert (target["minCapacity"], target["maxCapacity"]) == (2, 8)
    assert target["resourceId"] == "service/llmserving-test/llama-3-1-8b"
    assert target["scalableDimension"] in enum("application-autoscaling", "ScalableDimension")
    assert target["serviceNamespace"] in enum("application-autoscaling", "ServiceNamespace")
    policy = inputs(one(service_run, "aws:appautoscaling/policy:Policy"))
    assert policy["policyType"] in enum("application-autoscaling", "PolicyType")
    spec = policy["targetTrackingScalingPolicyConfiguration"]
    assert spec["predefinedMetricSpecification"] == {"predefinedMetricType": "ALBRequestCountPerTarget",
                                                     "resourceLabel": "app/llmserving-test/abc/targetgroup/t/1"}
    assert spec["predefinedMetricSpecification"]["predefinedMetricType"] in enum("application-autoscaling", "MetricType")
    assert spec["targetValue"] == 120


def test_execution_role_reads_only_its_secrets(service_run):
    policies = [json.loads(inputs(r)["policy"]) for r in of_type(service_run, "aws:iam/rolePolicy:RolePolicy")]
    (doc,) = policies
    assert doc["Statement"][0]["Resource"] == ["arn:aws:secretsmanager:us-east-1:123456789012:secret:key"]


HF_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hf"
MIRROR_URI = "s3://llmserving-test-models-123456789012-us-east-1/meta-llama/Llama-3.1-8B-Instruct/" + "a" * 40 + "/"


def _mirror():
    from components.vllm_ecs_service import MirrorTask

    return MirrorTask(image="vllm/vllm-openai:v0.11.1", task_role_arn="arn:aws:iam::123456789012:role/writer",
                      secrets={"HF_TOKEN": HF_ARN}, environment={"MIRROR_SOURCE": "meta-llama/Llama-3.1-8B-Instruct"})


def test_the_hf_token_never_reaches_the_serving_task():
    with pytest.raises(ArgsError) as e:
        validate_vllm_ecs_service_args(_service_args(secrets={"HF_TOKEN": HF_ARN}))
    assert e.value.problems == ["secrets: HF_TOKEN given to the serving task; only the mirror task reads the Hub"]


def test_mirror_task_is_a_run_once_task_definition_with_the_token_and_a_run_task_command():
    server = _server(model=MIRROR_URI, load_format="runai_streamer")
    run = run_component(lambda: VllmEcsService("svc", _service_args(server=server, mirror=_mirror())))
    defs = {inputs(r)["family"]: json.loads(inputs(r, reveal_secrets=True)["containerDefinitions"])
            for r in of_type(run, "aws:ecs/taskDefinition:TaskDefinition")}
    (mirror,) = defs["llmserving-test-llama-3-1-8b-mirror"]
    (serving,) = defs["llmserving-test-llama-3-1-8b"]
    from components.model_mirror import MIRROR_SCRIPT

    assert mirror["entryPoint"] == ["python3", "-c"] and mirror["command"] == [MIRROR_SCRIPT]
    assert [s["name"] for s in mirror["secrets"]] == ["HF_TOKEN"] and "portMappings" not in mirror
    assert all(s["name"] != "HF_TOKEN" for s in serving["secrets"])
    assert serving["command"][0] == MIRROR_URI and "runai_streamer" in serving["command"]
    # No service runs the mirror (a service would restart a task that exits, copying forever).
    assert len(of_type(run, "aws:ecs/service:Service")) == 1


def test_mirror_run_task_command_waits_past_the_cli_waiter_and_checks_the_exit_code():
    from components.vllm_ecs_service import mirror_run_task_command

    cmd = mirror_run_task_command(cluster="c", family="f-mirror", capacity_provider="cp", security_group="sg-1",
                                  subnets=["subnet-a", "subnet-b"], region="us-east-1")
    assert cmd.startswith("task=$(aws ecs run-task --region us-east-1 --cluster c --task-definition f-mirror ")
    assert "subnets=[subnet-a,subnet-b],securityGroups=[sg-1],assignPublicIp=DISABLED" in cmd
    assert "wait tasks-stopped" not in cmd and "= STOPPED ]; do sleep 30; done" in cmd
    assert cmd.endswith("--query 'tasks[0].containers[0].exitCode' --output text)\" = 0")


def test_task_asking_more_gpus_than_its_instance_has_is_rejected():
    with pytest.raises(ArgsError) as e:
        validate_vllm_ecs_service_args(_service_args(gpus_per_task=8, instance_gpus=4, server=_server(tensor_parallel=8)))
    assert e.value.problems == ["gpus_per_task: got 8; the pool's instances have 4 GPUs, so the task could never "
                                "be placed (at most 4)"]


def test_other_bad_service_args_are_listed_together():
    with pytest.raises(ArgsError) as e:
        validate_vllm_ecs_service_args(_service_args(
            image="vllm/vllm-openai:latest", server=_server(kv_cache_dtype="float8", tensor_parallel=4),
            health_check_start_period_seconds=600, min_count=5))
    assert e.value.problems == [
        "image: got 'vllm/vllm-openai:latest'; pin a tag or digest (never :latest)",
        "server.kv_cache_dtype: got 'float8'; allowed: auto, fp8, fp8_e4m3, fp8_e5m2",
        "server.tensor_parallel: got 4; must equal gpus_per_task 2",
        "counts: min 5 <= desired 4 <= max 8 do not hold",
        "health_check_start_period_seconds: got 600; ECS allows 0-300 (use load_grace_period_seconds for longer model loads)",
    ]


# --- LoRA adapters copied into the task ----------------------------------------------------------

SYNC = AdapterSync(image="amazon/aws-cli:2.31.18", bucket="llmserving-test-adapters",
                   manifest_key="manifests/ecs/test/llama-3-1-8b/adapters-0123456789abcdef.tsv")
LORA = LoraSpec(max_loras=8, max_lora_rank=64, max_cpu_loras=32,
                modules=(("acme-support", "/adapters/acme-support"), ("globex-sql", "/adapters/globex-sql")))


@pytest.fixture(scope="module")
def lora_run():
    return run_component(lambda: VllmEcsService("svc", _service_args(server=_server(lora=LORA), adapter_sync=SYNC,
                                                                      task_role_arn="arn:aws:iam::123456789012:role/reader")))


def test_adapter_sync_runs_before_vllm_in_the_same_task(lora_run):
    td = inputs(one(lora_run, "aws:ecs/taskDefinition:TaskDefinition"))
    sync, vllm = json.loads(td["containerDefinitions"])
    assert td["volumes"] == [{"name": "adapters"}] and td["taskRoleArn"] == "arn:aws:iam::123456789012:role/reader"
    assert (sync["name"], sync["essential"], sync["image"]) == ("adapter-sync", False, "amazon/aws-cli:2.31.18")
    # The sync writes the shared volume at /var/tmp (1777 in the aws-cli image, copied into the empty
    # volume, so its non-root user can write); vLLM reads it at /adapters (components/vllm_ecs_service.py).
    assert sync["mountPoints"] == [{"sourceVolume": "adapters", "containerPath": "/var/tmp", "readOnly": False}]
    assert {e["name"]: e["value"] for e in sync["environment"]} == {
        "HOME": "/tmp", "LORA_ADAPTER_BUCKET": "llmserving-test-adapters",
        "LORA_ADAPTER_MANIFEST": "manifests/ecs/test/llama-3-1-8b/adapters-0123456789abcdef.tsv"}
    assert sync["memoryReservation"] <= sync["memory"] and "secrets" not in sync and "portMappings" not in sync
    assert vllm["name"] == "vllm" and vllm["essential"] is True
    assert vllm["dependsOn"] == [{"containerName": "adapter-sync", "condition": "SUCCESS"}]
    assert vllm["dependsOn"][0]["condition"] in enum("ecs", "ContainerCondition")
    assert vllm["mountPoints"] == [{"sourceVolume": "adapters", "containerPath": "/adapters", "readOnly": True}]
    a = vllm["command"]
    assert_real_flags(a)
    assert [a[a.index(f) + 1] for f in ("--max-loras", "--max-lora-rank", "--max-cpu-loras")] == ["8", "64", "32"]
    i = a.index("--lora-modules")
    assert a[i + 1:i + 3] == ["acme-support=/adapters/acme-support", "globex-sql=/adapters/globex-sql"]
    env = {e["name"] for e in vllm["environment"]}
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in env


def test_adapter_sync_script_copies_only_manifest_prefixes_and_fails_closed():
    script = sync_script(SYNC)
    assert script.startswith("set -euo pipefail; ")
    assert '"s3://${LORA_ADAPTER_BUCKET}/tenants/$tenant/$adapter/" "/var/tmp/$adapter/"' in script
    assert "aws s3 sync" in script and "--delete" not in script and "s3 cp --only-show-errors" in script
    import subprocess

    subprocess.run(["bash", "-n", "-c", script], check=True)


def test_runtime_loading_is_refused_on_ecs():
    args = _service_args(server=_server(lora=LoraSpec(max_loras=4, max_lora_rank=16)),
                         adapter_sync=AdapterSync(**{**SYNC.__dict__, "runtime_loading": True}))
    with pytest.raises(ArgsError) as e:
        validate_vllm_ecs_service_args(args)
    assert e.value.problems == ["adapter_sync.runtime_loading: got True; on ECS adapters are named at start "
                                "(--lora-modules); runtime loading is built for EKS"]


def test_lora_without_adapter_sync_or_outside_the_volume_is_rejected():
    with pytest.raises(ArgsError) as e:
        validate_vllm_ecs_service_args(_service_args(server=_server(lora=LORA)))
    assert e.value.problems == ["adapter_sync: got none; --lora-modules names local paths but nothing copies "
                                "adapters into the task"]
    with pytest.raises(ArgsError) as e:
        validate_vllm_ecs_service_args(_service_args(
            server=_server(lora=LoraSpec(max_loras=8, max_lora_rank=48, modules=(("a", "/models/a"),))),
            adapter_sync=AdapterSync(**{**SYNC.__dict__, "image": "amazon/aws-cli:latest"})))
    assert e.value.problems == [
        "server.lora.max_lora_rank: got 48; vLLM allows only 1, 8, 16, 32, 64, 128, 256, 320, 512",
        "adapter_sync.image: got 'amazon/aws-cli:latest'; pin a tag or digest (never :latest)",
        "server.lora.modules: got a=/models/a; adapters are copied to /adapters/, so the path must be under it",
    ]


def test_task_definition_over_the_ecs_size_limit_is_rejected():
    modules = tuple((f"tenant-adapter-{i:04d}", f"/adapters/tenant-adapter-{i:04d}") for i in range(2000))
    with pytest.raises(ArgsError) as e:
        validate_vllm_ecs_service_args(_service_args(
            server=_server(lora=LoraSpec(max_loras=8, max_lora_rank=64, modules=modules)), adapter_sync=SYNC))
    (problem,) = e.value.problems
    assert problem.startswith("server: the container definitions take ") and "ECS allows at most 65536" in problem
