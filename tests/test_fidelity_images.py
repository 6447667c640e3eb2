"""Facts about the images (issue 11 section 3): each check proven by planting its defect into a recorded
stack (the shipped prod stack, the ECS variant, the 405B preset) and asserting the exact finding; the
shipped recordings carry none of them.
"""

from __future__ import annotations

import functools
import json

import pytest

from infra import image_catalog as ic
from infra import image_checks as IC
from infra import readiness as R
from infra.preview import resource_entry
from tests.test_readiness_stacks import find, recorded

IMAGE_CHECKS = ("image-", "vllm-", "static-lora-start", "keepalive-idle-timeout")


def image_findings(res: list[dict]) -> list[R.Finding]:
    return [f for f in R.check(res) if f.check.startswith(IMAGE_CHECKS)]


def pod(res: list[dict], name: str) -> dict:
    return find(res, "kubernetes:apps/v1:Deployment", name)["inputs"]["spec"]["template"]["spec"]


def serving_task(res: list[dict]) -> dict:
    """The ECS variant's serving task definition (the vllm container), not its run-once `*-mirror-task`."""
    [td] = [r for r in res if r["type"] == "aws:ecs/taskDefinition:TaskDefinition"
            and not r["name"].endswith("-mirror-task")]
    assert "vllm" in {c["name"] for c in json.loads(td["inputs"]["containerDefinitions"])}
    return td


def container(spec: dict, name: str) -> dict:
    [c] = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
    return c


@pytest.mark.parametrize("what", ["dev", "prod", "large-use1-a", "ecs", "405b"])
def test_recorded_stacks_satisfy_their_images(what):
    assert [f"{f.check}: {f.message}" for f in image_findings(recorded(what))] == []


def test_catalog_is_the_one_source_of_image_users():
    from infra import serving_catalog as sc

    for img in sc.IMAGES.values():
        facts = ic.facts(img.ref)
        assert facts is not None, img.ref
        assert img.user == facts.user_text and img.user.startswith("root")


# --- runAsNonRoot needs a non-root user --------------------------------------------------------------------

