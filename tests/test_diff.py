"""Pull-request previews: desired-state diff, destructive-change guard, cost delta, Markdown report."""

from __future__ import annotations

import json
import sys
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from infra import diff as D
from infra import pr_ack
from infra import preview as P
from tests.harness import ROOT, once_per_session, shipped_preview, stack_value

NET = "llmserving:network:Network"


# --- real stacks: base vs changed config -------------------------------------------

def write_stack_file(tmp: Path, stack: str, changes: dict) -> Path:
    """Pulumi.<stack>.yaml with config keys replaced (secure values kept as they are)."""
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    doc["config"].update(changes)
    path = tmp / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def dev_docs(tmp_path_factory):
    def run():
        tmp = tmp_path_factory.mktemp("dev")
        network = stack_value("dev", "llmserving:network")
        network["vpcCidr"] = "10.41.0.0/16"
        models = stack_value("dev", "llmserving:models")
        models[0]["minReplicas"] = 6  # llama-3-1-8b: more replicas -> more GPUs -> more $
        changed = write_stack_file(tmp, "dev", {"llmserving:network": network, "llmserving:models": models})
        # "again" is a run of its own, not the cached base: identical configs must give identical documents.
        return {"base": shipped_preview("dev"), "again": P.preview("dev"),
                "changed": P.preview("dev", stack_file=changed)}

    return once_per_session("test_diff.dev_docs", run)


def test_identical_configs_give_a_clean_diff(dev_docs):
    d = D.diff_documents(dev_docs["base"], dev_docs["again"])
    assert d.clean and d.flags == [] and d.unacknowledged == []
    assert d.cost["hourly_usd"]["delta"] == 0 and d.capacity["gpus_total"]["delta"] == 0
    assert d.capacity["models"] == {} and d.policy["new"] == [] and d.policy["resolved"] == []
    md = D.render_markdown(dev_docs["again"], d, base_label="main")
    assert "Desired state vs main: **no resource changes**." in md
    assert "✅ No destructive changes" in md
    assert "| $/hour (planned) | " in md and "| ±$0.00 |" in md
    assert "#### Resource changes" not in md


def test_changed_config_shows_replacements_cost_delta_and_flags(dev_docs):
    base, head = dev_docs["base"], dev_docs["changed"]
    d = D.diff_documents(base, head)
    by_name = {r.name: r for r in d.resources}
    vpc = by_name["llmserving-dev-vpc"]
    assert vpc.action == "replace"
    assert [(p.path, p.before, p.after, p.replaces) for p in vpc.properties] == [
        ("cidrBlock", "10.40.0.0/16", "10.41.0.0/16", True)]
    subnets = [r for r in d.resources if r.type == "aws:ec2/subnet:Subnet"]
    assert len(subnets) == 4 and {r.action for r in subnets} == {"replace"}
    assert {(f.type, f.action) for f in d.flags} == {("aws:ec2/vpc:Vpc", "replace"), ("aws:ec2/subnet:Subnet", "replace")}
    assert len(d.unacknowledged) == 5

    # cost and capacity: llama goes from its planned replicas to 6 (1 GPU each on g5.2xlarge)
    llama_b, llama_h = base["capacity"]["models"]["llama-3-1-8b"], head["capacity"]["models"]["llama-3-1-8b"]
    assert llama_h["replicas"] == 6 and llama_b["replicas"] < 6
    hourly = d.cost["hourly_usd"]
    assert hourly["delta"] > 0 and hourly["delta"] == round(head["cost"]["hourly_usd"] - base["cost"]["hourly_usd"], 2)
    gpus = d.capacity["gpus_total"]
    assert gpus["delta"] == llama_h["gpus"] - llama_b["gpus"] > 0

    md = D.render_markdown(head, d, base_label="main")
    assert "Desired state vs main: **0 to create, 6 to update, 5 to replace, 0 to delete**." in md
    assert "⛔ **5 destructive change(s) need acknowledgement**" in md
    assert "| `cidrBlock` | `\"10.40.0.0/16\"` | `\"10.41.0.0/16\"` | **replaces** |" in md
    assert (f"| $/hour (planned) | ${hourly['before']:,.2f} | ${hourly['after']:,.2f} | +${hourly['delta']:,.2f} |"
            in md)
    assert f"| GPUs (planned) | {gpus['before']} | {gpus['after']} | +{gpus['delta']} |" in md
    assert (f"replicas {llama_b['replicas']} → 6; min_replicas 1 → 6; gpus {llama_b['gpus']} → {llama_h['gpus']}"
            in md)
    assert "| +- replace | `llmserving-dev-vpc` | `aws:ec2/vpc:Vpc` | replaced: `cidrBlock` cannot change in place" in md
    assert "**Policies:** ✅ policies pass" in md
    assert "```mermaid" in md and re.search(r'subgraph n\d+\["Network llmserving-dev"\]', md) and '["Subnet x4"]' in md


