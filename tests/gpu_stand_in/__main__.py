"""Test-only program: the real stack plus GPU capacity and a budget shaped as the EKS/edge
branches will register them (managed node groups per pool, an AWS Budgets cost budget).

The policies branch has no GPU resources of its own yet; this stand-in lets the preview tests
show that a broken stack file (too many GPUs, over budget) makes the offline preview exit 1
naming the rule. Once infra/eks_platform.py and infra/edge.py land, the same tests can run
against the real program.
"""

import pulumi
import pulumi_aws as aws

from infra.config import load_settings
from infra.stack import cost_tags, main, read_config_bag

main()
bag, secret_keys = read_config_bag()
settings = load_settings(bag, stack=pulumi.get_stack(), secret_keys=secret_keys, project=pulumi.get_project())
tags = cost_tags(settings)
for pool in settings.config.gpu_pools:
    aws.eks.NodeGroup(
        pool.name, cluster_name=f"llmserving-{settings.stack}", node_group_name=pool.name,
        node_role_arn="arn:aws:iam::123456789012:role/gpu-nodes", subnet_ids=["subnet-stand-in"],
        instance_types=pool.instance_types, ami_type="AL2023_x86_64_NVIDIA",
        capacity_type="ON_DEMAND" if pool.capacity_type == "on-demand" else "SPOT",
        scaling_config={"min_size": pool.min_nodes, "max_size": pool.max_nodes, "desired_size": pool.min_nodes},
        labels={"llmserving.io/pool": pool.name},
        taints=[{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}], tags=tags)
aws.budgets.Budget(
    "gpu-budget", budget_type="COST", time_unit="MONTHLY", limit_amount=str(settings.config.budget.monthly_usd),
    limit_unit="USD", tags=tags,
    notifications=[{"comparison_operator": "GREATER_THAN", "threshold": t, "threshold_type": "PERCENTAGE",
                    "notification_type": "ACTUAL", "subscriber_email_addresses": settings.config.budget.notify_emails}
                   for t in settings.config.budget.alert_thresholds_percent])
