"""What a first real `pulumi up` of the EKS platform needs (issue 10: items 1, 5, 7, 14, 16).

Whole-stack checks run the real program under mocks (the shipped dev and prod
stacks, or a variant of their config) and judge what AWS, EKS, Helm and the
controllers would do with the recorded inputs.
"""

from __future__ import annotations

import json

import pytest

from tests.harness import shipped_preview

EKS_STACKS = ["dev", "prod"]


def _res(doc: dict, typ: str) -> list[dict]:
    return [r for r in doc["resources"] if r["type"] == typ]


def _release(doc: dict, release_name: str) -> dict:
    found = [r for r in _res(doc, "kubernetes:helm.sh/v3:Release") if r["inputs"].get("name") == release_name]
    assert len(found) == 1, [r["inputs"].get("name") for r in _res(doc, "kubernetes:helm.sh/v3:Release")]
    return found[0]


# --- item 14: IMDS hop limit 1 on every node path; controllers get region without IMDS -------------

@pytest.mark.parametrize("stack", EKS_STACKS)
def test_every_node_path_keeps_imds_one_hop_away(stack):
    """A pod is one network hop beyond its node: with hop limit 1 IMDSv2 answers never reach it,
    so no pod can take the node role's credentials (EKS best practices; CKV_AWS_341)."""
    doc = shipped_preview(stack)
    lts = _res(doc, "aws:ec2/launchTemplate:LaunchTemplate")
    classes = _res(doc, "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")
    assert lts and classes
    hops = {r["name"]: r["inputs"]["metadataOptions"]["httpPutResponseHopLimit"] for r in lts}
    hops.update({r["name"]: r["inputs"]["spec"]["metadataOptions"]["httpPutResponseHopLimit"] for r in classes})
    assert hops and set(hops.values()) == {1}, hops
    assert all(r["inputs"]["metadataOptions"]["httpTokens"] == "required" for r in lts)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_controllers_get_their_region_without_imds(stack):
    doc = shipped_preview(stack)
    region = "us-east-1"
    lbc = _release(doc, "aws-load-balancer-controller")["inputs"]["values"]
    vpc = _res(doc, "aws:ec2/vpc:Vpc")[0]
    assert lbc["region"] == region and lbc["vpcId"].startswith("vpc-")
    assert vpc["inputs"]["cidrBlock"]  # the stack's one VPC
    karpenter = _release(doc, "karpenter")["inputs"]["values"]
    assert {"name": "AWS_REGION", "value": region} in karpenter["controller"]["env"]