def test_label_acknowledges_every_flag(dev_docs):
    ack = pr_ack.from_event({"pull_request": {"labels": [{"name": "allow-destructive"}], "body": ""}})
    d = D.diff_documents(dev_docs["base"], dev_docs["changed"], ack)
    assert d.unacknowledged == [] and {f.acknowledged_by for f in d.flags} == {"label allow-destructive"}
    md = D.render_markdown(dev_docs["changed"], d)
    assert "⚠️ **5 destructive change(s), all acknowledged.**" in md


def test_body_line_acknowledges_only_its_target(dev_docs):
    ack = pr_ack.from_event({"pull_request": {"labels": [], "body": "Widen the VPC.\r\n/allow-destructive aws:ec2/vpc:Vpc\r\n"}})
    d = D.diff_documents(dev_docs["base"], dev_docs["changed"], ack)
    assert [f.type for f in d.unacknowledged] == ["aws:ec2/subnet:Subnet"] * 4
    vpc_flag = next(f for f in d.flags if f.type == "aws:ec2/vpc:Vpc")
    assert vpc_flag.acknowledged_by == "PR body line `/allow-destructive aws:ec2/vpc:Vpc`"


# --- the CLI (preview itself stubbed with the documents above: fast) -----------------------

@pytest.fixture
def cli(dev_docs, tmp_path, monkeypatch):
    base = tmp_path / "base-dev.json"
    base.write_text(json.dumps(dev_docs["base"]))
    monkeypatch.setattr(P, "preview", lambda stack, stack_file=None: dev_docs["changed"])
    return base


@pytest.fixture
def no_readiness(cli, dev_docs, monkeypatch):
    """Isolates the destructive-change gate: a mandatory readiness finding (exit 1) would take precedence."""
    changed = {**dev_docs["changed"], "readiness": {"findings": []}}
    monkeypatch.setattr(P, "preview", lambda stack, stack_file=None: changed)


def test_cli_exits_4_on_unacknowledged_destructive_change_and_writes_markdown(cli, tmp_path, capsys, no_readiness):
    md = tmp_path / "dev.md"
    assert P.main(["--stack", "dev", "--diff", str(cli), "--markdown", str(md), "--quiet"]) == P.EXIT_DESTRUCTIVE == 4
    out = capsys.readouterr().out
    assert "5 destructive change(s) not acknowledged" in out
    assert "cidrBlock: \"10.40.0.0/16\" -> \"10.41.0.0/16\"  (replaces)" in out
    assert md.read_text().startswith("### Stack `dev`\n\nDesired state vs `base-dev.json`: **0 to create")


def test_cli_accepts_acknowledgement_from_flag_or_event(cli, tmp_path, no_readiness):
    assert P.main(["--stack", "dev", "--diff", str(cli), "--quiet", "--allow-destructive", "*"]) == 0
    assert P.main(["--stack", "dev", "--diff", str(cli), "--quiet", "--allow-destructive", "aws:ec2/vpc:Vpc"]) == 4
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "labels": [{"name": "allow-destructive"}]}}))
    assert P.main(["--stack", "dev", "--diff", str(cli), "--quiet", "--pr-event", str(event)]) == 0


