"""The first-deploy preview (issue 11 section 4): provider-computed outputs unknown as in a first real
`pulumi preview`, what each policy could not judge, and no mandatory rule skipped silently on a shipped
stack (nor on the ECS variant, whose task definition used to be unknown).
"""

from __future__ import annotations

import copy
import functools
import json
import sys

import pulumi_aws as aws
import pytest

from infra import first_deploy as F
from infra import preview as P
from infra import readiness as R
from infra.analyzer import run_policy_pack
from infra.mockcloud import UNKNOWN, plain, run_callable
from infra.preview import read_stack, resource_entry
from tests.harness import ROOT, once_per_session, run_stack, shipped_preview
from tests.test_ecs_stacks import TIERS

SHIPPED = ["dev", "prod", "large-use1-a"]
ECS_VARIANT = "medium-p5"


def _unknown_paths(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _unknown_paths(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _unknown_paths(v, f"{path}[{i}]")
    elif value == "[unknown]":
        yield path


# --- the mocks ----------------------------------------------------------------------------------------------

def _bucket_and_role():
    bucket = aws.s3.Bucket("b", bucket="llmserving-test-adapters")
    aws.s3.BucketPolicy("b", bucket=bucket.id, policy=bucket.arn.apply(lambda a: json.dumps({"Resource": a})))
    role = aws.iam.Role("r", name="llmserving-test-reader", assume_role_policy="{}")
    aws.iam.RolePolicy("r", role=role.id, policy="{}")
    aws.iam.RolePolicy("r-by-name", role=role.name, policy="{}")


def test_first_deploy_mocks_leave_ids_and_computed_outputs_unknown_and_inputs_known():
    known = {r.name + r.type: plain(r.inputs) for r in run_callable(_bucket_and_role).registrations}
    first = {r.name + r.type: plain(r.inputs) for r in run_callable(_bucket_and_role, first_deploy=True).registrations}
    pol, rp, rp_name = ("baws:s3/bucketPolicy:BucketPolicy", "raws:iam/rolePolicy:RolePolicy",
                        "r-by-nameaws:iam/rolePolicy:RolePolicy")
    # With known mocks every input is a value...
    assert known[pol]["bucket"] == "llmserving-test-adapters" and known[rp]["role"] == "llmserving-test-reader"
    # ...on a first deploy the bucket's id and ARN and the role's id do not exist yet (an apply on them is unknown),
    assert first[pol] == {"bucket": "[unknown]", "policy": "[unknown]"}
    assert first[rp]["role"] == "[unknown]"
    # while an output that repeats an input (the role's name) is known, as the engine's preview of a create shows it.
    assert first[rp_name]["role"] == "llmserving-test-reader"


# --- shipped stacks and the ECS variant ---------------------------------------------------------------------

@pytest.mark.parametrize("stack", SHIPPED)
def test_shipped_stack_first_deploy_skips_no_mandatory_rule(stack):
    doc = P.preview(stack, first_deploy=True, baseline=shipped_preview(stack))
    assert doc["firstDeploy"] == {"silentlySkipped": [], "falseViolations": []}
    assert [v for v in doc["policy"]["violations"] if v["level"] == "mandatory"] == []
    assert [f for f in doc["readiness"]["findings"] if f["level"] == "mandatory"] == []
    # The mode is real: inputs built from computed outputs are unknown (subnets, roles, policies' targets).
    unknown = [p for r in doc["resources"] for p in _unknown_paths(r["inputs"])]
    assert len(unknown) > 50


@functools.lru_cache(maxsize=None)
def _ecs_runs() -> tuple:
    """(known, first-deploy) runs of the ECS variant; the known one is the run other modules share."""
    stack, changes = TIERS[ECS_VARIANT]
    return tuple(run_stack(stack, changes, first_deploy=fd) for fd in (False, True))


def _pack(regs, stack="prod"):
    files = read_stack(ROOT, stack)
    return run_policy_pack(ROOT / "policies", regs, policy_config=files.policy_config, project="llmserving",
                           stack=stack, stack_config=files.config, stack_tags={})


@functools.lru_cache(maxsize=None)
def _ecs_judged(first: bool) -> tuple[str, dict]:
    """(violations as JSON, effective config) of the pack over the ECS variant's known or first-deploy run."""
    def judge() -> tuple[str, dict]:
        run = _ecs_runs()[1 if first else 0]
        violations, effective = _pack(run.registrations)
        return json.dumps([v.as_dict() for v in violations]), effective

    return once_per_session(f"test_fidelity_first_deploy._ecs_judged:{first}", judge)


def test_ecs_variant_first_deploy_skips_no_mandatory_rule():
    known, _ = _ecs_judged(False)
    first, effective = _ecs_judged(True)
    verdicts, unjudged = F.split_violations(json.loads(first))
    skipped, false = F.compare_verdicts(json.loads(known), verdicts, unjudged)
    # (the variant's pools exceed prod's budget figures: those verdicts are the same with known values)
    assert (skipped, false) == ([], [])
    assert F.probe_reads(ROOT / "policies", _ecs_runs()[1].registrations, effective) == []
    res = [resource_entry(r) for r in _ecs_runs()[1].registrations]
    assert [f for f in R.check(res) if f.level == "mandatory"] == []


def _serving_task(regs) -> object:
    """The serving task definition (the vllm container), not the run-once `*-mirror-task`."""
    [task] = [r for r in regs if r.type == "aws:ecs/taskDefinition:TaskDefinition"
              and not r.name.endswith("-mirror-task")]
    return task


def test_ecs_task_definition_is_known_on_a_first_deploy_so_its_rules_judge_it():
    """Secrets Manager ARNs end in a random suffix, so the task definition that names them was unknown on a
    first deploy and six mandatory ECS rules (privileged, API key, pinned images, probes, shm, parallelism)
    skipped it. SSM parameter ARNs are known (components/serving_secrets.py). Since the model mirror, the
    serving task names only the API key and the run-once mirror task only the Hub token."""
    _, first = _ecs_runs()
    task = _serving_task(first.registrations)
    [mirror] = [r for r in first.registrations if r.type == "aws:ecs/taskDefinition:TaskDefinition"
                and r.name.endswith("-mirror-task")]
    [params] = [[r for r in first.registrations if r.type == "aws:ssm/parameter:Parameter"]]
    assert {plain(r.inputs)["name"] for r in params} == {"/llmserving/prod/hf-token", "/llmserving/prod/vllm-api-key"}
    assert {plain(r.inputs)["type"] for r in params} == {"SecureString"}
    for td, container, secrets, grant_suffix in ((task, "vllm", {"VLLM_API_KEY"}, "-execution-secrets"),
                                                 (mirror, "mirror", {"HF_TOKEN"}, "-execution-mirror-secrets")):
        containers = json.loads(plain(td.inputs)["containerDefinitions"])  # known: json, not "[unknown]"
        [c] = [c for c in containers if c["name"] == container]
        assert {s["name"] for s in c["secrets"]} == secrets
        assert all(s["valueFrom"].startswith("arn:aws:ssm:us-east-1:123456789012:parameter/llmserving/prod/")
                   for s in c["secrets"])
        # The execution role may read exactly those parameters, and knows it before they exist.
        [grant] = [r for r in first.registrations if r.name.endswith(grant_suffix)]
        doc = json.loads(plain(grant.inputs)["policy"])
        assert doc["Statement"][0]["Resource"] == sorted(s["valueFrom"] for s in c["secrets"])
        # The task definition still waits for its parameters (dependencies of its container definitions).
        named = {s["valueFrom"].rpartition(":parameter")[2] for s in c["secrets"]}
        assert {r.urn for r in params if plain(r.inputs)["name"] in named} <= set(td.all_dependencies)
    # ...and the six ECS rules judge it (test_ecs_variant_first_deploy_skips_no_mandatory_rule: no silent skip).


def _plant(reg, path: tuple, value):
    reg = copy.deepcopy(reg)
    cur = reg.inputs
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    return reg


def test_a_vanished_mandatory_violation_is_never_silent():
    """Known values: a privileged vLLM container is a mandatory violation. First deploy with the task
    definition unknown (what Secrets Manager ARNs did): the violation must come back as "could not judge"
    or be listed as silently skipped, never vanish."""
    known, first = _ecs_runs()

    def privileged(regs, unknown_td: bool):
        task = _serving_task(regs)
        out = []
        for r in regs:
            if r is task:
                if unknown_td:
                    r = _plant(r, ("containerDefinitions",), UNKNOWN)
                else:
                    cds = json.loads(r.inputs["containerDefinitions"])
                    [vllm] = [c for c in cds if c["name"] == "vllm"]
                    vllm["privileged"] = True
                    r = _plant(r, ("containerDefinitions",), json.dumps(cds))
            out.append(r)
        return out

    k, _ = _pack(privileged(known.registrations, False))
    f, effective = _pack(privileged(first.registrations, True))
    kd = [v.as_dict() for v in k]
    assert any(v["policy"] == "no-privileged-containers" and v["level"] == "mandatory" for v in kd)
    verdicts, unjudged = F.split_violations([v.as_dict() for v in f])
    skipped, false = F.compare_verdicts(kd, verdicts, unjudged)
    task_urn = _serving_task(first.registrations).urn
    said = {(u["policy"], u["urn"]) for u in unjudged}
    listed = {(s.policy, s.urn) for s in skipped}
    assert ("no-privileged-containers", task_urn) in said | listed
    if ("no-privileged-containers", task_urn) in listed:
        [s] = [s for s in skipped if s.policy == "no-privileged-containers"]
        assert s.kind == "verdict" and s.message.startswith("mandatory violation with known values: ")
        assert "runs privileged" in s.message and s.message.endswith(
            "with the unknowns of a first deploy the rule reports nothing and does not say it could not judge")
    assert false == []


def test_probe_names_a_rule_that_reads_an_unknown_and_says_nothing():
    """The read probe, on rules written the two ways: skip on UNKNOWN (silent), or say "could not judge"."""
    sys.path.insert(0, str(ROOT / "policies"))
    from rules.common import UNKNOWN as RULE_UNKNOWN
    from rules.common import resource_policy

    def silent(r, cfg, report):
        if r.get("metadataOptions", "httpTokens") is RULE_UNKNOWN:
            return
        if r.get("metadataOptions", "httpTokens") != "required":
            report("IMDSv1 allowed")

    def honest(r, cfg, report):
        tokens = r.get("metadataOptions", "httpTokens")
        if tokens is RULE_UNKNOWN:
            report(f"{F.UNJUDGED_PREFIX}launch template {r.name}: metadataOptions.httpTokens is unknown")
        elif tokens != "required":
            report("IMDSv1 allowed")

    lt = "aws:ec2/launchTemplate:LaunchTemplate"
    policies = [resource_policy("t-silent", "skips unknowns", silent, types=[lt]),
                resource_policy("t-honest", "says it could not judge", honest, types=[lt])]
    _, first = _ecs_runs()
    regs = [(_plant(r, ("metadataOptions", "httpTokens"), UNKNOWN) if r.type == lt else r) for r in first.registrations]
    [target] = [r for r in regs if r.type == lt]
    effective = {"t-silent": {"enforcementLevel": "mandatory"}, "t-honest": {"enforcementLevel": "mandatory"}}
    [skip] = F.probe_reads(ROOT / "policies", regs, effective, policies=policies)
    assert (skip.policy, skip.urn, skip.kind) == ("t-silent", target.urn, "read")
    assert skip.message == (f"read unknown input(s) metadataOptions.httpTokens of {lt} {target.name} and reported "
                            f"neither a violation nor \"could not judge: ...\"")
    # Advisory rules are not the probe's business.
    effective["t-silent"]["enforcementLevel"] = "advisory"
    assert F.probe_reads(ROOT / "policies", regs, effective, policies=policies) == []


def test_probe_excuses_an_unknown_reference_only_when_the_rule_followed_its_dependencies():
    """A first deploy leaves the ECS Auto Scaling group's launch template id unknown; the engine sends the
    group's property dependencies to stack rules only (pulumi_policy: PolicyResource.property_dependencies;
    ResourceValidationArgs has none). So the probe excuses the read only for a stack rule that looked the
    dependencies up; a stack rule that gave up on the unknown id, and a resource rule (which never gets
    dependencies), skipped the group silently; so did a stack rule that looked the dependencies up and
    ignored them (withheld, it still says nothing)."""
    sys.path.insert(0, str(ROOT / "policies"))
    from rules.common import UNKNOWN as RULE_UNKNOWN
    from rules.common import of_type, resource_policy, stack_policy

    asg, lt = "aws:autoscaling/group:Group", "aws:ec2/launchTemplate:LaunchTemplate"
    LT_ID = ("mixedInstancesPolicy", "launchTemplate", "launchTemplateSpecification", "launchTemplateId")

    def gives_up(resources, cfg, report):
        for g in of_type(resources, asg):
            if g.get(*LT_ID) is RULE_UNKNOWN:
                continue

    def follows(resources, cfg, report):
        for g in of_type(resources, asg):
            if g.get(*LT_ID) is RULE_UNKNOWN and not any(
                    t.urn in g.prop_deps.get("mixedInstancesPolicy", []) for t in of_type(resources, lt)):
                report.unjudged(f"group {g.name}", ".".join(LT_ID), g.urn)

    def looks_only(resources, cfg, report):
        for g in of_type(resources, asg):
            g.prop_deps.get("mixedInstancesPolicy")  # looked up, then ignored
            if g.get(*LT_ID) is RULE_UNKNOWN:
                continue

    def per_resource(r, cfg, report):
        if r.get(*LT_ID) is RULE_UNKNOWN and r.prop_deps.get("mixedInstancesPolicy"):
            return

    policies = [stack_policy("t-gives-up", "ignores the dependencies", gives_up, types=[asg]),
                stack_policy("t-follows", "follows the dependencies", follows, types=[asg]),
                stack_policy("t-looks-only", "looks the dependencies up and ignores them", looks_only, types=[asg]),
                resource_policy("t-resource", "has no dependencies to follow", per_resource, types=[asg])]
    _, first = _ecs_runs()
    groups = [r for r in first.registrations if r.type == asg]
    assert groups and all(r.inputs["mixedInstancesPolicy"]["launchTemplate"]["launchTemplateSpecification"][
        "launchTemplateId"] == UNKNOWN and r.property_dependencies["mixedInstancesPolicy"] for r in groups)
    effective = {p.name: {"enforcementLevel": "mandatory"} for p in policies}
    skips = F.probe_reads(ROOT / "policies", first.registrations, effective, policies=policies)
    assert sorted((s.policy, s.urn) for s in skips) == sorted(
        (p, g.urn) for p in ("t-gives-up", "t-looks-only", "t-resource") for g in groups)
    assert all(s.message.startswith(f"read unknown input(s) {'.'.join(LT_ID)} of {asg}") for s in skips)
    looked = [s.message for s in skips if s.policy == "t-looks-only"]
    assert looked and all(m.endswith(
        "and looked up their property dependencies, but without those dependencies it still reports nothing: its "
        "silence does not come from following the reference") for m in looked)


def test_unjudged_violations_are_collected_apart_from_verdicts():
    vs = [{"policy": "a", "level": "advisory", "urn": "u1", "message": "could not judge: bucket x: policy is unknown"},
          {"policy": "b", "level": "advisory", "urn": "u2",
           "message": "can't run policy 'b' from policy pack 'p@v1' during preview: string value at .policy can't be known"},
          {"policy": "c", "level": "mandatory", "urn": "u3", "message": "real"}]
    verdicts, unjudged = F.split_violations(vs)
    assert [v["policy"] for v in verdicts] == ["c"]
    assert unjudged == [{"policy": "a", "urn": "u1", "message": vs[0]["message"]},
                        {"policy": "b", "urn": "u2", "message": vs[1]["message"]}]


def test_cli_prints_unjudged_and_fails_on_a_silent_skip(monkeypatch, capsys):
    doc = copy.deepcopy(shipped_preview("dev"))
    doc["policy"]["unjudged"] = [{"policy": "s3-tls-only", "urn": None, "message": "could not judge: bucket x: policy"}]
    doc["firstDeploy"] = {"silentlySkipped": [{"policy": "images-pinned", "urn": "urn:x::task", "kind": "read",
                                               "message": "read unknown input(s) containerDefinitions"}],
                          "falseViolations": []}
    monkeypatch.setattr(P, "preview", lambda stack, stack_file=None, first_deploy=False: doc)
    assert P.main(["--stack", "dev", "--first-deploy"]) == 1
    out = capsys.readouterr().out
    assert "could not judge: bucket x: policy" in out and "skipped (read)" in out
    assert "first deploy: 1 unjudged, 1 mandatory policy checks skipped silently" in out


# --- readiness on unknowns ------------------------------------------------------------------------------------

def _unknown_below(value, depth):
    if depth == 0:
        return "[unknown]"
    if isinstance(value, dict):
        return {k: _unknown_below(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_unknown_below(v, depth - 1) for v in value]
    return "[unknown]"


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_readiness_never_crashes_on_unknowns_and_says_what_it_could_not_judge(depth):
    res = copy.deepcopy(shipped_preview("prod")["resources"])
    for r in res:
        r["inputs"] = {k: _unknown_below(v, depth) for k, v in r["inputs"].items()}
    findings = R.check(res)
    unjudged = [f for f in findings if f.check == "unknown-input"]
    assert unjudged and all(f.level == "advisory" and f.message.startswith("could not judge: ") for f in unjudged)
    dep = [f for f in unjudged if f.urn.endswith("::llama-3-1-70b-deployment")]
    assert len(dep) == 1 and "unknown until the first deploy" in dep[0].message


def test_a_workload_whose_spec_is_unknown_is_reported_not_passed():
    res = copy.deepcopy(shipped_preview("prod")["resources"])
    [dep] = [r for r in res if r["name"] == "llama-3-1-70b-deployment"]
    dep["inputs"]["spec"] = "[unknown]"
    dep.pop("customTimeouts", None)  # would fail the await check if the spec were known
    [f] = [f for f in R.check(res) if f.urn == dep["urn"]]
    assert f.as_dict() == {"check": "unknown-input", "level": "advisory", "urn": dep["urn"], "message": (
        "could not judge: Deployment llmserving/llama-3-1-70b: spec unknown until the first deploy creates what it "
        "comes from; the await, node-source, capacity, image checks did not see it")}


def test_ecs_listener_order_is_judged_through_dependencies_on_a_first_deploy():
    _, first = _ecs_runs()
    res = [resource_entry(r) for r in sorted(first.registrations, key=lambda r: r.urn)]
    [svc] = [r for r in res if r["type"] == R.ECS_SERVICE]
    assert svc["inputs"]["loadBalancers"][0]["targetGroupArn"] == "[unknown]"
    assert [f for f in R.check(res) if f.urn == svc["urn"]] == []
    [rule] = [r for r in res if r["type"] == R.LISTENER_RULE and r["name"].endswith("llama-3-1-70b")]
    by_urn = {r["urn"]: r for r in res}
    node = svc
    while node is not None:  # take the fix (the edge to the listener rule) out of the recording
        node["dependencies"] = [u for u in node["dependencies"] if u != rule["urn"]]
        node = by_urn.get(node.get("parent"))
    [f] = [f for f in R.check(res) if f.urn == svc["urn"]]
    assert f.check == "ecs-listener-order" and f.level == "mandatory"
    assert "does not wait for llmserving-prod-edge-llama-3-1-70b, which attaches it to the load balancer" in f.message
