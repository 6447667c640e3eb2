"""Security guardrails for the network layer."""

from __future__ import annotations

from pulumi_policy import (EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy,
                           StackValidationArgs, StackValidationPolicy)

from rules.common import of_type


def _no_public_ip_on_launch(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == "aws:ec2/subnet:Subnet" and args.props.get("mapPublicIpOnLaunch"):
        report(f"subnet '{args.name}' assigns public IPs on launch; GPU nodes must stay private (CKV_AWS_130)")


no_public_ip_on_launch = ResourceValidationPolicy(
    name="subnet-no-public-ip-on-launch",
    description="Subnets do not assign public IPs on launch (Checkov CKV_AWS_130).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_no_public_ip_on_launch,
)


def _vpc_flow_logs(args: StackValidationArgs, report: ReportViolation) -> None:
    logged = {r.props.get("vpcId") for r in of_type(args.resources, "aws:ec2/flowLog:FlowLog")}
    # Under preview a VPC id may be unknown; the flow log then points at the
    # VPC through a property dependency.
    logged_urns = {d.urn for r in of_type(args.resources, "aws:ec2/flowLog:FlowLog")
                   for d in r.property_dependencies.get("vpcId", [])}
    for vpc in of_type(args.resources, "aws:ec2/vpc:Vpc"):
        if vpc.urn not in logged_urns and vpc.props.get("id") not in logged:
            report(f"VPC '{vpc.name}' has no flow log (CKV2_AWS_11)", vpc.urn)


vpc_flow_logs = StackValidationPolicy(
    name="vpc-flow-logs",
    description="Every VPC has a flow log (Checkov CKV2_AWS_11).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_vpc_flow_logs,
)


def _log_retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == "aws:cloudwatch/logGroup:LogGroup" and not args.props.get("retentionInDays"):
        report(f"log group '{args.name}' keeps logs forever; set retentionInDays")


log_retention = ResourceValidationPolicy(
    name="log-group-retention",
    description="CloudWatch log groups set a retention period, so logs neither vanish nor bill forever.",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=_log_retention,
)

POLICIES = [no_public_ip_on_launch, vpc_flow_logs, log_retention]