def test_cli_rejects_a_missing_or_foreign_base(tmp_path, capsys):
    assert P.main(["--stack", "dev", "--diff", str(tmp_path / "nope.json")]) == P.EXIT_CONFIG
    assert "--diff: " in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"resources": {}}')
    assert P.main(["--stack", "dev", "--diff", str(bad)]) == P.EXIT_CONFIG
    assert "is not a preview document (no `resources` list)" in capsys.readouterr().err


# --- synthetic documents: types the stack does not create yet ------------------------------

def res(typ: str, name: str, inputs: dict, *, custom: bool = True, protect: bool = False) -> dict:
    return {"urn": f"urn:pulumi:prod::llmserving::{typ}::{name}", "type": typ, "name": name, "parent": None,
            "custom": custom, "protect": protect, "inputs": inputs}


def doc(*resources: dict, hourly: float = 10.0, gpus: int = 8, violations: tuple = ()) -> dict:
    return {"project": "llmserving", "stack": "prod", "resources": list(resources),
            "cost": {"hourly_usd": hourly, "monthly_usd": round(hourly * 730, 2), "max_hourly_usd": hourly * 2,
                     "max_monthly_usd": round(hourly * 1460, 2), "by_pool": {}},
            "capacity": {"gpus_total": gpus, "max_gpus_total": gpus * 2, "models": {}},
            "policy": {"violations": list(violations)}}


NG = "aws:eks/nodeGroup:NodeGroup"
NODE_GROUP = {"clusterName": "llmserving-prod", "nodeGroupName": "p5-ondemand", "nodeRoleArn": "arn:aws:iam::1:role/n",
              "instanceTypes": ["p5.48xlarge"], "capacityType": "ON_DEMAND", "amiType": "AL2023_x86_64_NVIDIA",
              "diskSize": 1000, "subnetIds": ["subnet-a", "subnet-b"],
              "scalingConfig": {"minSize": 2, "maxSize": 4, "desiredSize": 2},
              "launchTemplate": {"id": "lt-1", "version": "1"}, "tags": {"stack": "prod"}}


def one_change(typ: str, before: dict, after: dict, **kw) -> D.StackDiff:
    return D.diff_documents(doc(res(typ, "r", before, **kw)), doc(res(typ, "r", after, **kw)))


@pytest.mark.parametrize("path,value", [
    ("instanceTypes", ["p5e.48xlarge"]), ("capacityType", "SPOT"), ("amiType", "BOTTLEROCKET_x86_64_NVIDIA"),
    ("diskSize", 2000), ("nodeRoleArn", "arn:aws:iam::1:role/other"), ("clusterName", "other"),
    ("subnetIds", ["subnet-a"]), ("region", "us-west-2")])
def test_node_group_replace_on_change_properties_are_flagged(path, value):
    d = one_change(NG, NODE_GROUP, {**NODE_GROUP, path: value})
    assert [r.action for r in d.resources] == ["replace"]
    assert [f.reason.split(";")[0] for f in d.flags] == [f"replaced: `{path}` cannot change in place"]
    assert "blue/green" in d.flags[0].reason


def test_node_group_launch_template_id_replaces_but_version_and_scaling_update_in_place():
    d = one_change(NG, NODE_GROUP, {**NODE_GROUP, "launchTemplate": {"id": "lt-2", "version": "1"}})
    assert [(p.path, p.replaces) for p in d.resources[0].properties] == [("launchTemplate.id", True)]
    assert len(d.flags) == 1
    d = one_change(NG, NODE_GROUP, {**NODE_GROUP, "launchTemplate": {"id": "lt-1", "version": "2"},
                                    "scalingConfig": {"minSize": 2, "maxSize": 8, "desiredSize": 3}})
    assert d.resources[0].action == "update" and d.flags == []
    assert [p.path for p in d.resources[0].properties] == [
        "launchTemplate.version", "scalingConfig.desiredSize", "scalingConfig.maxSize"]


