"""Validates rendered Kubernetes objects: core kinds with kubernetes-validate,
custom resources against the upstream CRDs in ../shared/crds (the
openAPIV3Schema of the served version, as JSON Schema)."""

from __future__ import annotations

import functools

import jsonschema
import kubernetes_validate
import yaml

from tests.harness import CRDS

K8S_VERSION = "1.33.0"


@functools.lru_cache(maxsize=None)
def _crd_schemas() -> dict[tuple[str, str], dict]:
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for v in doc["spec"]["versions"]:
                if v.get("served"):
                    out[(f"{group}/{v['name']}", kind)] = _strict(v["schema"]["openAPIV3Schema"])
    return out


def _strict(schema: dict) -> dict:
    """Unknown fields are errors (as the API server's strict field validation makes them)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) if isinstance(v, (dict, list)) else v for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(x) for x in schema]
    return schema


def validate_object(obj: dict) -> None:
    """Raises on an invalid object (jsonschema.ValidationError or kubernetes_validate errors)."""
    key = (obj["apiVersion"], obj["kind"])
    schemas = _crd_schemas()
    if key in schemas:
        # Draft 7 validator without a metaschema check: some CRD patterns use inline
        # regex flags Python's re rejects in a metaschema check (they are never reached here).
        errors = sorted(jsonschema.Draft7Validator(schemas[key]).iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            raise jsonschema.ValidationError(f"{key[1]} {obj['metadata'].get('name')}: "
                                             + "; ".join(f"{list(e.path)}: {e.message}" for e in errors))
        return
    if "." in obj["apiVersion"].split("/")[0] and not obj["apiVersion"].split("/")[0].endswith("k8s.io"):
        raise AssertionError(f"no CRD schema for {key} in {CRDS}")
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
