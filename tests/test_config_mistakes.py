"""Issue 14: every bad stack file gets exit 2 naming the key, never a traceback.

Each class of mistake is run through the preview's command line (`main()`,
exit code and the exact message on stderr) and through the program as the
CLI runs it (`run_program`: runpy of `infra/` under the mock engine), which
must fail with a `pulumi.RunError` carrying the same message. Mistakes the
CLI itself refuses while reading the stack file (repeated keys, YAML syntax,
a list where `config:` belongs) never reach a program: the preview refuses
them the same way (pulumi sdk/go/common/workspace/loaders.go decodes the
file with gopkg.in/yaml.v3, whose decoder rejects repeated keys).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pulumi
import pytest
import yaml

from infra import preview
from infra.mockcloud import run_program
from tests.harness import ROOT, one, inputs

def _squash(text: str) -> str:
    return " ".join(text.split())


def stack_doc(base: str) -> dict:
    return yaml.safe_load((ROOT / f"Pulumi.{base}.yaml").read_text())


def write(tmp: Path, name: str, doc: Any) -> Path:
    path = tmp / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = preview.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def program_error(stack: str, stack_file: Path) -> str:
    """The program run as the CLI runs it with this stack file: the RunError text (fails if it succeeds)."""
    files = preview.read_stack(ROOT, stack, stack_file)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with pytest.raises(pulumi.RunError) as info:
            run_program(str(ROOT / "infra"), project=files.project, stack=stack, config=files.config,
                        secret_keys=files.secret_keys, region=files.config.get("aws:region", "us-east-1"))
    finally:
        os.chdir(cwd)
    return str(info.value)


def edit(base: str, change: Callable[[dict], Any]) -> dict:
    doc = stack_doc(base)
    change(doc["config"])
    return doc


def _set(section: str, **fields) -> Callable[[dict], None]:
    return lambda c: c[f"llmserving:{section}"].update(fields)


def _model(i: int, **fields) -> Callable[[dict], None]:
    return lambda c: c["llmserving:models"][i].update(fields)


def _pool(i: int, **fields) -> Callable[[dict], None]:
    return lambda c: c["llmserving:gpuPools"][i].update(fields)


def _both(*changes) -> Callable[[dict], None]:
    def apply(c):
        for ch in changes:
            ch(c)
    return apply


def _tenants(c: dict) -> None:
    c["llmserving:lora"]["tenants"] += [{"id": "initech", "adapters": ["initech-hr"]},
                                        {"id": "acme", "adapters": ["acme-sales"]}]


N = "llmserving"
# (case id, base stack, stack name, edit, the exact problem lines; the first line of the message follows from the class)
CASES = [
    # 1. component limits, checked in the stack's keys
    ("budget-thresholds", "dev", "dev", _set("budget", alertThresholdsPercent=[10, 20, 30, 40, 50, 60]),
     [f"{N}:budget.alertThresholdsPercent: got [10, 20, 30, 40, 50, 60]; 6 thresholds plus the forecast alert the "
      f"stack budget adds; AWS Budgets allows 5 notifications per budget, so list at most 4"]),
    ("budget-emails", "dev", "dev", _set("budget", notifyEmails=[f"team{i}@example.com" for i in range(11)]),
     [f"{N}:budget.notifyEmails: got a list of 11 items; 11 addresses; AWS Budgets allows 10 e-mail subscribers per "
      f"notification (use a mailing list)"]),
    ("router-replicas", "dev", "dev", lambda c: c.update({f"{N}:serving": {"figures": {"routerReplicas": 0}}}),
     [f"{N}:serving.figures.routerReplicas: got 0; must be between 1 and 100"]),
    ("prequantized-precision", "prod", "prod", _model(0, precision="bf16"),
     [f"{N}:models[0].precision: got 'bf16'; {N}:models[0].source 'RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8' is a "
      f"checkpoint pre-quantized to fp8 and vLLM serves it as fp8; set precision 'fp8'"]),
    ("awq-on-16-bit", "dev", "dev", _model(0, precision="awq"),
     [f"{N}:models[0].precision: got 'awq'; vLLM cannot quantize to awq while loading, and {N}:models[0].source "
      f"'meta-llama/Llama-3.1-8B-Instruct' is a bf16 checkpoint; use a pre-quantized awq checkpoint such as "
      f"hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4, or precision bf16 or fp8"]),
    ("multi-node-on-spot", "prod", "prod", _both(_model(0, pipelineParallel=2), _pool(0, capacityType="spot", maxNodes=8)),
     [f"{N}:gpuPools[0].capacityType: got 'spot'; model 'llama-3-1-70b' on this pool spans 2 nodes "
      f"({N}:models[0].pipelineParallel 2), and one Spot interruption takes the whole replica down; use 'on-demand'"]),
    ("stack-name-too-long", "dev", "dev-eu-west-1-canary-blue", lambda c: None,
     ["stack 'dev-eu-west-1-canary-blue': the stack name is too long: a Karpenter interruption EventBridge rule name "
      "would be 'llmserving-dev-eu-west-1-canary-blue-karpenter-capacity-reservation' (67 characters, at most 64); "
      "use a stack name of at most 22 characters"]),
    ("stack-name-characters", "dev", "Dev_Blue", lambda c: None,
     ["stack 'Dev_Blue': the stack name is part of S3 bucket, load balancer and Kubernetes names (e.g. "
      "'llmserving-Dev_Blue-logs-123456789012-us-east-1'), so it must be lowercase letters, digits and single '-' "
      "(start and end with a letter or digit)"]),
    ("zones-repeat", "dev", "dev", _set("network", zones=["us-east-1a", "us-east-1a"]),
     [f"{N}:network.zones[1]: got 'us-east-1a'; repeats {N}:network.zones[0]; each subnet pair needs its own zone"]),
    # 2. mistakes that used to pass
    ("negative-figure", "dev", "dev", lambda c: c.update({f"{N}:serving": {"figures": {"queueDepthPerReplica": -1}}}),
     [f"{N}:serving.figures.queueDepthPerReplica: got -1; must be above 0 and at most 100000"]),
    ("zero-probe-budget", "dev", "dev",
     lambda c: c.update({f"{N}:serving": {"figures": {"startupProbePeriodSeconds": 30, "startupBudgetFloorSeconds": 20}}}),
     [f"{N}:serving.figures.startupBudgetFloorSeconds: got 20; a startup budget must cover at least one probe period "
      f"{N}:serving.figures.startupProbePeriodSeconds"]),
    ("context-window", "dev", "dev", _model(1, maxModelLen=65536),
     [f"{N}:models[1].maxModelLen: got 65536; mistralai/Mistral-7B-Instruct-v0.3 has a context window of 32,768 "
      f"tokens (max_position_embeddings of its config.json) and vLLM refuses a longer --max-model-len; use at most "
      f"32768"]),
    ("budget-below-plan", "dev", "dev", _set("budget", hourlyUsd=1),
     [f"{N}:budget.hourlyUsd: got 1; the plan costs $3.39/hour (g5-spot $3.39); raise it or lower the scale"]),
    ("gpus-above-total", "dev", "dev", _set("gpuLimits", maxGpusTotal=4),
     [f"{N}:gpuLimits.maxGpusTotal: got 4; the plan needs 8 GPUs (g5-spot 8); raise it or lower the scale"]),
    # 3. cross-field errors name the exact keys and show values, not sections
    ("replicas", "prod", "prod", _model(1, minReplicas=50),
     [f"{N}:models[1].minReplicas: got 50; must be at most {N}:models[1].maxReplicas (40)"]),
    ("lora-base-model", "prod", "prod", lambda c: c[f"{N}:lora"].pop("baseModel"),
     [f"{N}:lora.baseModel: required key is missing; with {N}:lora.enabled true, name the model that serves the "
      f"adapters"]),
    ("lora-tenant-id", "prod", "prod", _tenants,
     [f"{N}:lora.tenants[3].id: got 'acme'; repeats {N}:lora.tenants[0].id; tenant ids must be unique"]),
    ("zones-count", "dev", "dev", _set("network", zones=["us-east-1a", "us-east-1b", "us-east-1c"]),
     [f"{N}:network.zones: got [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]; lists 3 zones but "
      f"{N}:network.zoneCount is 2"]),
    ("node-counts", "dev", "dev", _pool(0, minNodes=20),
     [f"{N}:gpuPools[0].minNodes: got 20; must be at most {N}:gpuPools[0].maxNodes (16)"]),
    ("plan-does-not-fit", "dev", "dev", _model(0, maxModelLen=32768),
     [f"{N}:models[0]: model 'llama-3-1-8b' does not fit g5.2xlarge ({N}:gpuPools[0].instanceTypes[0]): it needs "
      f"33 GB (weights 16 GB in bf16 + KV cache 17 GB for 4 x 32,768 tokens of maxModelLen) but a replica of TP 1 x "
      f"PP 1 on g5.2xlarge has 22 GB (1 x 24 GB A10G x 0.9 gpu memory utilization); use more or larger GPUs, a "
      f"smaller precision or a shorter maxModelLen"]),
    ("plan-tensor-parallel", "dev", "dev", _model(0, tensorParallel=2),
     [f"{N}:models[0].tensorParallel: got 2; g5.2xlarge has 1 GPUs per node, so tensorParallel must be at most 1 "
      f"({N}:gpuPools[0].instanceTypes[0])"]),
    # 4. messages a user can act on
    ("empty-section", "dev", "dev", lambda c: c.update({f"{N}:budget": None}),
     [f"{N}:budget: has no value (an empty entry); it must be a mapping with keys such as alertThresholdsPercent, "
      f"hourlyUsd, monthlyUsd, notifyEmails"]),
    ("empty-optional-section", "dev", "dev", lambda c: c.update({f"{N}:observability": None}),
     [f"{N}:observability: has no value (an empty entry); it must be a mapping with keys such as alerts, "
      f"dcgmExporter, grafana, logRetentionDays, prometheus, or leave the key out for the defaults"]),
    ("cidr-host-bits", "dev", "dev", _set("network", vpcCidr="10.40.1.0/16"),
     [f"{N}:network.vpcCidr: got '10.40.1.0/16'; has host bits set; the network address is 10.40.0.0/16"]),
    ("cidr-host-bits-list", "dev", "dev", _set("ingress", allowedCidrs=["203.0.113.7/24"]),
     [f"{N}:ingress.allowedCidrs[0]: got '203.0.113.7/24'; has host bits set; the network address is "
      f"203.0.113.0/24"]),
    ("other-namespace", "dev", "dev", lambda c: c.update({"llmservng:tags": {"team": "ml"}}),
     ["llmservng:tags: namespace 'llmservng' is not read by this program (project 'llmserving': its settings live "
      "under llmserving:, providers' under aws:, kubernetes:, eks:, pulumi:); did you mean 'llmserving:tags'?"]),
    ("region-in-project", "dev", "dev", lambda c: c.update({f"{N}:region": "us-west-2"}),
     [f"{N}:region: unknown key 'region'; it is the AWS provider's setting: set "
      f"aws:region (not under llmserving:); allowed keys: adapterStore, budget, catalog, ecs, eks, environment, "
      f"gpuLimits, gpuPools, hfToken, ingress, kubernetesVersion, lora, models, network, observability, "
      f"orchestrator, scale, serving, spotServiceLinkedRole, tags, vllmApiKey"]),
    ("aws-key-misspelled", "dev", "dev", lambda c: c.update({"aws:regoin": c.pop("aws:region")}),
     ["aws:regoin: unknown key 'regoin' of the AWS provider (did you mean 'aws:region'?)",
      "aws:region: required key is missing; set it with `pulumi config set aws:region us-east-1`"]),
    ("tag-set-by-program", "prod", "prod", lambda c: c[f"{N}:tags"].update({"stack": "blue"}),
     [f"{N}:tags.stack: the program sets this tag itself (cost allocation), so the value would be replaced; remove "
      f"it (program tags: project, stack, environment, tier)"]),
]


@pytest.mark.parametrize("case_id,base,stack,change,lines", CASES, ids=[c[0] for c in CASES])
def test_mistake_exits_2_and_the_program_raises_the_same_run_error(case_id, base, stack, change, lines, tmp_path,
                                                                    capsys):
    path = write(tmp_path, case_id, edit(base, change))
    code, out, err = run_main(capsys, "--stack", stack, "--stack-file", str(path), "--quiet")
    assert code == 2, out + err
    assert "Traceback" not in out + err and "internal error" not in err
    message = _squash(err)
    assert message.startswith("error: ")
    for line in lines:
        assert f"- {line}" in message, message
    # No Python names or section dumps in what the user reads.
    for leak in ("None", "Config'", "instance of", '{"'):
        assert leak not in message, (leak, message)
    # The program, as the CLI runs it, stops with the same message (a RunError: no traceback).
    assert _squash(program_error(stack, path)) == message.removeprefix("error: ")


def test_version_written_as_a_yaml_number(tmp_path, capsys):
    text = (ROOT / "Pulumi.dev.yaml").read_text().replace('llmserving:kubernetesVersion: "1.33"',
                                                          "llmserving:kubernetesVersion: 1.30")
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    code, _, err = run_main(capsys, "--stack", "dev", "--stack-file", str(path), "--quiet")
    assert code == 2
    expected = (f"{N}:kubernetesVersion: got '1.3'; must be an EKS Kubernetes version from 1.28 to 1.39; YAML reads "
                f"an unquoted 1.30 as the number 1.3, so quote it: kubernetesVersion: \"1.30\"")
    assert f"- {expected}" in _squash(err)
    # The CLI decodes the file into plain values first (loaders.go), so the program also gets "1.3".
    assert preview.read_stack(ROOT, "dev", path).config[f"{N}:kubernetesVersion"] == "1.3"
    assert _squash(program_error("dev", path)) == _squash(err).removeprefix("error: ")


def test_a_nested_number_where_text_belongs_says_to_quote_it(tmp_path, capsys):
    path = write(tmp_path, "dev", edit("dev", lambda c: c.update({f"{N}:tags": {"release": 1.3}})))
    code, _, err = run_main(capsys, "--stack", "dev", "--stack-file", str(path), "--quiet")
    assert code == 2
    assert f"- {N}:tags.release: got 1.3; must be text (YAML read it as a number; quote it, e.g. \"1.3\")" in _squash(err)


# --- mistakes the CLI refuses while reading the stack file --------------------------------------

def test_repeated_key_names_both_lines(tmp_path, capsys):
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    text += "  llmserving:environment: staging\n"
    text = text.replace("    zoneCount: 2\n", "    zoneCount: 2\n    zoneCount: 3\n")
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    lines = text.splitlines()
    first_env = lines.index("  llmserving:environment: dev") + 1
    first_zone = lines.index("    zoneCount: 2") + 1
    code, out, err = run_main(capsys, "--stack", "dev", "--stack-file", str(path), "--quiet")
    assert code == 2 and "Traceback" not in out + err
    message = _squash(err)
    assert message.startswith(f"error: {path}: the stack file repeats keys, which the Pulumi CLI refuses "
                              f"(\"mapping key already defined\"); keep one of each:")
    assert f"- line {first_zone + 1}: 'llmserving:network.zoneCount' repeats line {first_zone}" in message
    assert f"- line {len(lines)}: 'llmserving:environment' repeats line {first_env}" in message


def test_yaml_syntax_error_names_the_stack_file_as_given(tmp_path, capsys, monkeypatch):
    (tmp_path / "Pulumi.broken.yaml").write_text("config:\n  llmserving:models: [\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "--stack", "dev", "--stack-file", "Pulumi.broken.yaml", "--quiet")
    assert code == 2 and "Traceback" not in out + err
    assert _squash(err) == ("error: Pulumi.broken.yaml: the stack file is not valid YAML at line 3, column 1: while "
                            "parsing a flow node; did not find expected node content")
    assert "<unicode string>" not in err and str(tmp_path) not in err


def test_a_list_where_the_config_mapping_belongs(tmp_path, capsys):
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config:\n  - llmserving:environment: dev\n")
    code, out, err = run_main(capsys, "--stack", "dev", "--stack-file", str(path), "--quiet")
    assert code == 2 and "Traceback" not in out + err
    assert _squash(err) == (f"error: {path}: `config` got a list; it must be a mapping of keys to values "
                            f"(`llmserving:environment: dev` lines under `config:`, not `- ` list items)")


# --- 5. a stack without its generated policy config -----------------------------------------------

def test_missing_policy_config_names_the_file_and_the_command_that_generates_it(tmp_path, capsys):
    path = write(tmp_path, "staging-blue", stack_doc("dev"))
    code, out, err = run_main(capsys, "--stack", "staging-blue", "--stack-file", str(path), "--quiet")
    assert code == 2 and "Traceback" not in out + err
    assert _squash(err) == (
        f"error: policy config policies/config/staging-blue.json is missing: the policy pack would judge stack "
        f"'staging-blue' by the pack's defaults, not by this stack's budget, GPU limits and instance prices; generate "
        f"it with `python -m infra.policy_config --stack staging-blue --stack-file {path}` and review it (or pass "
        f"--policy-config FILE)")
    # The generator named in the message reads the same stack file.
    from infra import policy_config

    generated = tmp_path / "staging-blue.json"
    generated.write_text(policy_config.render("staging-blue", stack_file=path))
    assert json.loads(generated.read_text())["gpu-max-total"]["maxGpusTotal"] == 16


def test_the_summary_says_which_policy_config_judged_the_stack(tmp_path, capsys, monkeypatch):
    from infra import policy_config

    path = write(tmp_path, "staging-blue", stack_doc("dev"))
    generated = tmp_path / "staging-blue.json"
    generated.write_text(policy_config.render("staging-blue", stack_file=path))
    # --policy-config is what the pack is configured with (as `pulumi preview --policy-pack-config`).
    files = preview.read_stack(ROOT, "staging-blue", path, policy_config_file=generated)
    assert files.policy_config == json.loads(generated.read_text()) and files.policy_config_path == generated
    seen = {}

    def fake_preview(stack, stack_file=None, policy_config_file=None):  # the full run is tested elsewhere
        seen.update(stack=stack, policy_config_file=policy_config_file)
        return {"resources": [], "cost": {"hourly_usd": 0.0}, "policy": {"violations": []}, "readiness": {"findings": []}}

    monkeypatch.setattr(preview, "preview", fake_preview)
    for extra, used in ((["--policy-config", str(generated)], str(generated)), ([], "policies/config/dev.json")):
        stack = "staging-blue" if extra else "dev"
        code, out, _ = run_main(capsys, "--stack", stack, "--stack-file", str(path), "--quiet", *extra)
        assert code == 0
        assert out.strip() == (f"stack {stack}: 0 resources, $0.00/hour, 0 mandatory and 0 advisory policy "
                               f"violations, 0 mandatory and 0 advisory readiness findings (policy config {used})")
    with pytest.raises(preview.PreviewInputError, match="--policy-config: nope.json does not exist"):
        preview.read_stack(ROOT, "dev", policy_config_file=Path("nope.json"))


def test_policy_config_generator_refuses_a_bad_stack_with_the_preview_message(tmp_path, capsys):
    from infra import policy_config

    path = write(tmp_path, "dev", edit("dev", _set("budget", alertThresholdsPercent=[1, 2, 3, 4, 5])))
    assert policy_config.main(["--stack", "dev", "--stack-file", str(path), "--check"]) == 2
    assert "llmserving:budget.alertThresholdsPercent: got [1, 2, 3, 4, 5]" in _squash(capsys.readouterr().err)


# --- 6. secrets at nested paths -------------------------------------------------------------------

def _secret_email(c: dict) -> None:
    c[f"{N}:budget"]["notifyEmails"] = [{"secure": "v1:AAAAencrypted"}, "finops@example.com"]


def test_a_secret_at_a_nested_path_gets_a_stand_in_that_passes_its_check(tmp_path):
    path = write(tmp_path, "dev", edit("dev", _secret_email))
    files = preview.read_stack(ROOT, "dev", path)
    assert f"{N}:budget" in files.secret_keys  # the CLI marks the whole key secret
    settings, _ = preview.check_stack(files, "dev")
    assert settings.config.budget.notify_emails == ["secret-address@example.com", "finops@example.com"]
    # The program, run as the CLI runs it, builds the budget with the stand-in (no placeholder reaches AWS args).
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        run = run_program(str(ROOT / "infra"), project="llmserving", stack="dev", config=files.config,
                          secret_keys=files.secret_keys, region="us-east-1")
    finally:
        os.chdir(cwd)
    budget = inputs(one(run, "aws:budgets/budget:Budget"))
    emails = {e for n in budget["notifications"] for e in n["subscriberEmailAddresses"]}
    assert emails == {"secret-address@example.com", "finops@example.com"}


def test_a_secret_where_no_stand_in_is_known_says_so(tmp_path, capsys):
    path = write(tmp_path, "dev", edit("dev", _model(0, source={"secure": "v1:AAAAencrypted"})))
    code, out, err = run_main(capsys, "--stack", "dev", "--stack-file", str(path), "--quiet")
    assert code == 2 and "Traceback" not in out + err
    assert (f"- {N}:models[0].source: is a secret (secure:), which the offline preview cannot decrypt, and no "
            f"stand-in that passes this key's check is known (infra/config.py SECRET_STAND_INS); keep this key in "
            f"plain text or add a stand-in") in _squash(err)
    assert "offline-placeholder" not in err


def test_stand_ins_pass_the_checks_of_their_keys():
    from infra.config import SECRET_PLACEHOLDER, SECRET_STAND_INS, load_settings
    from tests.harness import stack_config

    config, secrets = stack_config("prod")
    # Every key with a stand-in, stored as a secret at once.
    config[f"{N}:budget"] = json.dumps({**json.loads(config[f"{N}:budget"]), "notifyEmails": [SECRET_PLACEHOLDER + "x"]})
    config[f"{N}:eks"] = json.dumps({"adminRoleArns": [SECRET_PLACEHOLDER + "x"]})
    config[f"{N}:adapterStore"] = json.dumps({"writerPrincipalArns": [SECRET_PLACEHOLDER + "x"]})
    ingress = json.loads(config[f"{N}:ingress"])
    ingress.update(certificateArn=SECRET_PLACEHOLDER + "x", domainName=SECRET_PLACEHOLDER + "x",
                   allowedCidrs=[SECRET_PLACEHOLDER + "x"])
    config[f"{N}:ingress"] = json.dumps(ingress)
    config[f"{N}:serving"] = json.dumps({"prometheusUrl": SECRET_PLACEHOLDER + "x"})
    config[f"{N}:tags"] = json.dumps({"cost-center": SECRET_PLACEHOLDER + "x"})
    net = json.loads(config[f"{N}:network"])
    config[f"{N}:network"] = json.dumps({**net, "apiPublicCidrs": [SECRET_PLACEHOLDER + "x"]})
    keys = {f"{N}:{k}" for k in ("budget", "eks", "adapterStore", "ingress", "serving", "tags", "network")}
    settings = load_settings(config, stack="prod", secret_keys=set(secrets) | keys)
    assert settings.config.ingress.certificate_arn.startswith("arn:aws:acm:us-east-1:")
    assert {p.split(".")[0].rstrip("[]") for p in SECRET_STAND_INS} <= {k.split(":")[1] for k in keys}


# --- the config checks and the components agree ---------------------------------------------------

def test_budget_limits_match_the_component():
    from components.budget import StackBudgetArgs, validate_stack_budget_args
    from components.errors import ArgsError
    from infra.config import ConfigError
    from tests.harness import settings_for, stack_value

    def budget(thresholds, emails):
        b = stack_value("dev", f"{N}:budget")
        b.update(alertThresholdsPercent=thresholds, notifyEmails=emails)
        return {f"{N}:budget": b}

    emails = [f"a{i}@example.com" for i in range(10)]
    ok = settings_for("dev", budget([10, 20, 30, 40], emails)).config.budget
    validate_stack_budget_args(StackBudgetArgs("b", 1.0, tuple(ok.alert_thresholds_percent), tuple(ok.notify_emails)))
    for thresholds, addresses in (([10, 20, 30, 40, 50], emails), ([10], emails + ["x@example.com"])):
        with pytest.raises(ConfigError):
            settings_for("dev", budget(thresholds, addresses))
        with pytest.raises(ArgsError):
            validate_stack_budget_args(StackBudgetArgs("b", 1.0, tuple(thresholds), tuple(addresses)))


def test_serving_figure_bounds_cover_every_figure_and_its_default():
    from infra.config_limits import FIGURE_BOUNDS, _camel, figure_problems
    from infra.serving_catalog import SERVING_FIGURES

    assert set(FIGURE_BOUNDS) == set(SERVING_FIGURES)
    assert figure_problems({_camel(k): float(f.value) for k, f in SERVING_FIGURES.items()}) == []


def test_router_replica_and_alert_bounds_match_the_components():
    from components.errors import ArgsError
    from components.model_router import validate_model_router_args
    from infra import serving
    from infra.config import ConfigError
    from tests.harness import settings_for

    with pytest.raises(ConfigError):
        settings_for("dev", {f"{N}:serving": {"figures": {"routerReplicas": 0}}})
    settings = settings_for("dev", {f"{N}:serving": {"figures": {"routerReplicas": 1}}})
    args = serving.router_args(settings, ("10.40.240.0/20",))
    validate_model_router_args(args)
    with pytest.raises(ArgsError):
        validate_model_router_args(type(args)(**{**args.__dict__, "replicas": 0}))


def test_assumption_bounds_name_catalog_assumptions_and_pass_their_defaults():
    from infra import catalog
    from infra.config import ConfigError
    from infra.config_limits import ASSUMPTION_BOUNDS
    from tests.harness import settings_for

    assert set(ASSUMPTION_BOUNDS) == set(catalog.ASSUMPTIONS)
    settings_for("dev")  # defaults pass
    with pytest.raises(ConfigError) as info:
        settings_for("dev", {f"{N}:catalog": {"assumptions": {"active_request_share": {"value": 1.5}}}})
    assert info.value.problems == [f"{N}:catalog.assumptions['active_request_share'].value: got 1.5; must be above 0 "
                                   f"and at most 1"]


def test_ecs_grace_period_must_cover_the_health_check_start_period():
    from infra.config import ConfigError
    from tests.harness import settings_for

    with pytest.raises(ConfigError) as info:
        settings_for("dev", {f"{N}:ecs": {"loadGracePeriodSeconds": 100}})
    assert info.value.problems == [f"{N}:ecs.loadGracePeriodSeconds: got 100; must be at least 300, the container "
                                   f"health check's start period; the load balancer would count a loading model as "
                                   f"unhealthy"]


# --- names that would not fit: hash-suffixed where the program builds them -------------------------

def test_names_fit_only_when_they_would_otherwise_be_invalid():
    from infra import names

    assert names.log_bucket_name("llmserving-prod", "123456789012", "us-east-1") == \
        "llmserving-prod-logs-123456789012-us-east-1"
    long = names.adapter_bucket_name("llmserving-dev-use1-canary-blue", "123456789012", "ap-southeast-2")
    assert len(long) == 57 and re.fullmatch(r"[a-z0-9-]+-[0-9a-f]{8}", long) and "--" not in long
    other = names.adapter_bucket_name("llmserving-dev-use1-canary-blue", "210987654321", "ap-southeast-2")
    assert other != long  # the hash covers the cut part (account, region)


def test_a_long_stack_name_gets_bucket_names_that_fit_and_distinct_role_names(tmp_path):
    from tests.harness import of_type

    stack = "dev-use1-canary-blue"  # 20 characters: the adapter bucket would be 64
    files = preview.read_stack(ROOT, "dev", write(tmp_path, stack, stack_doc("dev")))
    preview.check_stack(files, stack)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        run = run_program(str(ROOT / "infra"), project="llmserving", stack=stack, config=files.config,
                          secret_keys=files.secret_keys, region="us-east-1")
    finally:
        os.chdir(cwd)
    buckets = sorted(inputs(r)["bucket"] for r in of_type(run, "aws:s3/bucket:Bucket"))
    assert all(3 <= len(b) <= 63 for b in buckets), buckets
    assert f"llmserving-{stack}-logs-123456789012-us-east-1" in buckets  # fits: unchanged
    roles = [inputs(r)["name"] for r in of_type(run, "aws:iam/role:Role")]
    assert len(roles) == len(set(roles)) and all(len(r) <= 64 for r in roles)
    assert any(r.endswith("-reader") for r in roles) and any(r.endswith("-writer") for r in roles)


# --- the real command line, a few cases in parallel subprocesses ---------------------------------

def test_real_cli_subprocesses_exit_2_without_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.pop("PYTHONPATH", None)
    picks = {c[0]: c for c in CASES if c[0] in ("budget-thresholds", "stack-name-too-long", "empty-section")}
    procs = {}
    for case_id, (_, base, stack, change, lines) in picks.items():
        path = write(tmp_path, case_id, edit(base, change))
        procs[case_id] = (subprocess.Popen([sys.executable, "-m", "infra.preview", "--stack", stack, "--stack-file",
                                            str(path), "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True), lines)
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text("config:\n  llmserving:models: [\n")
    procs["yaml"] = (subprocess.Popen([sys.executable, "-m", "infra.preview", "--stack", "dev", "--stack-file",
                                       "Pulumi.broken.yaml"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True),
                     ["Pulumi.broken.yaml: the stack file is not valid YAML at line 3, column 1"])
    for case_id, (proc, lines) in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (case_id, out, err)
        assert "Traceback" not in out + err, case_id
        for line in lines:
            assert line in _squash(err), (case_id, err)