@pytest.mark.parametrize("typ,before,after,path", [
    ("aws:eks/cluster:Cluster", {"name": "llmserving-prod", "roleArn": "arn:r1"}, {"name": "llmserving-prod2", "roleArn": "arn:r1"}, "name"),
    ("aws:eks/cluster:Cluster", {"name": "c", "roleArn": "arn:r1"}, {"name": "c", "roleArn": "arn:r2"}, "roleArn"),
    ("aws:eks/cluster:Cluster", {"name": "c", "kubernetesNetworkConfig": {"serviceIpv4Cidr": "172.20.0.0/16"}},
     {"name": "c", "kubernetesNetworkConfig": {"serviceIpv4Cidr": "10.100.0.0/16"}}, "kubernetesNetworkConfig.serviceIpv4Cidr"),
    ("aws:s3/bucketV2:BucketV2", {"bucket": "llmserving-prod-adapters"}, {"bucket": "llmserving-prod-adapters-2"}, "bucket"),
    ("aws:s3/bucket:Bucket", {"bucket": "a"}, {"bucket": "b"}, "bucket"),
    ("aws:kms/key:Key", {"keyUsage": "ENCRYPT_DECRYPT"}, {"keyUsage": "SIGN_VERIFY"}, "keyUsage"),
    ("aws:sqs/queue:Queue", {"name": "llmserving-prod-interruptions"}, {"name": "karpenter"}, "name"),
    ("aws:ec2/launchTemplate:LaunchTemplate", {"name": "gpu-a"}, {"name": "gpu-b"}, "name"),
    ("aws:autoscaling/group:Group", {"name": "gpu-a"}, {"name": "gpu-b"}, "name"),
    ("aws:ecs/cluster:Cluster", {"name": "a"}, {"name": "b"}, "name"),
])
def test_stateful_and_expensive_replacements_are_flagged(typ, before, after, path):
    d = one_change(typ, before, after)
    assert [(f.type, f.action) for f in d.flags] == [(typ, "replace")]
    assert d.flags[0].reason.startswith(f"replaced: `{path}` cannot change in place; ")


def test_pulumi_eks_component_name_and_role_are_flagged():
    before = {"name": "llmserving-prod", "serviceRole": "urn:role1", "version": "1.33"}
    d = one_change("eks:index:Cluster", before, {**before, "serviceRole": "urn:role2"}, custom=False)
    assert [f.action for f in d.flags] == ["replace"]
    d = one_change("eks:index:Cluster", before, {**before, "version": "1.34"}, custom=False)
    assert d.resources[0].action == "update" and d.flags == []


def test_removing_eks_secrets_encryption_replaces_but_adding_it_does_not():
    enc = {"encryptionConfig": {"provider": {"keyArn": "arn:k"}, "resources": ["secrets"]}}
    d = one_change("aws:eks/cluster:Cluster", {"name": "c", **enc}, {"name": "c"})
    assert d.resources[0].action == "replace" and len(d.flags) == 1
    d = one_change("aws:eks/cluster:Cluster", {"name": "c"}, {"name": "c", **enc})
    assert d.resources[0].action == "update" and d.flags == []


def test_in_place_updates_of_guarded_types_are_not_flagged():
    d = one_change("aws:s3/bucketV2:BucketV2", {"bucket": "a", "tags": {"x": "1"}}, {"bucket": "a", "tags": {"x": "2"}})
    assert d.resources[0].action == "update" and d.flags == []
    d = one_change("aws:kms/key:Key", {"enableKeyRotation": False}, {"enableKeyRotation": True})
    assert d.flags == []


@pytest.mark.parametrize("typ", ["aws:s3/bucketV2:BucketV2", "aws:kms/key:Key", "aws:sqs/queue:Queue",
                                 "aws:eks/cluster:Cluster", NG, "eks:index:Cluster"])
def test_deleting_guarded_types_is_flagged(typ):
    d = D.diff_documents(doc(res(typ, "r", {"name": "x"})), doc())
    assert [(f.type, f.action) for f in d.flags] == [(typ, "delete")]
    assert d.flags[0].reason.startswith("deleted; ")


