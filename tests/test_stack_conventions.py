"""Conventions every shipped stack keeps (DESIGN.md, component conventions)."""

import json
import re

import pytest

from tests.harness import shipped_preview
from tests.snapshots import stacks

TOKEN = re.compile(r"^llmserving:[a-z_]+:[A-Z][A-Za-z]+$")


@pytest.mark.parametrize("stack", stacks())
def test_the_program_registers_only_components_at_top_level(stack):
    doc = shipped_preview(stack)
    root = f"urn:pulumi:{stack}::llmserving::pulumi:pulumi:Stack::llmserving-{stack}"
    top = {r["type"] for r in doc["resources"] if r["parent"] == root}
    assert top and all(TOKEN.match(t) for t in top), sorted(top)
    components = {r["type"] for r in doc["resources"] if not r["custom"] and r["type"].startswith("llmserving:")}
    assert all(TOKEN.match(t) for t in components), sorted(components)


@pytest.mark.parametrize("stack", stacks())
def test_iam_roles_have_deterministic_names(stack):
    roles = [r for r in shipped_preview(stack)["resources"] if r["type"] == "aws:iam/role:Role"]
    assert roles and [r["name"] for r in roles if not r["inputs"].get("name")] == []
    names = [r["inputs"]["name"] for r in roles]
    assert len(set(names)) == len(names) and all(len(n) <= 64 for n in names)


@pytest.mark.parametrize("stack", stacks())
def test_network_policies_are_enforced_by_the_vpc_cni(stack):
    doc = shipped_preview(stack)
    cni = next(r for r in doc["resources"] if r["type"] == "aws:eks/addon:Addon" and r["inputs"]["addonName"] == "vpc-cni")
    assert json.loads(cni["inputs"]["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert any(r["type"] == "kubernetes:networking.k8s.io/v1:NetworkPolicy" for r in doc["resources"])
