"""GitHub workflow files: valid against GitHub's schema (vendored by check-jsonschema), and wired as documented."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SCHEMAS = resources.files("check_jsonschema") / "builtin_schemas"


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans only: `on:` stays the string "on" (PyYAML's 1.1 rules make it True)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def load(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_Loader)


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


def wf(name: str) -> dict:
    return load(ROOT / ".github" / "workflows" / name)


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action + "@")]


def test_the_workflows_exist():
    assert {p.name for p in WORKFLOWS} == {"pr-preview.yml", "pr-preview-comment.yml", "pulumi.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid_against_githubs_schema(path):
    doc = load(path)
    jsonschema.validate(doc, schema("vendor/github-workflows.json"))
    # check-jsonschema's own rule: every job has a timeout.
    jsonschema.validate(doc, schema("custom/github-workflows-require-timeout.json"))


def test_schema_rejects_a_broken_workflow():
    """The schema check can fail: a job without runs-on or steps is rejected."""
    broken = {"on": "push", "jobs": {"x": {"steps": "not-a-list"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema("vendor/github-workflows.json"))


def test_check_jsonschema_cli_accepts_the_workflows():
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pr_preview_runs_tests_and_diffs_each_stack_without_secrets():
    doc = wf("pr-preview.yml")
    assert set(doc["on"]) == {"pull_request"}
    assert {"labeled", "unlabeled", "edited", "synchronize"} <= set(doc["on"]["pull_request"]["types"])
    assert doc["permissions"] == {"contents": "read"}
    text = (ROOT / ".github/workflows/pr-preview.yml").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "secrets." not in code and "pull_request_target" not in code
    job = doc["jobs"]["preview"]
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert "make test" in runs
    assert "scripts/preview-base.sh" in runs and "for stack in dev prod" in runs
    assert '--pr-event "$GITHUB_EVENT_PATH"' in runs and "--markdown" in runs and "--diff" in runs
    assert steps_using(job, "actions/upload-artifact")[0]["with"]["name"] == "pr-preview"


def test_comment_workflow_runs_trusted_code_only_and_updates_one_comment():
    doc = wf("pr-preview-comment.yml")
    assert doc["on"]["workflow_run"]["workflows"] == ["PR preview"]
    job = doc["jobs"]["comment"]
    assert not steps_using(job, "actions/checkout"), "must not check out PR code"
    assert doc["permissions"]["pull-requests"] == "write"
    script = steps_using(job, "actions/github-script")[0]["with"]["script"]
    assert "<!-- llmserving:pr-preview -->" in script and "updateComment" in script
    from infra.diff import MARKER
    assert MARKER == "<!-- llmserving:pr-preview -->"


def test_pulumi_workflow_previews_with_policy_pack_and_deploys_prod_behind_environment():
    doc = wf("pulumi.yml")
    preview = doc["jobs"]["preview"]
    step = steps_using(preview, "pulumi/actions")[0]
    assert step["uses"] == "pulumi/actions@v7"
    assert step["with"]["command"] == "preview" and step["with"]["comment-on-pr"] is True
    assert step["with"]["policyPacks"] == "policies"
    assert step["with"]["policyPackConfigs"] == "policies/config/${{ matrix.stack }}.json"
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    for stack in ("dev", "prod"):
        assert (ROOT / "policies" / "config" / f"{stack}.json").is_file()
    deploy = doc["jobs"]["deploy"]
    assert deploy["environment"] == "production"
    assert "refs/heads/main" in deploy["if"] and doc["on"]["push"]["branches"] == ["main"]
    up = steps_using(deploy, "pulumi/actions")[0]
    assert up["uses"] == "pulumi/actions@v7" and up["with"]["command"] == "up"
    assert up["with"]["stack-name"].endswith("/llmserving/prod")
    assert up["with"]["policyPackConfigs"] == "policies/config/prod.json"
    assert deploy["needs"] == "test"


def test_prod_preview_runs_where_the_private_api_is_reachable():
    """Prod's API endpoint is private: its preview runs on the deploy job's runner in the VPC."""
    doc = wf("pulumi.yml")
    preview, deploy = doc["jobs"]["preview"], doc["jobs"]["deploy"]
    assert preview["runs-on"] == "${{ fromJSON(matrix.runner) }}"
    runners = {i["stack"]: i["runner"] for i in preview["strategy"]["matrix"]["include"]}
    assert json.loads(runners["prod"]) == deploy["runs-on"] == ["self-hosted", "linux", "x64", "llmserving-prod-vpc"]
    assert "vars.DEV_PREVIEW_RUNNER" in runners["dev"]


def _go_duration_seconds(text: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", text))


def test_deploy_job_and_its_credentials_outlast_the_longest_wait_the_program_sets():
    """A job cancelled mid-`up` leaves pending operations; expired credentials fail every AWS call and
    `aws eks get-token` (aws-actions/configure-aws-credentials: sessions default to 1 hour)."""
    from tests.harness import shipped_preview

    longest = 0
    for stack in ("prod", "large-use1-a"):
        for r in shipped_preview(stack)["resources"]:
            for value in (r.get("customTimeouts") or {}).values():
                longest = max(longest, _go_duration_seconds(value))
            if r["type"] == "kubernetes:helm.sh/v3:Release":
                longest = max(longest, int(r["inputs"].get("timeout") or 0))
    # Cluster, node groups and controller releases come before the workloads (an hour is ample:
    # EKS control plane ~15 min, node groups ~5 min, releases up to 15 min each in series).
    platform = 3600
    job = wf("pulumi.yml")["jobs"]["deploy"]
    assert job["timeout-minutes"] * 60 >= longest + platform, (longest, job["timeout-minutes"])
    [creds] = steps_using(job, "aws-actions/configure-aws-credentials")
    assert int(creds["with"]["role-duration-seconds"]) >= job["timeout-minutes"] * 60