def test_deleting_a_protected_resource_is_flagged_and_an_unprotected_plain_one_is_not():
    role = "aws:iam/rolePolicy:RolePolicy"
    d = D.diff_documents(doc(res(role, "p", {"policy": "{}"}, protect=True)), doc())
    assert [f.reason for f in d.flags] == ["deleted (resource is protected)"]
    d = D.diff_documents(doc(res(role, "p", {"policy": "{}"})), doc())
    assert [r.action for r in d.resources] == ["delete"] and d.flags == []


def test_a_renamed_guarded_resource_is_flagged_with_an_alias_hint():
    b = "aws:s3/bucketV2:BucketV2"
    d = D.diff_documents(doc(res(b, "adapters", {"bucket": "x"})), doc(res(b, "adapter-store", {"bucket": "x"})))
    assert sorted(r.action for r in d.resources) == ["create", "delete"]
    assert "carries an alias" in d.flags[0].reason


def test_secrets_stay_masked_and_paths_quote_odd_keys():
    before = {"userData": "[secret]", "tags": {"kubernetes.io/role/elb": "1"}}
    after = {"userData": "[secret]", "tags": {"kubernetes.io/role/elb": "2"}, "password": "[secret]"}
    d = one_change("aws:ec2/launchTemplate:LaunchTemplate", before, after)
    assert [(p.path, p.before, p.after) for p in d.resources[0].properties] == [
        ("password", D.MISSING, "[secret]"), ('tags["kubernetes.io/role/elb"]', "1", "2")]
    md = D.render_markdown(doc(res("aws:ec2/launchTemplate:LaunchTemplate", "r", after)), d)
    assert '| `password` | `(absent)` | `"[secret]"` |' in md


def test_policy_verdicts_new_and_resolved():
    v1 = {"policy": "gpu-limit", "level": "mandatory", "urn": None, "message": "too many GPUs"}
    v2 = {"policy": "cost-tags", "level": "advisory", "urn": "urn:pulumi:prod::llmserving::aws:ec2/vpc:Vpc::v",
          "message": "missing tag tier"}
    d = D.diff_documents(doc(violations=(v2,)), doc(violations=(v1,)))
    assert d.policy["new"] == [v1] and d.policy["resolved"] == [v2]
    md = D.render_markdown(doc(violations=(v1,)), d)
    assert "**Policies:** ❌ 1 mandatory policy violation(s)" in md
    assert "| ❌ mandatory | gpu-limit | `(stack)` | too many GPUs | new |" in md
    assert "Resolved since base: cost-tags (aws:ec2/vpc:Vpc::v)" in md


def test_cost_delta_of_synthetic_documents():
    d = D.diff_documents(doc(hourly=10.0, gpus=8), doc(hourly=65.04, gpus=16))
    assert d.cost["hourly_usd"] == {"before": 10.0, "after": 65.04, "delta": 55.04}
    assert d.cost["monthly_usd"]["delta"] == round(55.04 * 730, 2)
    assert d.capacity["gpus_total"] == {"before": 8, "after": 16, "delta": 8}


# --- acknowledgements, comment, rules table --------------------------------------------------

def test_pr_body_parsing():
    body = "text\n/allow-destructive aws:kms/key:Key\n  /allow-destructive urn:pulumi:prod::x::t::n  \n" \
           "/allow-destructive\nnot /allow-destructive aws:sqs/queue:Queue\n"
    ack = pr_ack.from_event({"pull_request": {"body": body, "labels": [{"name": "other"}]}})
    assert ack.targets == {"aws:kms/key:Key", "urn:pulumi:prod::x::t::n"} and not ack.all
    assert ack.covers("urn:pulumi:prod::x::aws:kms/key:Key::k", "aws:kms/key:Key")
    assert ack.covers("urn:other", "aws:sqs/queue:Queue") is None
    assert pr_ack.from_event({}) == pr_ack.NONE


