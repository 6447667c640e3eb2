"""Enum values and instance types from botocore's bundled AWS service models (offline)."""

from __future__ import annotations

from functools import lru_cache

import botocore.session


@lru_cache(maxsize=None)
def enum(service: str, shape: str) -> frozenset[str]:
    model = botocore.session.get_session().get_service_model(service)
    values = model.shape_for(shape).enum
    assert values, f"{service} shape {shape} has no enum"
    return frozenset(values)


def instance_types() -> frozenset[str]:
    return enum("ec2", "InstanceType")


# --- request shapes: what the provider would send, judged by botocore's service models ------------------

def _shape(service: str, name: str):
    return botocore.session.get_session().get_service_model(service).shape_for(name)


def shape_problems(service: str, shape_name: str, params: dict) -> list[str]:
    """Problems of `params` (API member names) as a `shape_name` request part: botocore's own
    parameter validation (unknown members, types, required members, minimums) plus enum membership,
    which botocore's validator leaves to the service."""
    from botocore.validate import ParamValidator

    shape = _shape(service, shape_name)
    report = ParamValidator().validate(params, shape)
    problems = [line.strip() for line in report.generate_report().splitlines() if line.strip()] \
        if report.has_errors() else []

    def walk(value, s, path: str) -> None:
        if s.type_name == "structure" and isinstance(value, dict):
            for k, v in value.items():
                if k in s.members:
                    walk(v, s.members[k], f"{path}.{k}")
        elif s.type_name == "list" and isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, s.member, f"{path}[{i}]")
        elif s.type_name == "string" and getattr(s, "enum", None) and value not in s.enum:
            problems.append(f"{path}: {value!r} is not one of {sorted(s.enum)}")
        elif s.type_name in ("integer", "long") and isinstance(value, int):
            lo, hi = s.metadata.get("min"), s.metadata.get("max")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                problems.append(f"{path}: {value} outside {lo}-{hi}")

    walk(params, shape, shape_name)
    return problems


# pulumi-aws (Terraform-bridged) input names of aws.ec2.LaunchTemplate that the EC2 API spells otherwise.
_LT_RENAMES = {"vpcSecurityGroupIds": "SecurityGroupIds", "securityGroups": "Groups"}
_LT_PROVIDER_ONLY = {"name", "namePrefix", "updateDefaultVersion", "defaultVersion", "tags", "description"}


def _api_value(value, shape):
    if shape.type_name == "structure" and isinstance(value, dict):
        out = {}
        for k, v in value.items():
            api = _LT_RENAMES.get(k, k[:1].upper() + k[1:])
            if shape.name == "LaunchTemplateTagSpecificationRequest" and k == "tags" and isinstance(v, dict):
                out["Tags"] = [{"Key": a, "Value": b} for a, b in v.items()]
                continue
            out[api] = _api_value(v, shape.members[api]) if api in shape.members else v
        return out
    if shape.type_name == "list" and isinstance(value, list):
        return [_api_value(v, shape.member) for v in value]
    if shape.type_name == "boolean" and isinstance(value, str):
        return value.lower() == "true"
    if shape.type_name in ("integer", "long") and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def launch_template_data(lt_inputs: dict) -> dict:
    """A recorded aws.ec2.LaunchTemplate's inputs as the EC2 API's RequestLaunchTemplateData (what the
    provider sends to CreateLaunchTemplate), member names and value types converted."""
    shape = _shape("ec2", "RequestLaunchTemplateData")
    return _api_value({k: v for k, v in lt_inputs.items() if k not in _LT_PROVIDER_ONLY}, shape)