def test_router_without_run_as_user_is_refused_by_the_kubelet():
    res = recorded("prod")
    dep = find(res, "kubernetes:apps/v1:Deployment", "llm-router-deployment")
    del dep["inputs"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    [f] = image_findings(res)
    assert (f.check, f.level, f.urn) == ("image-non-root", "mandatory", dep["urn"])
    assert f.message == (
        "Deployment llmserving/llm-router container router: runAsNonRoot without runAsUser, and image "
        "lmcache/lmstack-router:v0.1.11 runs as root (no USER in its Dockerfile: vllm-project/production-stack "
        "docker/Dockerfile and pyproject.toml at tag vllm-stack-0.1.11): the kubelet refuses to start it (\"container "
        "has runAsNonRoot and image will run as root\", CreateContainerConfigError); set a numeric runAsUser")


def test_run_as_user_zero_with_run_as_non_root_is_refused():
    res = recorded("prod")
    spec = pod(res, "llama-3-1-70b-deployment")
    assert spec["securityContext"]["runAsNonRoot"] is True  # the pod's, inherited by the vllm container
    container(spec, "vllm")["securityContext"]["runAsUser"] = 0
    [f] = image_findings(res)
    assert (f.check, f.level) == ("image-non-root", "mandatory")
    assert f.message == ("Deployment llmserving/llama-3-1-70b container vllm: runAsNonRoot with runAsUser 0: "
                         "the kubelet refuses to start it (CreateContainerConfigError)")


# --- every command's tools exist in its image --------------------------------------------------------------

def test_jq_in_a_vllm_image_command_is_missing():
    """The vLLM image has curl but no jq (docker/Dockerfile at v0.11.1); the aws-cli image has jq. Planted into
    the mirror Job's init container, which runs a script in the vLLM image."""
    res = recorded("prod")
    job = find(res, "kubernetes:batch/v1:Job", "llama-3-1-70b-mirror-job")
    job_name = job["inputs"]["metadata"]["name"]  # revision and a content hash: a new Job per pinned revision
    spec = job["inputs"]["spec"]["template"]["spec"]
    init = container(spec, "mirror")
    assert init["image"] == "vllm/vllm-openai:v0.11.1" and init in spec["initContainers"]
    init["command"] = ["/bin/bash", "-c", "set -e\nv=$(curl -s http://127.0.0.1:8000/version | jq -r .version)\n"
                                          "echo \"$v\" > /tmp/version"]
    [f] = image_findings(res)
    assert (f.check, f.level) == ("image-tool-missing", "mandatory")
    assert f.message.startswith(f"Job llmserving/{job_name} container mirror: its command runs `jq` "
                                "(/bin/bash -c script), which image vllm/vllm-openai:v0.11.1 does not have")
    assert f.message.endswith("the container fails with \"jq: command not found\" (exit 127)")
    # The same script in the aws-cli image passes: it installs jq.
    sync = container(pod(res, "llama-3-1-8b-deployment"), "adapter-sync")
    sync["command"] = init["command"]
    assert [x.message for x in image_findings(res) if "adapter-sync" in x.message] == []


def test_python3_in_the_aws_cli_ecs_sync_is_not_on_record_and_bash_builtins_are_fine():
    res = recorded("ecs")
    td = serving_task(res)
    defs = json.loads(td["inputs"]["containerDefinitions"])
    defs.append({"name": "adapter-sync", "image": "amazon/aws-cli:2.31.18", "entryPoint": ["/bin/bash", "-c"],
                 "command": ["set -euo pipefail; declare -A seen=(); read -r x < /dev/null || true; "
                             "python3 -c 'print(1)'"], "user": "1000:1000"})
    td["inputs"]["containerDefinitions"] = json.dumps(defs)
    [f] = image_findings(res)
    assert f.message.startswith(f"ECS task definition {td['name']} container adapter-sync: its command runs `python3` "
                                "(/bin/bash -c script), which image amazon/aws-cli:2.31.18 does not have")


def test_router_modules_live_in_its_venv_not_on_path():
    """production-stack's Dockerfile installs the router into /opt/venv and never puts it on PATH."""
    res = recorded("prod")
    router = container(pod(res, "llm-router-deployment"), "router")
    assert router["command"][0] == "/opt/venv/bin/python"
    router["command"][0] = "python3"
    found = [f.message for f in image_findings(res)]
    assert found == [
        "Deployment llmserving/llm-router container router: its command runs `python3 -c` importing uvicorn, which "
        "python3 in image lmcache/lmstack-router:v0.1.11 cannot import (vllm-project/production-stack "
        "docker/Dockerfile and pyproject.toml at tag vllm-stack-0.1.11): ModuleNotFoundError",
        "Deployment llmserving/llm-router container router: its command runs `python3 -c` importing vllm_router, "
        "which python3 in image lmcache/lmstack-router:v0.1.11 cannot import (vllm-project/production-stack "
        "docker/Dockerfile and pyproject.toml at tag vllm-stack-0.1.11): ModuleNotFoundError"]


def test_ray_worker_script_tools_are_checked_in_the_405b_group():
    res = recorded("405b")
    [lws] = [r for r in res if r["type"] == "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"]
    worker = lws["inputs"]["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    worker["args"] = [worker["args"][0].replace("ray start", "raylet start")]
    [f] = image_findings(res)
    assert f.message.startswith("LeaderWorkerSet llmserving/llama-3-1-405b (worker) container ray-worker: its command "
                                "runs `raylet` (/bin/bash -c script)")


def test_shell_reader_finds_each_command_word():
    script = ("set -u\nf() { g \"$1\" | sort; }\nx=$(basename \"$p\")\nwhile IFS=$'\\t' read -r a b; do\n"
              "  case \"$a\" in *.json|*.bin) [ -n \"$b\" ] && cp \"$a\" /x ;; *) continue ;; esac\n"
              "done < <(tr a b < in)\nfor i in 1 2; do timeout 5 curl -s u >/dev/null 2>&1 || exit 1; done\n"
              "arr=(-H \"k: v\")\nexec python3 -c 'import os' \"$@\"")
    commands, functions = IC.shell_commands(script)
    assert sorted(c.words[0].text for c in commands) == sorted(
        ["set", "g", "sort", "read", "[", "cp", "continue", "timeout", "exit", "exec", "basename", "tr"])
    assert functions == {"f"}
    a = IC.analyse(["/bin/bash", "-c", script], ic.facts("vllm/vllm-openai:v0.11.1"))
    assert {u.program for u in a.programs} == {"/bin/bash", "g", "sort", "cp", "curl", "python3", "basename", "tr"}


# --- vLLM flags, env vars and metrics of the pinned version --------------------------------------------------

def test_misspelled_vllm_flag_fails():
    res = recorded("prod")
    vllm = container(pod(res, "llama-3-1-70b-deployment"), "vllm")
    i = vllm["args"].index("--max-model-len")
    vllm["args"][i] = "--max-model-length"
    [f] = image_findings(res)
    assert (f.check, f.level) == ("vllm-flag-unknown", "mandatory")
    assert f.message.startswith("Deployment llmserving/llama-3-1-70b container vllm: `vllm serve` flag "
                                "--max-model-length does not exist in vLLM 0.11.1")
    assert f.message.endswith("argparse exits with \"unrecognized arguments\" and the container crash-loops")
    # vLLM's parser takes underscores for dashes, and --flag=value.
    vllm["args"][i] = "--max_model_len"
    assert image_findings(res) == []


def test_flags_inside_the_405b_leader_script_are_checked():
    res = recorded("405b")
    [lws] = [r for r in res if r["type"] == "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"]
    leader = lws["inputs"]["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    leader["args"] = [leader["args"][0].replace("--pipeline-parallel-size", "--pipeline-parallelism")]
    [f] = image_findings(res)
    assert f.check == "vllm-flag-unknown" and "flag --pipeline-parallelism does not exist" in f.message


def test_deprecated_flag_is_advisory():
    res = recorded("prod")
    container(pod(res, "llama-3-1-70b-deployment"), "vllm")["args"].append("--disable-log-requests")
    [f] = image_findings(res)
    assert (f.check, f.level) == ("vllm-flag-deprecated", "advisory")


def test_misspelled_vllm_env_var_fails():
    res = recorded("prod")
    vllm = container(pod(res, "llama-3-1-70b-deployment"), "vllm")
    [env] = [e for e in vllm["env"] if e["name"] == "VLLM_HTTP_TIMEOUT_KEEP_ALIVE"]
    env["name"] = "VLLM_HTTP_KEEP_ALIVE_TIMEOUT"
    found = {f.check: f for f in image_findings(res)}
    assert found["vllm-env-unknown"].message == (
        "Deployment llmserving/llama-3-1-70b container vllm: environment variable VLLM_HTTP_KEEP_ALIVE_TIMEOUT is not "
        "one vLLM 0.11.1 reads (vllm/envs.py): vLLM ignores it without a warning")
    # ...and the keep-alive falls back to vLLM's 5 s default, below the ALB's idle timeout.
    assert "keeps idle HTTP connections 5 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE unset: vLLM's default (vllm/envs.py))" \
        in found["keepalive-idle-timeout"].message


def _rule_and_dashboard(res):
    rule = find(res, "kubernetes:monitoring.coreos.com/v1:PrometheusRule", "vllm-alerts")
    board = find(res, "kubernetes:core/v1:ConfigMap", "vllm-dashboard")
    return rule, board


def test_deprecated_metric_in_the_dashboard_is_reported():
    res = recorded("prod")
    _, board = _rule_and_dashboard(res)
    key = next(k for k, v in board["inputs"]["data"].items() if "vllm:inter_token_latency_seconds" in v)
    board["inputs"]["data"][key] = board["inputs"]["data"][key].replace("vllm:inter_token_latency_seconds",
                                                                          "vllm:time_per_output_token_seconds")
    [f] = image_findings(res)
    assert (f.check, f.level, f.urn) == ("vllm-metric-deprecated", "advisory", board["urn"])
    assert f.message.startswith("ConfigMap llmserving/vllm-dashboard queries vllm:time_per_output_token_seconds_bucket "
                                "(vllm:time_per_output_token_seconds), deprecated in vLLM 0.11.1")


@pytest.mark.parametrize("bad,why", [
    ("vllm:gpu_cache_usage_perc", "deprecated and hidden in vLLM 0.11.1 unless the server runs with "
                                  "--show-hidden-metrics-for-version"),
    ("vllm:num_requests_queued", "which vLLM 0.11.1 (vllm/vllm-openai:v0.11.1) does not expose"),
    ("vllm:prompt_tokens", "a counter vLLM 0.11.1 exposes as vllm:prompt_tokens_total"),
])
def test_alert_or_scaler_on_a_metric_vllm_does_not_expose_fails(bad, why):
    res = recorded("prod")
    so = find(res, "kubernetes:keda.sh/v1alpha1:ScaledObject", "llama-3-1-70b-scaledobject")
    trigger = so["inputs"]["spec"]["triggers"][0]["metadata"]
    trigger["query"] = trigger["query"].replace("vllm:num_requests_waiting", bad)
    [f] = image_findings(res)
    assert (f.check, f.level, f.urn) == ("vllm-metric-unknown", "mandatory", so["urn"])
    assert f.message.startswith(f"ScaledObject llmserving/llama-3-1-70b queries {bad}, ") and why in f.message


# --- static LoRA start and keep-alive (issue 10 items 10 and 12) --------------------------------------------------

def test_static_lora_without_the_launcher_fails():
    res = recorded("prod")
    vllm = container(pod(res, "llama-3-1-8b-deployment"), "vllm")
    assert vllm["command"][:2] == ["python3", "-c"] and vllm["command"][-2:] == ["vllm", "serve"]
    vllm["command"] = ["vllm", "serve"]  # the fix taken out: every entry reaches init_static_loras
    [f] = image_findings(res)
    assert (f.check, f.level) == ("static-lora-start", "mandatory")
    assert f.message.startswith("Deployment llmserving/llama-3-1-8b container vllm: `vllm serve --lora-modules` names ")
    assert f.message.endswith("so one adapter not uploaded yet crash-loops every replica of the base model")


@functools.lru_cache(maxsize=None)
def _ecs_lora() -> str:
    from tests.test_ecs_stacks import _lora_run

    return json.dumps([resource_entry(r) for r in _lora_run().registrations])


def test_static_lora_on_ecs_is_caught_too():
    """ECS passes --lora-modules straight to `vllm serve` (components/vllm_ecs_service.py); the adapter sync's
    `aws s3 sync` of a prefix with nothing uploaded succeeds, so vLLM starts and raises. Reported to the owner;
    the recording is planted the same way as on EKS (entryPoint `vllm serve`, no filter)."""
    res = json.loads(_ecs_lora())
    td = next(r for r in res if r["type"] == "aws:ecs/taskDefinition:TaskDefinition"
              and "--lora-modules" in r["inputs"]["containerDefinitions"])
    defs = json.loads(td["inputs"]["containerDefinitions"])
    [vllm] = [c for c in defs if c["name"] == "vllm"]
    vllm["entryPoint"] = ["vllm", "serve"]
    td["inputs"]["containerDefinitions"] = json.dumps(defs)
    found = [f for f in image_findings(res) if f.urn == td["urn"]]
    assert [f.check for f in found] == ["static-lora-start"]


def test_vllm_keep_alive_below_the_alb_idle_timeout_fails():
    res = recorded("prod")
    vllm = container(pod(res, "llama-3-1-70b-deployment"), "vllm")
    [env] = [e for e in vllm["env"] if e["name"] == "VLLM_HTTP_TIMEOUT_KEEP_ALIVE"]
    [alb] = [r for r in res if r["type"] == "aws:lb/loadBalancer:LoadBalancer"]
    idle = alb["inputs"]["idleTimeout"]
    assert int(env["value"]) > idle
    env["value"] = str(idle)
    [f] = image_findings(res)
    assert (f.check, f.level) == ("keepalive-idle-timeout", "mandatory")
    assert f.message.startswith("Deployment llmserving/llama-3-1-70b container vllm (TargetGroupBinding llama-3-1-70b "
                                f"-> Service llmserving/llama-3-1-70b-http) keeps idle HTTP connections {idle} s")


def test_router_without_its_keep_alive_launcher_fails():
    res = recorded("prod")
    router = container(pod(res, "llm-router-deployment"), "router")
    del router["command"]  # args alone: the image's entrypoint with uvicorn's 5 s keep-alive
    [f] = image_findings(res)
    assert f.check == "keepalive-idle-timeout" and "keeps idle HTTP connections 5 s (uvicorn's default" in f.message


def test_ecs_keep_alive_below_the_alb_idle_timeout_fails():
    res = recorded("ecs")
    td = serving_task(res)
    defs = json.loads(td["inputs"]["containerDefinitions"])
    [vllm] = [c for c in defs if c["name"] == "vllm"]
    vllm["environment"] = [e for e in vllm["environment"] if e["name"] != "VLLM_HTTP_TIMEOUT_KEEP_ALIVE"]
    td["inputs"]["containerDefinitions"] = json.dumps(defs)
    [f] = image_findings(res)
    assert f.check == "keepalive-idle-timeout" and f.message.startswith(
        f"ECS task definition {td['name']} container vllm (ECS service ")


def test_an_image_without_facts_is_not_judged_and_says_so():
    res = recorded("prod")
    vllm = container(pod(res, "llama-3-1-70b-deployment"), "vllm")
    vllm["image"] = "vllm/vllm-openai:v0.12.0"
    found = image_findings(res)
    assert [(f.check, f.level) for f in found] == [("image-facts-unknown", "advisory")]
    assert found[0].message.startswith("could not judge: Deployment llmserving/llama-3-1-70b container vllm: image "
                                       "vllm/vllm-openai:v0.12.0 has no row in infra/image_catalog.py")
