"""The offline preview: JSON contract, exit codes, determinism, secrets, the printed tree."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pulumi
import pytest
import yaml

from infra import preview
from infra.mockcloud import run_callable
from tests.harness import ROOT, once_per_session, shipped_preview

PLACEHOLDER_MARKERS = ("offline-placeholder", "REPLACE-WITH", "v1:REPLACE")

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["project", "stack", "resources", "capacity", "cost", "policy", "readiness"],
    "properties": {
        "project": {"type": "string", "const": "llmserving"},
        "stack": {"type": "string", "minLength": 1},
        "resources": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["urn", "type", "name", "parent", "inputs", "dependencies"],
                "properties": {
                    # URNs the resource waits for (explicit, expanded components, property dependencies).
                    "dependencies": {"type": "array", "items": {"type": "string", "pattern": r"^urn:pulumi:"}},
                    "provider": {"type": "string", "pattern": r"^urn:pulumi:"},
                    "customTimeouts": {"type": "object", "propertyNames": {"enum": ["create", "update", "delete"]},
                                       "additionalProperties": {"type": "string"}},
                    "urn": {"type": "string", "pattern": r"^urn:pulumi:[^:]+::llmserving::.+::.+$"},
                    "type": {"type": "string", "pattern": r"^[a-zA-Z0-9-]+:[^:]*:[A-Za-z0-9]+$"},
                    "name": {"type": "string", "minLength": 1},
                    "parent": {"type": ["string", "null"]},
                    "inputs": {"type": "object"},
                },
            },
        },
        "capacity": {
            "type": "object",
            "required": ["required_tokens_per_second", "models"],
            "properties": {
                "required_tokens_per_second": {"type": "number", "exclusiveMinimum": 0},
                "models": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": {
                        "type": "object",
                        "required": ["replicas", "gpus", "tokens_per_second_per_replica"],
                        "properties": {"replicas": {"type": "integer", "minimum": 0},
                                       "gpus": {"type": "integer", "minimum": 0},
                                       "tokens_per_second_per_replica": {"type": "number", "exclusiveMinimum": 0}},
                    },
                },
            },
        },
        "cost": {
            "type": "object",
            "required": ["hourly_usd", "monthly_usd", "by_pool"],
            "properties": {
                "hourly_usd": {"type": "number", "minimum": 0},
                "monthly_usd": {"type": "number", "minimum": 0},
                "by_pool": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": {"type": "object", "required": ["instance_type", "nodes", "hourly_usd"]},
                },
            },
        },
        "policy": {
            "type": "object",
            "required": ["violations"],
            "properties": {
                "violations": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["policy", "level", "urn", "message"],
                        "additionalProperties": False,
                        "properties": {
                            "policy": {"type": "string", "minLength": 1},
                            "level": {"enum": ["mandatory", "advisory"]},
                            "urn": {"type": ["string", "null"]},
                            "message": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
        "readiness": {
            "type": "object",
            "required": ["findings"],
            "properties": {
                "findings": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["check", "level", "urn", "message"],
                        "additionalProperties": False,
                        "properties": {
                            "check": {"type": "string", "minLength": 1},
                            "level": {"enum": ["mandatory", "advisory"]},
                            "urn": {"type": ["string", "null"]},
                            "message": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
    },
}


def contract_exit(doc: dict) -> int:
    """The exit status the contract gives a document: 1 on a mandatory policy violation or readiness finding."""
    mandatory = [x for x in doc["policy"]["violations"] + doc["readiness"]["findings"] if x["level"] == "mandatory"]
    return 1 if mandatory else 0


def summary(doc: dict) -> str:
    findings = doc["readiness"]["findings"]
    m = sum(f["level"] == "mandatory" for f in findings)
    return (f"0 mandatory and 0 advisory policy violations, {m} mandatory and {len(findings) - m} advisory readiness "
            f"findings")


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.pop("PYTHONPATH", None)
    return env


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.preview", *args], cwd=cwd, capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)


def write_stack(path: Path, base: str, changes: dict | None = None, remove: tuple[str, ...] = ()) -> Path:
    """A copy of a shipped stack file with `changes` (full keys -> YAML values) applied."""
    doc = yaml.safe_load((ROOT / f"Pulumi.{base}.yaml").read_text())
    for key in remove:
        del doc["config"][key]
    doc["config"].update(changes or {})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --- shared runs (each full preview costs ~1-2 s): once per session, whichever xdist worker asks first ---

@pytest.fixture(scope="module")
def dev_run(tmp_path_factory):
    """The dev preview run in-process through main(); (exit code, stdout, JSON bytes)."""
    def run():
        out = tmp_path_factory.mktemp("dev") / "dev.json"
        mp = pytest.MonkeyPatch()
        buf = io.StringIO()
        mp.setattr(sys, "stdout", buf)
        try:
            code = preview.main(["--stack", "dev", "--json", str(out)])
        finally:
            mp.undo()
        return code, buf.getvalue(), out.read_bytes()

    return once_per_session("test_preview.dev_run", run)


@pytest.fixture(scope="module")
def dev_run_subprocess(tmp_path_factory):
    def run():
        out = tmp_path_factory.mktemp("dev-sub") / "dev.json"
        proc = run_cli("--stack", "dev", "--json", str(out), "--quiet")
        return proc, out.read_bytes() if out.exists() else b""

    return once_per_session("test_preview.dev_run_subprocess", run)


@pytest.fixture(scope="module")
def prod_doc():
    return shipped_preview("prod")


@pytest.fixture(scope="module")
def mandatory_run(tmp_path_factory):
    """Stack `prod` (its policy config wants 3 zones) with a 2-zone staging config: valid config, policy fails."""
    def run():
        tmp = tmp_path_factory.mktemp("mandatory")
        net = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["llmserving:network"]
        stack_file = write_stack(tmp / "Pulumi.prod-2az.yaml", "prod", {
            "llmserving:environment": "staging",
            "llmserving:network": {**net, "zoneCount": 2},
        })
        out = tmp / "out.json"
        code = preview.main(["--stack", "prod", "--stack-file", str(stack_file), "--json", str(out), "--quiet"])
        return code, json.loads(out.read_text())

    return once_per_session("test_preview.mandatory_run", run)


# --- the JSON contract ------------------------------------------------------------------------

def test_schema_itself_is_valid():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_schema_rejects_a_broken_document(prod_doc):
    broken = json.loads(json.dumps(prod_doc))
    broken["policy"]["violations"] = [{"policy": "x", "level": "warning", "urn": None, "message": "m"}]
    del broken["resources"][0]["parent"]
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(broken))
    assert len(errors) == 2


def test_dev_json_matches_the_contract(dev_run):
    code, _, raw = dev_run
    doc = json.loads(raw)
    assert code == contract_exit(doc)
    jsonschema.validate(doc, SCHEMA)
    assert doc["stack"] == "dev"


def test_prod_document_matches_the_contract(prod_doc):
    jsonschema.validate(json.loads(json.dumps(prod_doc)), SCHEMA)
    assert prod_doc["stack"] == "prod"
    assert prod_doc["policy"]["violations"] == []
    assert set(prod_doc["capacity"]["models"]) == {"llama-3-1-70b", "llama-3-1-8b"}
    assert set(prod_doc["cost"]["by_pool"]) == {"p5-ondemand", "g5-lora"}
    assert prod_doc["cost"]["monthly_usd"] == pytest.approx(prod_doc["cost"]["hourly_usd"] * 730, rel=1e-4)


def test_resources_form_a_tree_with_camelcase_inputs(prod_doc):
    resources = prod_doc["resources"]
    urns = [r["urn"] for r in resources]
    assert len(urns) == len(set(urns)) and urns == sorted(urns)
    stack_urn = "urn:pulumi:prod::llmserving::pulumi:pulumi:Stack::llmserving-prod"
    for r in resources:
        assert r["parent"] in set(urns) | {stack_urn}, r["urn"]
        assert r["urn"].endswith(f"${r['type']}::{r['name']}") or r["urn"].endswith(f"::{r['type']}::{r['name']}")
    vpc = next(r for r in resources if r["type"] == "aws:ec2/vpc:Vpc")
    assert vpc["inputs"]["cidrBlock"] == "10.50.0.0/16"
    assert "cidr_block" not in vpc["inputs"]
    subnets = [r for r in resources if r["type"] == "aws:ec2/subnet:Subnet"]
    assert len(subnets) == 6


def test_mandatory_violation_document(mandatory_run):
    code, doc = mandatory_run
    jsonschema.validate(doc, SCHEMA)
    assert code == 1
    # the SDK puts the policy's description first, as `pulumi preview` prints it
    assert {"policy": "min-availability-zones", "level": "mandatory", "urn": None,
            "message": "Private (node) subnets span at least `minZones` availability zones (3 in prod).\n"
                       "private subnets span 2 zone(s) (us-east-1a, us-east-1b); at least 3 are required",
            } in doc["policy"]["violations"]


# --- exit codes -----------------------------------------------------------------------------------

# Dev has no policy violation: it exits 0 once it has no mandatory readiness finding either (the
# issue-10 fixes; tests/test_readiness_preview.py covers both exits of the readiness gate).
def test_dev_exit_follows_the_contract_and_prints_summary(dev_run):
    code, out, raw = dev_run
    doc = json.loads(raw)
    assert code == contract_exit(doc)
    assert (f"stack dev: {len(doc['resources'])} resources, ${doc['cost']['hourly_usd']:,.2f}/hour, "
            + summary(doc)) in out


def test_subprocess_dev_exit_follows_the_contract(dev_run_subprocess):
    proc, raw = dev_run_subprocess
    doc = json.loads(raw)
    assert proc.returncode == contract_exit(doc), proc.stderr
    assert proc.stdout.startswith("stack dev: ") and summary(doc) in proc.stdout


def test_misspelled_key_exits_2_in_subprocess(tmp_path):
    models = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["llmserving:models"]
    stack_file = write_stack(tmp_path / "Pulumi.typo.yaml", "dev", {"llmserving:modles": models},
                             remove=("llmserving:models",))
    proc = run_cli("--stack", "dev", "--stack-file", str(stack_file), "--quiet")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())  # rich may wrap
    assert "llmserving:modles: unknown key 'modles' (did you mean 'models'?)" in err
    assert "llmserving:models: required key is missing" in err
    assert "Traceback" not in proc.stderr + proc.stdout


def test_out_of_range_value_exits_2(tmp_path, capsys):
    net = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["llmserving:network"]
    stack_file = write_stack(tmp_path / "Pulumi.bad.yaml", "dev", {"llmserving:network": {**net, "zoneCount": 9}})
    assert preview.main(["--stack", "dev", "--stack-file", str(stack_file)]) == 2
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "llmserving:network.zoneCount: got 9; Input should be less than or equal to 6" in err
    assert "Traceback" not in captured.err + captured.out


def test_plan_error_exits_2(tmp_path, capsys):
    models = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["llmserving:models"]
    models[0]["maxReplicas"] = 1
    stack_file = write_stack(tmp_path / "Pulumi.small.yaml", "dev", {"llmserving:models": models})
    assert preview.main(["--stack", "dev", "--stack-file", str(stack_file)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "llmserving:models[0].maxReplicas: got 1;" in err


def test_unknown_stack_exits_2(capsys):
    assert preview.main(["--stack", "nope"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--stack: got 'nope'; no Pulumi.nope.yaml (stacks here: dev, large-use1-a, prod)" in err


def test_unknown_stack_exits_2_in_subprocess():
    proc = run_cli("--stack", "staging")
    assert proc.returncode == 2
    assert "no Pulumi.staging.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_invalid_yaml_exits_2(tmp_path, capsys):
    bad = tmp_path / "Pulumi.broken.yaml"
    bad.write_text("config:\n  llmserving:models: [\n")
    assert preview.main(["--stack", "dev", "--stack-file", str(bad)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err


def test_mandatory_violation_exits_1(mandatory_run):
    code, _ = mandatory_run
    assert code == 1


# --- determinism, secrets, tree -------------------------------------------------------------------

def test_two_runs_give_identical_json(dev_run, dev_run_subprocess):
    _, _, in_process = dev_run
    _, in_subprocess = dev_run_subprocess
    assert in_process == in_subprocess
    assert in_process.endswith(b"\n") and json.loads(in_process)["resources"]


def test_consecutive_runs_do_not_share_the_root_stack():
    def program(value):
        def run():
            pulumi.ComponentResource("test:index:Thing", "thing")
            pulumi.export(value, value)
        return run

    first = run_callable(program("a"), stack="one")
    second = run_callable(program("b"), stack="two")
    assert first.registrations[0].parent == "urn:pulumi:one::llmserving::pulumi:pulumi:Stack::llmserving-one"
    assert second.registrations[0].parent == "urn:pulumi:two::llmserving::pulumi:pulumi:Stack::llmserving-two"
    assert first.outputs == {"a": "a"} and second.outputs == {"b": "b"}


def test_secure_values_never_appear(dev_run, prod_doc):
    for raw in (dev_run[2].decode(), json.dumps(prod_doc)):
        for marker in PLACEHOLDER_MARKERS:
            assert marker not in raw


def test_secret_inputs_and_exports_are_masked():
    """A secret config value used as a resource input or exported shows as [secret] in the document."""
    import pulumi_aws as aws

    from infra.capacity import plan
    from infra.config import load_settings
    from tests.harness import stack_config

    def program():
        key = pulumi.Config("llmserving").require_secret("vllmApiKey")
        aws.ssm.Parameter("api-key", type="SecureString", value=key)
        pulumi.export("apiKey", key)
        pulumi.export("nested", {"key": key})

    config, secrets = stack_config("dev", {"llmserving:vllmApiKey": "sk-very-secret-value"})
    run = run_callable(program, config=config, secret_keys=secrets)
    files = preview.read_stack(ROOT, "dev")
    settings = load_settings(config, stack="dev", secret_keys=set(secrets))
    doc = preview.build_document(files, "dev", run, plan(settings), [])
    raw = json.dumps(doc)
    assert "sk-very-secret-value" not in raw
    [param] = [r for r in doc["resources"] if r["type"] == "aws:ssm/parameter:Parameter"]
    assert param["inputs"]["value"] == "[secret]"
    assert doc["outputs"]["apiKey"] == "[secret]" and doc["outputs"]["nested"] == "[secret]"


def test_secure_values_become_placeholders_in_config():
    files = preview.read_stack(ROOT, "prod")
    assert files.secret_keys == ["llmserving:hfToken", "llmserving:vllmApiKey"]
    assert files.config["llmserving:vllmApiKey"] == "offline-placeholder-for-llmserving:vllmApiKey"
    assert not any("REPLACE-WITH" in v for v in files.config.values())


def test_tree_lists_every_resource(dev_run):
    _, out, raw = dev_run
    doc = json.loads(raw)
    for r in doc["resources"]:
        assert f"{r['type']} {r['name']}" in out, r["urn"]
    assert f"({len(doc['resources'])} resources)" in out
    assert "Capacity plan" in out and "Cost (USD)" in out and "Policies: no violations" in out


def test_tree_shows_violations(tmp_path, mandatory_run):
    # The rendering of a violation: level, policy and the stack marker for a stack-level one.
    from rich.console import Console

    _, doc = mandatory_run
    console = Console(width=200, file=open(tmp_path / "out.txt", "w"))
    preview.render(doc, console)
    console.file.close()
    text = (tmp_path / "out.txt").read_text()
    assert "mandatory" in text and "min-availability-zones" in text and "(stack)" in text


def test_diff_documents(prod_doc):
    from infra.diff import diff_documents

    head = json.loads(json.dumps(prod_doc))
    vpc = next(r for r in head["resources"] if r["type"] == "aws:ec2/vpc:Vpc")
    vpc["inputs"]["cidrBlock"] = "10.60.0.0/16"
    removed = next(r for r in head["resources"] if r["type"] == "aws:ec2/routeTableAssociation:RouteTableAssociation")
    head["resources"].remove(removed)
    head["cost"]["hourly_usd"] += 10
    d = diff_documents(prod_doc, head)
    by_urn = {c.urn: c for c in d.resources}
    assert set(by_urn) == {vpc["urn"], removed["urn"]}
    assert by_urn[removed["urn"]].action == "delete"
    assert by_urn[vpc["urn"]].action == "replace"
    assert [p.path for p in by_urn[vpc["urn"]].properties] == ["cidrBlock"]
    assert d.cost["hourly_usd"]["delta"] == 10
