"""Helpers the policy modules share."""

from __future__ import annotations

from typing import Any, Iterable

# AWS resource types this project creates that take `tags` (cost allocation).
TAGGABLE_TYPES = frozenset({
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip", "aws:ec2/routeTable:RouteTable",
    "aws:ec2/vpcEndpoint:VpcEndpoint", "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/flowLog:FlowLog",
    "aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/placementGroup:PlacementGroup",
    "aws:cloudwatch/logGroup:LogGroup", "aws:iam/role:Role", "aws:kms/key:Key",
    "aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup", "aws:eks/addon:Addon",
    "aws:ecs/cluster:Cluster", "aws:ecs/service:Service", "aws:ecs/taskDefinition:TaskDefinition",
    "aws:autoscaling/group:Group", "aws:sqs/queue:Queue", "aws:cloudwatch/eventRule:EventRule",
    "aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2", "aws:lb/loadBalancer:LoadBalancer",
    "aws:lb/targetGroup:TargetGroup", "aws:wafv2/webAcl:WebAcl", "aws:budgets/budget:Budget",
})


def get(props: Any, *path: str, default: Any = None) -> Any:
    """props["a"]["b"]... or default, for the nested dicts policies receive."""
    cur = props
    for key in path:
        if not hasattr(cur, "get"):
            return default
        cur = cur.get(key)
        if cur is None:
            return default
    return cur


def of_type(resources: Iterable[Any], *types: str) -> list[Any]:
    return [r for r in resources if r.resource_type in types]


def config_value(args: Any, key: str, default: Any = None) -> Any:
    cfg = args.get_config() or {}
    return cfg.get(key, default)
