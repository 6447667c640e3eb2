"""Reliability guardrails: zone spread."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, PolicyConfigSchema, ReportViolation, StackValidationArgs, StackValidationPolicy

from rules.common import config_value, of_type


def _min_zones(args: StackValidationArgs, report: ReportViolation) -> None:
    minimum = int(config_value(args, "minZones", 2))  # policy config numbers arrive as floats
    private = [s for s in of_type(args.resources, "aws:ec2/subnet:Subnet")
               if (s.props.get("tags") or {}).get("kubernetes.io/role/internal-elb") == "1"]
    zones = sorted({s.props.get("availabilityZone") for s in private if s.props.get("availabilityZone")})
    if private and len(zones) < minimum:
        report(f"private subnets span {len(zones)} zone(s) ({', '.join(zones)}); at least {minimum} are required")


min_zones = StackValidationPolicy(
    name="min-availability-zones",
    description="Private (node) subnets span at least `minZones` availability zones.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_min_zones,
    config_schema=PolicyConfigSchema(properties={"minZones": {"type": "integer", "minimum": 1, "default": 2}}),
)

POLICIES = [min_zones]
