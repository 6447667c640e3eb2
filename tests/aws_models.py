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
