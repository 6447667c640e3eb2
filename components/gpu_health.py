"""What counts as a failed GPU: shared by the alert rules (components/observability.py) and the ECS
instance health check (components/ecs_gpu_cluster.py). No component here.

NVIDIA XID codes after which a GPU is not trusted with traffic until the node is replaced or reset.
Source: the EKS node monitoring agent's table of well-known XIDs and their repair actions
(awsdocs/amazon-eks-user-guide latest/ug/nodes/node-health-nma.adoc, "NVIDIA XID error codes"):
every code it repairs by Replace (74 NVLink, 79 fallen off the bus, 119/120 GSP, 121 C2C,
140 unrecovered ECC) plus the memory-hardware codes it reboots for (48 double-bit ECC, 64 row
remapping failure, 95 uncontained memory error). Left out on purpose: 13 and 31 (engine exception,
page fault: usually the application), 63 (row remapping event, recoverable) and 94 (contained
memory error: the application restarts).
"""

from __future__ import annotations

FATAL_XIDS: tuple[int, ...] = (48, 64, 74, 79, 95, 119, 120, 121, 140)
