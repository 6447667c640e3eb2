"""Cost guardrails: every resource carries the cost-allocation tags."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, PolicyConfigSchema, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from rules.common import TAGGABLE_TYPES, config_value

DEFAULT_REQUIRED_TAGS = ["project", "stack", "environment", "tier"]


def _cost_allocation_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in TAGGABLE_TYPES:
        return
    required = config_value(args, "requiredTags", DEFAULT_REQUIRED_TAGS)
    tags = args.props.get("tags") or {}
    missing = [t for t in required if not tags.get(t)]
    if missing:
        report(f"{args.resource_type} '{args.name}' lacks cost-allocation tags: {', '.join(missing)}")


cost_allocation_tags = ResourceValidationPolicy(
    name="cost-allocation-tags",
    description="Taggable AWS resources carry the cost-allocation tags (project, stack, environment, tier) so spend is attributable.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_cost_allocation_tags,
    config_schema=PolicyConfigSchema(properties={
        "requiredTags": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_REQUIRED_TAGS},
    }),
)

POLICIES = [cost_allocation_tags]
