"""Checkov (pinned, offline) over the translated desired state: the translation holds, regressions fail.

One Checkov run (shared by the xdist workers of a session) scans the prod
snapshot, prod with planted regressions, and the ECS variant. The checks a
correct translation must pass do pass on the shipped state, and each planted
regression makes the named check fail on the named resource:

- IMDSv1 on the launch templates      -> CKV_AWS_79  (aws_launch_template)
- an old TLS policy on HTTPS          -> CKV_AWS_103 (aws_lb_listener)
- the WAF association removed         -> CKV2_AWS_28 (aws_lb)
- the VPC flow log removed            -> CKV2_AWS_11 (aws_vpc)
- SSE-S3 instead of SSE-KMS (adapters)-> CKV_AWS_145 (aws_s3_bucket)
- a public EKS endpoint open to all   -> CKV_AWS_39, CKV_AWS_38 (aws_eks_cluster)

Check semantics: checkov 3.3.30, checkov/terraform/checks/resource/aws/
IMDSv1Disabled.py (CKV_AWS_79), graph_checks/aws/AppLoadBalancerTLS12.json
(CKV_AWS_103), ALBProtectedByWAF.json (CKV2_AWS_28), VPCHasFlowLog.json
(CKV2_AWS_11), S3KMSEncryptedByDefault.json (CKV_AWS_145),
EKSPublicAccess.py / EKSPublicAccessCIDR.py (CKV_AWS_39 / CKV_AWS_38).
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import pickle
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from infra import scan
from infra.scan import Entry, Finding, ScanInputError, ScannerError, load_entries

ROOT = Path(__file__).resolve().parent.parent
LT = "aws:ec2/launchTemplate:LaunchTemplate"


def snapshot(stack: str) -> dict:
    return json.loads((ROOT / "tests" / "snapshots" / f"{stack}.json").read_text())


DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
WAF_LOGGING = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
ROOT_POD = {"runAsUser": 0}


def _pod_specs(r: dict) -> list[dict]:
    if r["type"] in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"):
        return [r["inputs"]["spec"]["template"]["spec"]]
    return []


def regressed(doc: dict) -> dict:
    """Prod with every defect class the scan must catch planted (whatever the branch has fixed)."""
    d = copy.deepcopy(doc)
    keep = []
    for r in d["resources"]:
        i = r["inputs"]
        for spec in _pod_specs(r):
            # Root, no seccomp, no pod security context (issue 10 item 15's defect).
            spec.pop("securityContext", None)
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                sc = {k: v for k, v in (c.get("securityContext") or {}).items() if k != "runAsNonRoot"}
                c["securityContext"] = {**sc, **ROOT_POD}
        if r["type"] == LT:
            i["metadataOptions"]["httpTokens"] = "optional"
            i["metadataOptions"]["httpPutResponseHopLimit"] = 2
        elif r["type"] == "aws:lb/listener:Listener" and i.get("protocol") == "HTTPS":
            i["sslPolicy"] = "ELBSecurityPolicy-2016-08"
        elif r["type"].endswith("BucketServerSideEncryptionConfiguration") and "adapters" in r["name"]:
            i["rules"] = [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
        elif r["type"] == "eks:index:Cluster":
            i["endpointPublicAccess"] = True
            i.pop("publicAccessCidrs", None)
        if r["type"] in ("aws:wafv2/webAclAssociation:WebAclAssociation", "aws:ec2/flowLog:FlowLog",
                         DEFAULT_SG, WAF_LOGGING):
            continue
        keep.append(r)
    d["resources"] = keep
    return d


def hardened(doc: dict) -> dict:
    """Prod with the fixes of issue 10 items 14-16 planted the way pulumi-aws/-kubernetes would record them."""
    d = copy.deepcopy(doc)
    res = d["resources"]
    vpc_id = next(r["inputs"]["vpcId"] for r in res if r["type"] == "aws:ec2/flowLog:FlowLog")
    assoc = next(r for r in res if r["type"] == "aws:wafv2/webAclAssociation:WebAclAssociation")
    stack_urn = assoc["urn"].split("::")[0] + "::" + assoc["urn"].split("::")[1]
    res = [r for r in res if r["type"] not in (DEFAULT_SG, WAF_LOGGING)]
    for r in res:
        for spec in _pod_specs(r):
            spec["securityContext"] = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                       "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                c["securityContext"] = {**(c.get("securityContext") or {}), "runAsNonRoot": True, "runAsUser": 10001}
        if r["type"] == LT:
            r["inputs"]["metadataOptions"]["httpPutResponseHopLimit"] = 1
    res.append({"urn": f"{stack_urn}::{DEFAULT_SG}::llmserving-prod-default-sg", "type": DEFAULT_SG,
                "name": "llmserving-prod-default-sg", "custom": True, "parent": None,
                "inputs": {"vpcId": vpc_id, "ingress": [], "egress": [], "tags": {"stack": "prod"}}})
    res.append({"urn": f"{stack_urn}::{WAF_LOGGING}::llmserving-prod-edge-waf-logging", "type": WAF_LOGGING,
                "name": "llmserving-prod-edge-waf-logging", "custom": True, "parent": None,
                "inputs": {"resourceArn": assoc["inputs"]["webAclArn"],
                           "logDestinationConfigs": ["arn:aws:logs:us-east-1:123456789012:log-group:"
                                                     "aws-waf-logs-llmserving-prod"],
                           "redactedFields": [{"singleHeader": {"name": "authorization"}}]}})
    d["resources"] = res
    return d


def _compute() -> dict:
    from tests.harness import rendered_variant

    docs = {"prod": snapshot("prod"), "regressed": regressed(snapshot("prod")), "hardened": hardened(snapshot("prod")),
            "ecs": rendered_variant("prod-ecs")}
    # Meanwhile: Checkov WITHOUT the offline switches, over a tiny plan, must be caught by the guard.
    tiny = Path(tempfile.mkdtemp(prefix="checkov-online-"))
    (tiny / "t").mkdir()
    (tiny / "t" / "plan.json").write_text(json.dumps({"terraform_version": "1.9.8", "planned_values": {
        "root_module": {"resources": []}}}))
    log = tiny / "network.log"
    env = scan.offline_env(log)
    env.pop("CKV_SKIP_PACKAGE_UPDATE_CHECK")
    env.pop("BC_SKIP_MAPPING")
    # The version check caches its answer per user (platformdirs user_cache_dir): start from none.
    env["XDG_CACHE_HOME"] = str(tiny / "cache")
    cmd = [c for c in scan.checkov_command(tiny) if c != "--skip-download"]
    online = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=str(tiny))
    scans = scan.scan_documents(docs)
    online.wait(timeout=300)
    attempts = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    return {"scans": scans, "online_attempts": attempts}


@pytest.fixture(scope="session")
def scanned(tmp_path_factory) -> dict:
    try:
        scan.checkov_executable()
    except ScanInputError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return _compute()
    # xdist workers share one Checkov run: the first computes it, the others read it.
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / f"checkov-{run}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cache = shared / f"checkov-{run}.pickle"
        if not cache.exists():
            cache.write_bytes(pickle.dumps(_compute()))
        return pickle.loads(cache.read_bytes())


def outcome(scans, label: str, check: str, typ: str, name_part: str = "") -> set[bool]:
    found = {f.passed for f in scans[label].findings
             if f.check_id == check and f.type == typ and name_part in f.name}
    assert found, f"{check} was not evaluated on {typ} {name_part!r} in {label}"
    return found


# (check, Pulumi type, part of the name): must pass on the shipped prod state.
MUST_PASS_PROD = [
    ("CKV_AWS_79", LT, "system"), ("CKV_AWS_79", LT, "p5-ondemand"),
    ("CKV_AWS_103", "aws:lb/listener:Listener", "https"),
    ("CKV2_AWS_28", "aws:lb/loadBalancer:LoadBalancer", ""),
    ("CKV2_AWS_11", "aws:ec2/vpc:Vpc", ""),
    ("CKV_AWS_145", "aws:s3/bucket:Bucket", "adapters"),
    ("CKV_AWS_21", "aws:s3/bucket:Bucket", "adapters"), ("CKV_AWS_21", "aws:s3/bucket:Bucket", "logs"),
    ("CKV2_AWS_6", "aws:s3/bucket:Bucket", "adapters"), ("CKV2_AWS_6", "aws:s3/bucket:Bucket", "logs"),
    ("CKV_AWS_18", "aws:s3/bucket:Bucket", "adapters"),
    ("CKV_AWS_70", "aws:s3/bucketPolicy:BucketPolicy", "adapters"),
    ("CKV_AWS_37", "eks:index:Cluster", ""), ("CKV_AWS_38", "eks:index:Cluster", ""),
    ("CKV_AWS_39", "eks:index:Cluster", ""), ("CKV_AWS_58", "eks:index:Cluster", ""),
    ("CKV_AWS_91", "aws:lb/loadBalancer:LoadBalancer", ""), ("CKV_AWS_131", "aws:lb/loadBalancer:LoadBalancer", ""),
    ("CKV_AWS_150", "aws:lb/loadBalancer:LoadBalancer", ""), ("CKV2_AWS_20", "aws:lb/loadBalancer:LoadBalancer", ""),
    ("CKV_AWS_2", "aws:lb/listener:Listener", "https"), ("CKV_AWS_2", "aws:lb/listener:Listener", "http"),
    ("CKV_AWS_27", "aws:sqs/queue:Queue", ""), ("CKV_AWS_7", "aws:kms/key:Key", "adapters"),
    ("CKV_AWS_130", "aws:ec2/subnet:Subnet", "private"), ("CKV_AWS_66", "aws:cloudwatch/logGroup:LogGroup", ""),
    # EIPs count as attached only through the NAT gateway's allocation_id reference.
    ("CKV2_AWS_19", "aws:ec2/eip:Eip", "us-east-1a"),
    ("CKV_K8S_8", "kubernetes:apps/v1:Deployment", "llama-3-1-70b"),
    ("CKV_K8S_9", "kubernetes:apps/v1:Deployment", "llama-3-1-70b"),
    ("CKV_K8S_10", "kubernetes:apps/v1:Deployment", "llama-3-1-70b"),
    ("CKV_K8S_12", "kubernetes:apps/v1:Deployment", "llama-3-1-70b"),
    ("CKV_K8S_14", "kubernetes:apps/v1:Deployment", "llm-router"),
    ("CKV_K8S_16", "kubernetes:apps/v1:Deployment", "llama-3-1-8b"),
]


@pytest.mark.parametrize("check,typ,part", MUST_PASS_PROD, ids=[f"{c}-{p or t.split(':')[-1]}" for c, t, p in
                                                                 MUST_PASS_PROD])
def test_shipped_prod_passes(scanned, check, typ, part):
    assert outcome(scanned["scans"], "prod", check, typ, part) == {True}


MUST_PASS_ECS = [
    ("CKV_AWS_79", LT, ""), ("CKV_AWS_103", "aws:lb/listener:Listener", "https"),
    ("CKV2_AWS_28", "aws:lb/loadBalancer:LoadBalancer", ""), ("CKV2_AWS_11", "aws:ec2/vpc:Vpc", ""),
    ("CKV_AWS_145", "aws:s3/bucket:Bucket", "adapters"),
    ("CKV_AWS_65", "aws:ecs/cluster:Cluster", ""),
    ("CKV_AWS_97", "aws:ecs/taskDefinition:TaskDefinition", ""),
    ("CKV_AWS_249", "aws:ecs/taskDefinition:TaskDefinition", ""),
    ("CKV_AWS_333", "aws:ecs/service:Service", ""),
]


@pytest.mark.parametrize("check,typ,part", MUST_PASS_ECS, ids=[f"{c}-{t.split(':')[-1]}" for c, t, p in
                                                                MUST_PASS_ECS])
def test_ecs_variant_passes(scanned, check, typ, part):
    assert outcome(scanned["scans"], "ecs", check, typ, part) == {True}


PLANTED = [
    ("CKV_AWS_79", LT, "system"), ("CKV_AWS_79", LT, "p5-ondemand"),
    ("CKV_AWS_103", "aws:lb/listener:Listener", "https"),
    ("CKV2_AWS_28", "aws:lb/loadBalancer:LoadBalancer", ""),
    ("CKV2_AWS_11", "aws:ec2/vpc:Vpc", ""),
    ("CKV_AWS_145", "aws:s3/bucket:Bucket", "adapters"),
    ("CKV_AWS_39", "eks:index:Cluster", ""), ("CKV_AWS_38", "eks:index:Cluster", ""),
]


@pytest.mark.parametrize("check,typ,part", PLANTED, ids=[f"{c}-{p or t.split(':')[-1]}" for c, t, p in PLANTED])
def test_planted_regression_fails_the_expected_check(scanned, check, typ, part):
    assert outcome(scanned["scans"], "regressed", check, typ, part) == {False}
    assert outcome(scanned["scans"], "prod", check, typ, part) == {True}


# Defect classes of issue 10 fixed on other branches: the hardened state passes, the defect fails,
# whichever of the two this branch's prod is (CKV_AWS_341: LaunchTemplateMetadataHopLimit... hop limit <= 1;
# CKV2_AWS_12: graph_checks/aws/VPCHasRestrictedSG.json; CKV2_AWS_31: WAF2HasLogs.json;
# CKV_K8S_23/31/40/29: kubernetes/checks/resource/k8s/RootContainers*.py, Seccomp*.py, RootContainersHighUID.py,
# PodSecurityContext.py).
DEFECT_CLASSES = [
    ("CKV_AWS_341", LT, "system"), ("CKV_AWS_341", LT, "p5-ondemand"),   # IMDS hop limit (item 14)
    ("CKV2_AWS_12", "aws:ec2/vpc:Vpc", ""),                              # default security group (item 16)
    ("CKV2_AWS_31", "aws:wafv2/webAcl:WebAcl", ""),                      # WAF logging (item 16)
    ("CKV_K8S_23", "kubernetes:apps/v1:Deployment", "llama-3-1-70b"),    # root containers (item 15)
    ("CKV_K8S_40", "kubernetes:apps/v1:Deployment", "llama-3-1-70b"),
    ("CKV_K8S_31", "kubernetes:apps/v1:Deployment", "llama-3-1-70b"),    # seccomp (item 15)
    ("CKV_K8S_29", "kubernetes:apps/v1:Deployment", "llama-3-1-70b"),
    ("CKV_K8S_23", "kubernetes:apps/v1:Deployment", "llm-router"),       # the router (item 9)
]


@pytest.mark.parametrize("check,typ,part", DEFECT_CLASSES,
                         ids=[f"{c}-{p or t.split(':')[-1]}" for c, t, p in DEFECT_CLASSES])
def test_defect_classes_fixed_elsewhere_are_caught(scanned, check, typ, part):
    assert outcome(scanned["scans"], "hardened", check, typ, part) == {True}
    assert outcome(scanned["scans"], "regressed", check, typ, part) == {False}


def test_the_scan_stays_offline_and_the_guard_sees_checkovs_own_traffic(scanned):
    """The shared run raised no ScannerError (its network log is empty); without the switches Checkov
    asks PyPI for a newer release (banner.py) and the platform for guidelines (platform_integration.py)."""
    hosts = {re.search(r"'([^']+)'", a["target"]).group(1) for a in scanned["online_attempts"]}
    assert "pypi.org" in hosts, scanned["online_attempts"]
    assert any("prismacloud" in h or "bridgecrew" in h for h in hosts), scanned["online_attempts"]


def test_the_offline_environment_drops_platform_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("BC_API_KEY", "secret")
    monkeypatch.setenv("PRISMA_API_URL", "https://example.invalid")
    env = scan.offline_env(tmp_path / "log")
    assert "BC_API_KEY" not in env and "PRISMA_API_URL" not in env
    assert env["CKV_SKIP_PACKAGE_UPDATE_CHECK"] == "true"
    assert "--skip-download" in scan.checkov_command(tmp_path)


def test_network_guard_refuses_and_records(tmp_path):
    log = tmp_path / "net.log"
    env = {**os.environ, "PYTHONPATH": str(scan.GUARD), "CHECKOV_NETWORK_LOG": str(log)}
    proc = subprocess.run([os.sys.executable, "-c", "import socket\ntry:\n socket.getaddrinfo('pypi.org', 443)\n"
                           "except PermissionError as e:\n print('refused')"], env=env, capture_output=True, text=True)
    assert proc.stdout.strip() == "refused"
    assert "pypi.org" in log.read_text()


# --- the gate --------------------------------------------------------------------------

def _judged(scanned, label, entries):
    s = copy.deepcopy(scanned["scans"][label])
    for f in s.findings:
        f.stack = "prod"
    scan.judge([s], entries)
    return s


def test_gate_passes_prod_with_the_reviewed_lists(scanned):
    entries = load_entries(scan.ALLOWLIST) + load_entries(scan.PENDING)
    code, text = scan.gate_report([_judged(scanned, "prod", entries)], entries, every_stack=False)
    assert code == scan.EXIT_OK, text


def test_gate_fails_on_a_finding_no_list_names(scanned):
    entries = [e for e in load_entries(scan.ALLOWLIST) + load_entries(scan.PENDING) if e.check != "CKV_AWS_260"]
    code, text = scan.gate_report([_judged(scanned, "prod", entries)], entries, every_stack=False)
    assert code == scan.EXIT_FINDINGS
    assert re.search(r"CKV_AWS_260\s+aws:ec2/securityGroup:SecurityGroup::llmserving-prod-edge-alb", text), text


def test_gate_fails_on_the_planted_regressions(scanned):
    entries = load_entries(scan.ALLOWLIST) + load_entries(scan.PENDING)
    code, text = scan.gate_report([_judged(scanned, "regressed", entries)], entries, every_stack=False)
    assert code == scan.EXIT_FINDINGS
    for check in ("CKV_AWS_79", "CKV_AWS_103", "CKV2_AWS_28", "CKV2_AWS_11", "CKV_AWS_145", "CKV_AWS_39"):
        assert re.search(rf"^\s+prod\s+{check}\s", text, re.M), (check, text)


def test_an_allowlist_entry_that_matches_nothing_fails_the_full_run(scanned):
    entries = load_entries(scan.ALLOWLIST) + load_entries(scan.PENDING)
    stale = Entry(check="CKV_AWS_1", resource="nothing-*", reason="gone", source=scan.ALLOWLIST.name)
    s = _judged(scanned, "prod", entries + [stale])
    code, text = scan.gate_report([s], entries + [stale], every_stack=True)
    assert code == scan.EXIT_FINDINGS and "CKV_AWS_1 nothing-*" in text


def test_pr_report_lists_new_findings_against_the_base(scanned):
    """Base: the hardened state; head: every planted defect. Both derive from the same snapshot."""
    entries = load_entries(scan.ALLOWLIST) + load_entries(scan.PENDING)
    base, head = _judged(scanned, "hardened", entries), _judged(scanned, "regressed", entries)
    added, resolved = scan.new_findings(base, head)
    planted = {c for c, _, _ in PLANTED + DEFECT_CLASSES}
    # The old TLS policy also has weak ciphers (CKV2_AWS_74, graph_checks/aws/LBWeakCiphers.json).
    assert {f.check_id for f in added} == planted | {"CKV2_AWS_74"}
    # Without a WAF association the Log4j-rules check has no web ACL to judge (ALBWebACLConfiguredWIthLog4j...).
    assert {(f.check_id, f.type) for f in resolved} == {("CKV2_AWS_76", "aws:lb/loadBalancer:LoadBalancer")}
    text = scan.markdown_report("prod", base, head)
    unlisted = [f for f in added if f.listed is None]
    assert f"❌ **{len(unlisted)} new failed check(s) no list names**" in text
    assert "| CKV_AWS_79 |" in text and "| CKV2_AWS_28 |" in text and "**not listed**" in text
    # The issue-10 defect classes are fixed on main: planted back, no list excuses them.
    hop_limit_rows = [line for line in text.splitlines() if line.startswith("| CKV_AWS_341 |")]
    assert hop_limit_rows and all("**not listed**" in line for line in hop_limit_rows)


# --- the lists ----------------------------------------------------------------------------

def test_every_entry_has_a_one_line_reason_and_pending_ones_are_not_in_the_allowlist():
    allow = load_entries(scan.ALLOWLIST)
    pending = load_entries(scan.PENDING)
    assert allow and all(e.reason for e in allow + pending)
    # A reason that points at another branch belongs in the pending list, which is deleted after merge.
    assert not [e for e in allow if re.search(r"issue \d+|branch|pending|fixed", e.reason, re.I)]
    assert not {(e.check, e.resource) for e in allow} & {(e.check, e.resource) for e in pending}


@pytest.mark.parametrize("text,error", [
    ("- check: CKV_AWS_1\n  resource: x\n", "`reason` must be a non-empty string"),
    ("- check: CKV_AWS_1\n  resource: x\n  reason: ok\n  why: extra\n", "unknown key(s) ['why']"),
    ("- check: CKV_AWS_1\n  resource: x\n  reason: |\n    two\n    lines\n", "`reason` must be one line"),
    ("check: CKV_AWS_1\n", "must be a list of entries"),
])
def test_malformed_allowlists_are_refused(tmp_path, text, error):
    p = tmp_path / "list.yaml"
    p.write_text(text)
    with pytest.raises(ScanInputError, match=re.escape(error)):
        load_entries(p)


def test_entries_match_by_name_type_or_address_and_stack():
    f = Finding(stack="dev", check_id="CKV_AWS_150", check_name="", address="aws_lb.llmserving_dev_edge_alb",
                type="aws:lb/loadBalancer:LoadBalancer", name="llmserving-dev-edge-alb", passed=False)
    assert Entry("CKV_AWS_150", "llmserving-*-edge-alb", "r", "a").matches(f)
    assert Entry("CKV_AWS_150", "aws:lb/loadBalancer:LoadBalancer::*", "r", "a").matches(f)
    assert Entry("CKV_AWS_*", "aws_lb.*", "r", "a").matches(f)
    assert not Entry("CKV_AWS_150", "*", "r", "a", stacks=("prod",)).matches(f)
    assert not Entry("CKV_AWS_91", "*", "r", "a").matches(f)


def test_a_missing_scanner_is_an_input_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CHECKOV", str(tmp_path / "nope"))
    with pytest.raises(ScanInputError, match="make .venv-checkov/.installed"):
        scan.checkov_executable()


def test_a_scanner_crash_is_reported(tmp_path):
    proc = subprocess.Popen([os.sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(2)"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with pytest.raises(ScannerError, match="exited 2: boom"):
        scan.finish_checkov(proc, tmp_path / "none.log")


# --- policies/README.md: the pack's overlap with Checkov ---------------------------------------

def overlap_table() -> dict[str, list[str]]:
    text = (ROOT / "policies" / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("|`")]
    assert rows, "policies/README.md has no overlap table"
    return {re.match(r"\|`([^`]+)`\|", r).group(1): re.findall(r"CKV2?_[A-Z0-9]+_[0-9]+", r.split("|")[2])
            for r in rows}


def test_readme_overlap_names_pack_rules_and_checks_checkov_evaluates(scanned):
    from tests.test_policies_coverage import readme_rows

    rules = {re.search(r"`([^`]+)`", row).group(1) for row in readme_rows()}
    table = overlap_table()
    assert set(table) <= rules, sorted(set(table) - rules)
    evaluated = {f.check_id for label in ("prod", "ecs") for f in scanned["scans"][label].findings}
    missing = {rule: [c for c in ids if c not in evaluated] for rule, ids in table.items()}
    assert not {r: m for r, m in missing.items() if m}, "listed but never evaluated on prod or the ECS variant"


def test_every_checkov_result_maps_back_to_a_pulumi_resource(scanned):
    """Allowlist entries name Pulumi resources: a result the translation index cannot place would dodge them."""
    for label in ("prod", "ecs"):
        lost = {f.address for f in scanned["scans"][label].findings if f.type == "?"}
        assert not lost, (label, sorted(lost))
