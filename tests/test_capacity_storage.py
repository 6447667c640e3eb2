"""Issue 12.3: GPU nodes put their instance-store NVMe to use (RAID0) and their gp3 root volumes get explicit
throughput and IOPS; the node-level cache path is the same on every node path.

Upstream:
- AL2023 nodeadm NodeConfig `spec.instance.localStorage.strategy` (RAID0 | RAID10 | Mount) and the mount
  it produces (/mnt/k8s-disks/0, kubelet/containerd bind-mounted onto it): awslabs/amazon-eks-ami v20251103
  nodeadm/api/v1alpha1/nodeconfig_types.go, templates/shared/runtime/bin/setup-local-disks;
- managed node group user data must be a MIME multi-part archive; EKS merges its own NodeConfig
  (awsdocs/amazon-eks-user-guide latest/ug/nodes/launch-templates.adoc, "Amazon Linux 2023 user data");
- Karpenter `instanceStorePolicy: RAID0` (v1.14.1 docs concepts/nodeclasses.md; EC2NodeClass CRD enum);
- gp3 throughput 125-2000 MiB/s, IOPS 3000-80000 (botocore ec2 LaunchTemplateEbsBlockDeviceRequest).
"""

from __future__ import annotations

import base64
import email
import json

import pytest

from components.ecs_gpu_cluster import EcsCapacityPool, EcsGpuCluster, EcsGpuClusterArgs
from components.gpu_node_group import GpuNodeGroup, GpuNodeGroupArgs, nodeadm_user_data
from infra import catalog as cat
from infra import ecs_capacity
from infra import eks_catalog as ec
from infra import eks_platform
from tests.aws_models import launch_template_data, shape_problems
from tests.harness import inputs, of_type, one, run_component, run_stack, settings_for, shipped_preview
from tests.k8s_validation import validate_object
from tests.test_capacity_scaling import ng_args

LT = "aws:ec2/launchTemplate:LaunchTemplate"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODECLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
# nodeadm v20251103 LocalStorageStrategy (kubebuilder enum).
NODEADM_STRATEGIES = ("RAID0", "RAID10", "Mount")


def _node_configs(user_data_b64: str) -> list[dict]:
    msg = email.message_from_bytes(base64.b64decode(user_data_b64))
    assert msg.is_multipart() and msg.get_content_type() == "multipart/mixed"
    out = []
    for part in msg.walk():
        if part.get_content_type() == "application/node.eks.aws":
            text = part.get_payload()
            out.append(json.loads(text.split("---", 1)[1]))
    return out


def test_managed_group_user_data_asks_nodeadm_for_raid0():
    res = shipped_preview("prod")["resources"]
    ng = next(r for r in res if r["type"] == NODE_GROUP and r["inputs"]["nodeGroupName"] != "system")
    [lt] = [r for r in res if r["type"] == LT and r["urn"] in ng["dependencies"]]
    [cfg] = _node_configs(lt["inputs"]["userData"])
    assert cfg["apiVersion"] == "node.eks.aws/v1alpha1" and cfg["kind"] == "NodeConfig"
    assert cfg["spec"] == {"instance": {"localStorage": {"strategy": "RAID0"}}}
    assert cfg["spec"]["instance"]["localStorage"]["strategy"] in NODEADM_STRATEGIES
    # No cluster details: EKS merges them in (a full NodeConfig here would pin a stale endpoint/CA).
    assert "cluster" not in cfg["spec"]
    assert ng["inputs"]["labels"][ec.LOCAL_NVME_LABEL] == "raid0"


def test_raid0_user_data_is_only_for_al2023():
    from components.errors import ArgsError
    with pytest.raises(ArgsError, match="the nodeadm NodeConfig is AL2023's"):
        GpuNodeGroup("ng", ng_args(ami_type="BOTTLEROCKET_x86_64_NVIDIA", local_storage_raid0=True))


@pytest.mark.parametrize("stack", ["dev", "prod", "large-use1-a"])
def test_karpenter_gpu_classes_use_raid0_and_fast_gp3(stack):
    res = shipped_preview(stack)["resources"]
    classes = [r["inputs"] for r in res if r["type"] == NODECLASS]
    assert classes
    for nc in classes:
        validate_object(nc)
        assert nc["spec"]["instanceStorePolicy"] == "RAID0"
        [bdm] = nc["spec"]["blockDeviceMappings"]
        assert (bdm["ebs"]["throughput"], bdm["ebs"]["iops"]) == (1000, 8000)
    for pool in (r["inputs"] for r in res if r["type"] == NODEPOOL):
        assert pool["spec"]["template"]["metadata"]["labels"][ec.LOCAL_NVME_LABEL] == "raid0"


@pytest.mark.parametrize("stack", ["prod", "large-use1-a"])
def test_gpu_launch_templates_are_valid_ec2_requests_with_gp3_performance(stack):
    res = shipped_preview(stack)["resources"]
    gpu_lts = [r for r in res if r["type"] == LT and r["name"].endswith("-lt") and "system" not in r["name"]]
    assert gpu_lts
    for lt in gpu_lts:
        data = launch_template_data(lt["inputs"])
        assert shape_problems("ec2", "RequestLaunchTemplateData", data) == []
        ebs = data["BlockDeviceMappings"][0]["Ebs"]
        assert (ebs["VolumeType"], ebs["Throughput"], ebs["Iops"]) == ("gp3", 1000, 8000)


