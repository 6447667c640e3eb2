"""Validates rendered Kubernetes objects: custom resources against ../shared/crds, core kinds with kubernetes-validate."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from tests.harness import CRDS

K8S_VERSION = "1.33.0"


@lru_cache(maxsize=None)
def _crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in sorted(Path(CRDS).glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                schemas[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return schemas


def validate_object(obj: dict) -> None:
    """Raises jsonschema.ValidationError / kubernetes_validate errors on an invalid object."""
    key = (obj["apiVersion"], obj["kind"])
    schema = _crd_schemas().get(key)
    if schema is not None:
        jsonschema.validate(obj, schema)
        return
    import kubernetes_validate

    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
