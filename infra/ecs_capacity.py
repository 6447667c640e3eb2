"""What the ECS GPU pools take from the capacity settings (docs/capacity.md).

`infra/ecs_platform.py` builds the `EcsGpuCluster`; these two functions give it the capacity side
of each pool and of the cluster, so the ECS platform calls:

    EcsCapacityPool(..., **ecs_capacity.pool_args(settings, name))
    EcsGpuClusterArgs(..., **ecs_capacity.cluster_args(settings))

- reservations: the pool's ODCR ids (the group fills them first, then launches on-demand);
- instance store: RAID0 of the local NVMe when every instance type of the pool has it, mounted
  where EKS nodes mount theirs, with the node-level cache inside (infra/eks_catalog.py);
- gp3 root volume throughput and IOPS (infra/eks_catalog.py GPU_ROOT_VOLUME);
- the GPU health check that marks a failed instance Unhealthy (components/gpu_health.py);
- the acknowledgement of an on-demand pool of scarce GPUs without a reservation, as a tag the
  policy pack reads (policies/rules/capacity.py).
"""

from __future__ import annotations

from typing import Any

from components.ecs_gpu_cluster import NODE_CACHE_ATTRIBUTE, GpuHealthCheck
from components.gpu_health import FATAL_XIDS
from infra import eks_catalog as ec
from infra.config import Settings

NO_RESERVATION_ACK = "llmserving.io/no-reservation-ack"


def pool_args(settings: Settings, name: str) -> dict[str, Any]:
    pool = settings.pool(name)
    v = ec.GPU_ROOT_VOLUME
    return {
        "root_volume_throughput_mibs": int(v["throughput_mibs"].value),
        "root_volume_iops": int(v["iops"].value),
        "capacity_reservation_ids": tuple(r.id for r in pool.capacity_reservations if r.id),
        "local_nvme_raid0": all(settings.catalog.instance(t).instance_store_gb > 0 for t in pool.instance_types),
        "tags": {NO_RESERVATION_ACK: pool.acknowledge_no_reservation} if pool.acknowledge_no_reservation else {},
    }


def cluster_args(settings: Settings, *, cache_owner_uid: int = 0) -> dict[str, Any]:
    """`cache_owner_uid`: the uid the serving containers run as (they write the node-level cache)."""
    return {
        "local_storage_mount": ec.NODE_LOCAL_STORAGE_MOUNT,
        "cache_path": ec.NODE_CACHE_HOST_PATH,
        "cache_owner_uid": cache_owner_uid,
        "nvme_attribute": ec.LOCAL_NVME_LABEL,
        # Every instance says it has the node cache; the services' tasks are constrained to it (infra/ecs_platform.py).
        "node_cache_attribute": NODE_CACHE_ATTRIBUTE,
        "gpu_health": GpuHealthCheck(fatal_xids=FATAL_XIDS),
    }
