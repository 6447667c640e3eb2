"""Issue 10 item 17 (e, f): alerts reach someone; Prometheus keeps its 90 days on a real volume."""

from __future__ import annotations

import json

import pytest

from infra import edge_catalog as ec
from tests.harness import inputs, of_type, one, shipped_run, stack_value
from tests.k8s_validation import validate_object
from tests.test_serving import k8s_object

PROM = "kubernetes:helm.sh/v3:Release"


def _release(run):
    return one(run, PROM, "kube-prometheus-stack")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_alertmanager_routes_every_alert_to_the_stacks_sns_topic(stack):
    # Without a receiver Alertmanager drops alerts (the chart's default route ends at "null").
    # Alertmanager sns_configs sign with SigV4 from the default AWS credential chain; EKS Pod
    # Identity is in it for aws-sdk-go >= v1.47.11 (EKS user guide, "Use pod identity with the AWS
    # SDK"; prometheus/alertmanager go.mod: aws-sdk-go v1.55.6).
    run = shipped_run(stack)
    release = _release(run)
    values = inputs(release)["values"]
    am = values["alertmanager"]
    assert am["enabled"] is True
    route, receivers = am["config"]["route"], {r["name"]: r for r in am["config"]["receivers"]}
    default = receivers[route["receiver"]]
    (sns,) = default["sns_configs"]
    topic = one(run, "aws:sns/topic:Topic")
    assert sns["topic_arn"].endswith(inputs(topic)["name"])  # the stack's own topic
    assert sns["sigv4"] == {"region": "us-east-1"}
    # Only the chart's always-firing Watchdog (and InfoInhibitor) are silenced.
    assert {r["receiver"] for r in route["routes"]} == {"null"}
    assert all("Watchdog" in r["matchers"][0] or "InfoInhibitor" in r["matchers"][0] for r in route["routes"])
    # The topic mails the budget's recipients.
    emails = {inputs(s)["endpoint"] for s in of_type(run, "aws:sns/topicSubscription:TopicSubscription")
              if inputs(s)["protocol"] == "email" and inputs(s)["topic"] == sns["topic_arn"]}
    assert emails == set(stack_value(stack, "llmserving:budget")["notifyEmails"])
    # Alertmanager's service account gets a role that may only publish to that topic, before its pod starts.
    sa = am["serviceAccount"]["name"]
    (assoc,) = [r for r in of_type(run, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
                if inputs(r)["serviceAccount"] == sa]
    assert inputs(assoc)["namespace"] == inputs(release)["namespace"] == "monitoring"
    assert inputs(assoc)["clusterName"] == f"llmserving-{stack}"
    assert assoc.urn in release.dependencies
    role = next(r for r in of_type(run, "aws:iam/role:Role") if inputs(r)["name"] == inputs(assoc)["roleArn"].split("/")[-1])
    trust = json.loads(inputs(role)["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    (policy,) = [r for r in of_type(run, "aws:iam/rolePolicy:RolePolicy") if r.parent == role.parent
                 and "sns:Publish" in inputs(r)["policy"]]
    assert json.loads(inputs(policy)["policy"])["Statement"] == [
        {"Action": "sns:Publish", "Effect": "Allow", "Resource": sns["topic_arn"]}]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_prometheus_keeps_its_retention_on_an_encrypted_gp3_volume(stack):
    run = shipped_run(stack)
    release = _release(run)
    spec = inputs(release)["values"]["prometheus"]["prometheusSpec"]
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    # The chart's default is an emptyDir on the node's root disk; a claim keeps the data.
    sc_name = claim["storageClassName"]
    sc_reg = one(run, "kubernetes:storage.k8s.io/v1:StorageClass", sc_name)
    sc = k8s_object(sc_reg)
    validate_object(sc)
    # EBS CSI driver (installed as an EKS add-on) parameters: kubernetes-sigs/aws-ebs-csi-driver docs/parameters.md.
    assert sc["provisioner"] == "ebs.csi.aws.com" and sc["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert any(inputs(a)["addonName"] == "aws-ebs-csi-driver" for a in of_type(run, "aws:eks/addon:Addon"))
    assert sc_reg.urn in release.dependencies  # the claim is created by the release
    # Size: retention x samples/s x bytes per sample (Prometheus docs, Storage), with headroom.
    days = int(spec["retention"].rstrip("d"))
    assert days == stack_value(stack, "llmserving:observability")["logRetentionDays"]
    f = {k: float(v.value) for k, v in ec.PROMETHEUS_STORAGE.items()}
    need_gib = days * 86_400 * f["active_series"] / f["scrape_interval_seconds"] * f["bytes_per_sample"] / 2**30
    size_gib = int(claim["resources"]["requests"]["storage"].removesuffix("Gi"))
    kept_gib = int(spec["retentionSize"].removesuffix("GB"))  # Prometheus parses GB as 2^30 bytes
    assert need_gib <= kept_gib < size_gib, (need_gib, kept_gib, size_gib)