def test_gp3_figures_are_within_what_ebs_allows():
    throughput, iops = eks_platform.root_volume_performance()
    assert 125 <= throughput <= 2000 and 3000 <= iops <= 80000
    assert throughput <= iops / 4  # EBS: at most 0.25 MiB/s per provisioned IOPS
    assert shape_problems("ec2", "LaunchTemplateEbsBlockDeviceRequest",
                          {"VolumeType": "gp3", "Throughput": throughput, "Iops": iops}) == []


def test_a_pool_without_instance_store_gets_no_raid0():
    pools = [{"name": "g5-spot", "instanceTypes": ["g5.2xlarge"], "capacityType": "spot-with-on-demand-fallback",
              "minNodes": 0, "maxNodes": 16, "rootVolumeGib": 200}]
    changes = {"llmserving:gpuPools": pools,
               "llmserving:catalog": {"instanceTypes": {"g5.2xlarge": {"instanceStoreGb": 0}}}}
    settings = settings_for("dev", changes)
    assert not eks_platform.has_instance_store(settings, settings.config.gpu_pools[0])
    run = run_stack("dev", changes)
    nc = inputs(one(run, NODECLASS))
    assert "instanceStorePolicy" not in nc["spec"]
    assert ec.LOCAL_NVME_LABEL not in inputs(one(run, NODEPOOL))["spec"]["template"]["metadata"]["labels"]


def test_every_catalog_gpu_type_has_its_instance_store():
    # Karpenter v1.14.1 instance-types.md (instance-local-nvme): p4d/p4de 8000 GB, p5 30400 GB, g5.xlarge 250 GB.
    nvme = {n: t.instance_store_gb for n, t in cat.INSTANCE_TYPES.items()}
    assert (nvme["p4d.24xlarge"], nvme["p5.48xlarge"], nvme["g5.xlarge"], nvme["g6e.48xlarge"]) == (8000, 30400, 250, 7600)
    assert all(v > 0 for v in nvme.values())


def test_cache_path_is_on_the_array_on_every_node_path():
    # nodeadm and Karpenter mount the array at <mountPath>/0 (default /mnt/k8s-disks/); ECS mounts its own there.
    assert ec.NODE_LOCAL_STORAGE_MOUNT == "/mnt/k8s-disks/0"
    assert ec.NODE_CACHE_HOST_PATH.startswith(ec.NODE_LOCAL_STORAGE_MOUNT + "/")
    defaults = EcsGpuClusterArgs(cluster_name="c", vpc_id="v", subnet_ids=["s"], pools=())
    assert (defaults.local_storage_mount, defaults.cache_path, defaults.nvme_attribute) == (
        ec.NODE_LOCAL_STORAGE_MOUNT, ec.NODE_CACHE_HOST_PATH, ec.LOCAL_NVME_LABEL)


def test_ecs_pool_assembles_its_instance_store_and_fast_root():
    settings = settings_for("prod")
    extra = ecs_capacity.pool_args(settings, "p5-ondemand")
    assert extra["local_nvme_raid0"] and (extra["root_volume_throughput_mibs"], extra["root_volume_iops"]) == (1000, 8000)
    pool = EcsCapacityPool(name="p5", instance_types=("p5.48xlarge",), gpus_per_instance=8, capacity_type="on-demand",
                           min_size=0, max_size=2, desired_size=1,
                           **{k: v for k, v in extra.items() if k != "capacity_reservation_ids"})
    run = run_component(lambda: EcsGpuCluster("ecs", EcsGpuClusterArgs(
        cluster_name="llmserving-test", vpc_id="vpc-1", subnet_ids=["subnet-a"], pools=(pool,), protect=False,
        **ecs_capacity.cluster_args(settings, cache_owner_uid=1000))))
    lt = inputs(one(run, LT))
    assert shape_problems("ec2", "RequestLaunchTemplateData", launch_template_data(lt)) == []
    script = base64.b64decode(lt["userData"]).decode()
    assert "-name '*NVMe_Instance_Storage_*'" in script and "mdadm --create /dev/md/llmserving --run --force --level=0" in script
    assert f"mount -o defaults,noatime \"$dev\" {ec.NODE_LOCAL_STORAGE_MOUNT}" in script
    assert f"install -d -m 0755 -o 1000 -g 1000 {ec.NODE_CACHE_HOST_PATH}" in script
    assert '"llmserving.io/local-nvme": "raid0"' in script  # one ECS_INSTANCE_ATTRIBUTES JSON (test_nodecache_ecs_boot.py)
    # The acknowledgement reaches the group as a tag the policy reads.
    tags = {t["key"]: t["value"] for t in inputs(one(run, "aws:autoscaling/group:Group"))["tags"]}
    assert tags["llmserving.io/no-reservation-ack"].startswith("no reservation purchased yet")


def test_nodeadm_user_data_is_one_mime_archive():
    [cfg] = _node_configs(nodeadm_user_data({"instance": {"localStorage": {"strategy": "RAID0"}}}))
    assert cfg["spec"]["instance"]["localStorage"]["strategy"] == "RAID0"
