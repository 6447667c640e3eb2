"""Validation of rendered Kubernetes objects.

Core kinds are checked with kubernetes-validate (strict: unknown fields are
errors); custom resources against the openAPIV3Schema of the served version
in the upstream CRDs under ../shared/crds/.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

CRDS = Path(__file__).resolve().parent.parent.parent / "shared" / "crds"
KUBERNETES_VERSION = "1.33.0"


@functools.lru_cache(maxsize=None)
def _crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema for every served version of every CRD."""
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                if v.get("served"):
                    out[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
    return out


def _unknown_fields(obj, schema: dict, path: str) -> list[str]:
    """Fields the structural schema does not declare (the API server would prune them silently)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(obj, dict) and "properties" in schema:
        for k, v in obj.items():
            if k in schema["properties"]:
                found += _unknown_fields(v, schema["properties"][k], f"{path}.{k}")
            elif not schema.get("additionalProperties") and not (path == "" and k in ("apiVersion", "kind", "metadata")):
                found.append(f"{path}.{k}")
    elif isinstance(obj, dict) and isinstance(schema.get("additionalProperties"), dict):
        for k, v in obj.items():
            found += _unknown_fields(v, schema["additionalProperties"], f"{path}.{k}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(obj):
            found += _unknown_fields(v, schema["items"], f"{path}[{i}]")
    return found


def validate_object(obj: dict) -> None:
    """Raises if `obj` is not a valid object of its apiVersion/kind."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    schemas = _crd_schemas()
    if key in schemas:
        jsonschema.validate(obj, schemas[key], cls=jsonschema.Draft7Validator)
        unknown = _unknown_fields(obj, schemas[key], "")
        if unknown:
            raise AssertionError(f"{key}: fields not in the CRD schema: {', '.join(unknown)}")
        return
    if "." in str(obj.get("apiVersion", "")).split("/")[0] and "/" in str(obj.get("apiVersion", "")):
        group = obj["apiVersion"].split("/")[0]
        if not group.endswith(".k8s.io"):
            raise AssertionError(f"no CRD schema for {key} under {CRDS}")
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
