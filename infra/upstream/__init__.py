"""Vendored upstream artefacts (see README.md here) and their loaders.

Pure functions: they read the pinned files and never touch the network. The
components take what these return as typed args (the Karpenter controller's
policy templates, the AWS Load Balancer Controller's policy), so a component
never hard-codes a policy that upstream publishes per release.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
KARPENTER_CFN = "karpenter-v1.14.1-cloudformation.yaml"
ALB_CONTROLLER_POLICY = "aws-load-balancer-controller-v3.5.0-iam_policy.json"
CLUSTER_AUTOSCALER_POLICY = "cluster-autoscaler-1.33.6-iam-policy.json"
DCGM_DEFAULT_COUNTERS = "dcgm-exporter-4.4.1-4.6.0-default-counters.csv"

# The only parameters the Karpenter template's `!Sub` policy documents use:
# pseudo parameters, the ClusterName parameter and the node role / queue ARNs
# of resources the template itself creates (here: the Karpenter component).
KARPENTER_SUBSTITUTIONS = ("AWS::Partition", "AWS::Region", "AWS::AccountId", "ClusterName",
                           "KarpenterNodeRole.Arn", "KarpenterInterruptionQueue.Arn")
SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


def sources() -> dict[str, dict]:
    return json.loads((HERE / "SOURCES.json").read_text())


def sha256(name: str) -> str:
    return hashlib.sha256((HERE / name).read_bytes()).hexdigest()


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Sub, !GetAtt, !Ref) as ("Tag", value)."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        return (suffix, loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return (suffix, loader.construct_sequence(node, deep=True))
    return (suffix, loader.construct_mapping(node, deep=True))


_CfnLoader.add_multi_constructor("!", _tagged)


@functools.lru_cache(maxsize=None)
def karpenter_template() -> dict:
    return yaml.load((HERE / KARPENTER_CFN).read_text(), Loader=_CfnLoader)


def karpenter_controller_policy_templates() -> dict[str, str]:
    """Upstream's controller policy documents, by the template's logical id, as `!Sub` strings.

    Every `AWS::IAM::ManagedPolicy` of the getting-started template belongs to
    the controller role (NodeLifecycle, IAMIntegration, EKSIntegration,
    Interruption, ZonalShift, ResourceDiscovery).
    """
    out: dict[str, str] = {}
    for logical_id, res in karpenter_template()["Resources"].items():
        if res.get("Type") != "AWS::IAM::ManagedPolicy":
            continue
        doc = res["Properties"]["PolicyDocument"]
        if not (isinstance(doc, tuple) and doc[0] == "Sub" and isinstance(doc[1], str)):
            raise ValueError(f"{KARPENTER_CFN}: {logical_id} is not a !Sub policy string; the loader needs updating")
        out[logical_id] = doc[1]
    return out


def sub_variables(template: str) -> set[str]:
    return set(SUB_VARIABLE.findall(template))


def alb_controller_policy(partition: str = "aws") -> dict:
    """The AWS Load Balancer Controller's policy for `partition`.

    Upstream publishes the `aws` file and per-partition copies whose only
    difference is the ARN partition (and statement order), so the partition is
    the one substitution.
    """
    text = (HERE / ALB_CONTROLLER_POLICY).read_text()
    if partition != "aws":
        text = text.replace('"arn:aws:', f'"arn:{partition}:')
    return json.loads(text)


def cluster_autoscaler_policy() -> dict:
    """The Cluster Autoscaler's "full features" policy (auto-discovery, dynamic instance list, EKS
    DescribeNodegroup), as its AWS README publishes it. Upstream leaves the write statement on
    `*` and recommends narrowing it by ASG ARN or tag condition; components/cluster_autoscaler.py
    adds the tag condition."""
    return json.loads((HERE / CLUSTER_AUTOSCALER_POLICY).read_text())


def dcgm_default_counters() -> str:
    """The DCGM exporter's default counters CSV of the pinned chart (what it exports unless told otherwise)."""
    return (HERE / DCGM_DEFAULT_COUNTERS).read_text()