def test_event_file_errors_are_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_EVENT_PATH", raising=False)
    assert pr_ack.from_event_file(None) == pr_ack.NONE
    with pytest.raises(pr_ack.EventError, match="does not exist"):
        pr_ack.from_event_file(tmp_path / "missing.json")
    bad = tmp_path / "e.json"
    bad.write_text("{")
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(bad))
    with pytest.raises(pr_ack.EventError, match="is not valid JSON"):
        pr_ack.from_event_file()


def test_comment_has_the_marker_and_stays_under_githubs_limit(tmp_path):
    small = D.comment(["### Stack `dev`\n\nok\n"], header="Commit abc")
    assert small.startswith(D.MARKER + "\n## Offline preview\nCommit abc\n### Stack `dev`")
    huge = "### Stack `prod`\n\n#### Resource changes\n\n" + ("x" * 100 + "\n") * 1000
    body = D.comment([huge])
    assert len(body) <= D.MAX_COMMENT + 100 and "Too long for a comment" in body
    out = tmp_path / "c.md"
    (tmp_path / "dev.md").write_text("### Stack `dev`\n")
    assert D.main(["comment", "--out", str(out), str(tmp_path / "dev.md"), str(tmp_path / "prod.md")]) == 0
    assert "_No report (the preview did not run" in out.read_text()


def _args_class(typ: str):
    import importlib

    pkg, rest = typ.split(":", 1)
    module, cls = rest.split(":")
    if pkg == "eks":
        return importlib.import_module("pulumi_eks").ClusterArgs
    mod = importlib.import_module(f"pulumi_aws.{module.split('/')[0]}")
    return getattr(mod, f"{cls}Args")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_rules_cover_the_named_types_with_sources_and_real_property_names():
    must = {"aws:eks/cluster:Cluster", "eks:index:Cluster", NG, "aws:ec2/launchTemplate:LaunchTemplate",
            "aws:s3/bucketV2:BucketV2", "aws:kms/key:Key", "aws:sqs/queue:Queue"}
    assert must <= set(D.RULES)
    assert {"name", "roleArn"} <= set(D.RULES["aws:eks/cluster:Cluster"].replace_on_change)
    assert {"instanceTypes", "capacityType", "amiType", "diskSize"} <= set(D.RULES[NG].replace_on_change)
    for rule in D.GUARD_RULES:
        assert rule.source and re.fullmatch(r"\d{4}-\d{2}-\d{2}", rule.as_of), rule.type
        if rule.type.startswith(("aws:", "eks:")):
            props = {n for n, v in vars(_args_class(rule.type)).items() if isinstance(v, property)}
            for path in rule.replace_on_change + rule.replace_on_removal + rule.roll_on_change:
                top = path.split(".")[0]
                assert _snake(top) in props, f"{rule.type}: {top} is not an input of the installed SDK"
    assert "| `aws:eks/nodeGroup:NodeGroup` | expensive | " in D.rules_markdown()


# --- BASE.json from another git ref --------------------------------------------------------------

def test_preview_base_script_writes_base_documents(tmp_path):
    # The interpreter running the tests, wherever its virtualenv lives.
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "preview-base.sh"), "HEAD", str(tmp_path), "dev", "nosuch"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    dev = json.loads((tmp_path / "base-dev.json").read_text())
    assert dev["stack"] == "dev" and any(r["type"] == "aws:ec2/vpc:Vpc" for r in dev["resources"])
    assert json.loads((tmp_path / "base-nosuch.json").read_text())["resources"] == []
    listed = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "preview-base." not in listed


def test_bigger_gpu_root_volume_rolls_the_node_group_and_needs_acknowledgement(tmp_path):
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    doc["config"]["llmserving:gpuPools"][0]["rootVolumeGib"] = 1200
    stack_file = tmp_path / "Pulumi.prod.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    d = D.diff_documents(shipped_preview("prod"), P.preview("prod", stack_file=stack_file))
    [flag] = [f for f in d.flags if f.type == "aws:ec2/launchTemplate:LaunchTemplate"]
    assert flag.action == "update" and flag.acknowledged_by is None
    assert flag.reason.startswith("rolls nodes: `blockDeviceMappings[0].ebs.volumeSize` changes the template version")
