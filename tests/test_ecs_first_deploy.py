"""Issue 10 (ECS and observability): deploy blockers and silent breakage the mock engine cannot see.

Each test encodes how AWS, the Terraform-bridged provider or a controller
behaves, with the upstream source next to it.
"""

from __future__ import annotations

import pytest

from tests.harness import inputs, of_type
from tests.test_ecs_components import cluster_run  # noqa: F401  (module-scoped fixture)


# --- item 4: Auto Scaling groups do not block `up` -------------------------------------------------

def test_auto_scaling_groups_do_not_wait_for_gpu_capacity(cluster_run):  # noqa: F811
    # pulumi-aws 7.51.1 autoscaling.Group (Terraform aws_autoscaling_group, "Waiting for Capacity"):
    # without wait_for_capacity_timeout the provider waits up to 10m for desired_capacity InService
    # instances and then fails the update; "0" skips the wait. ECS managed scaling owns capacity.
    asgs = of_type(cluster_run, "aws:autoscaling/group:Group")
    assert asgs
    for asg in asgs:
        assert inputs(asg).get("waitForCapacityTimeout") == "0", asg.name


def test_managed_termination_protection_has_scale_in_protection(cluster_run):  # noqa: F811
    # ECS API AutoScalingGroupProvider.managedTerminationProtection (botocore ecs model): with it on,
    # the group and each instance must have scale-in protection, and managed scaling must be on.
    asgs = {inputs(r)["arn"] if "arn" in inputs(r) else r.name: inputs(r)
            for r in of_type(cluster_run, "aws:autoscaling/group:Group")}
    for cp in of_type(cluster_run, "aws:ecs/capacityProvider:CapacityProvider"):
        p = inputs(cp)["autoScalingGroupProvider"]
        if p["managedTerminationProtection"] == "ENABLED":
            assert p["managedScaling"]["status"] == "ENABLED"
    assert all(a["protectFromScaleIn"] is True for a in asgs.values())


# --- item 3: ECS services wait for the listener rule that attaches their target group -----------

def test_ecs_service_depends_on_its_models_listener_rule():
    # CreateService fails with InvalidParameterException "The target group ... does not have an
    # associated load balancer" until a listener or rule forwards to the group (reported in
    # Bayer-Group/cloudformation-template-generator#181, aws/aws-cdk#34290: order the service after
    # the listener rule). Nothing in the service's inputs refers to the rule, so only depends_on orders it.
    from tests.test_ecs_stacks import _run

    run = _run("small-g5")
    rules = {inputs(r)["tags"]["model"]: r.urn for r in of_type(run, "aws:lb/listenerRule:ListenerRule")
             if "model" in inputs(r).get("tags", {})}
    services = of_type(run, "aws:ecs/service:Service")
    assert services and rules
    for svc in services:
        model = inputs(svc)["name"]
        assert rules[model] in svc.dependencies, (model, svc.dependencies)


# --- item 17c: the ECS AMI id is not a secret ------------------------------------------------------

def test_launch_templates_take_the_ami_from_the_insecure_value(monkeypatch):
    # pulumi-aws 7.51.1 ssm.GetParameterResult: `value` "is always marked as sensitive",
    # `insecure_value` "is never marked as sensitive". A secret image id hides every AMI change in
    # the preview diff. The mock answers `value` with a stand-in, so only insecureValue gives an AMI.
    from components.ecs_gpu_cluster import EcsGpuCluster
    from infra.mockcloud import CloudMocks
    from tests.harness import run_component
    from tests.test_ecs_components import _cluster_args

    real = CloudMocks._ssm_parameter

    def sensitive_value(self, args):
        out = real(self, args)
        return {**out, "value": "[sensitive]"}

    monkeypatch.setattr(CloudMocks, "_ssm_parameter", sensitive_value)
    run = run_component(lambda: EcsGpuCluster("gpu", _cluster_args()))
    for lt in of_type(run, "aws:ec2/launchTemplate:LaunchTemplate"):
        assert inputs(lt)["imageId"].startswith("ami-"), inputs(lt)["imageId"]


# --- item 12 (ECS): vLLM keeps idle connections longer than the ALB --------------------------------

def test_ecs_vllm_keep_alive_outlasts_the_alb_idle_timeout():
    # AWS ELB docs (ALB attributes, "Connection idle timeout"): configure the application's idle
    # timeout larger than the load balancer's, else the ALB may send a request on a connection the
    # target is closing and answer 502. vLLM's keep-alive is VLLM_HTTP_TIMEOUT_KEEP_ALIVE
    # (vllm/envs.py, default 5 s), passed to uvicorn's timeout_keep_alive.
    import json

    from tests.test_ecs_stacks import _run

    run = _run("small-g5")
    (lb,) = of_type(run, "aws:lb/loadBalancer:LoadBalancer")
    idle = inputs(lb)["idleTimeout"]
    for td in of_type(run, "aws:ecs/taskDefinition:TaskDefinition"):
        if td.name.endswith("-mirror-task"):
            continue  # the run-once mirror task serves nothing
        vllm = next(c for c in json.loads(inputs(td)["containerDefinitions"]) if c["name"] == "vllm")
        env = {e["name"]: e["value"] for e in vllm["environment"]}
        keep_alive = int(env.get("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", "5"))
        assert keep_alive > idle, (keep_alive, idle)


def test_keep_alive_below_the_idle_timeout_is_refused():
    from components.errors import ArgsError
    from components.vllm_ecs_service import validate_vllm_ecs_service_args
    from tests.test_ecs_components import _service_args

    with pytest.raises(ArgsError) as e:
        validate_vllm_ecs_service_args(_service_args(load_balancer_idle_timeout_seconds=300))
    assert e.value.problems == ["http_keep_alive_seconds: got None (vLLM default 5); must exceed the load balancer "
                                "idle timeout 300 s or clients see 502s"]
    validate_vllm_ecs_service_args(_service_args(load_balancer_idle_timeout_seconds=300, http_keep_alive_seconds=315))


def test_keep_alive_helper_adds_the_catalog_margin():
    from infra import edge_catalog as ec

    assert ec.keep_alive_seconds(300) == 300 + ec.KEEP_ALIVE_MARGIN_SECONDS.value > 300


# --- item 16 (WAF): the web ACL logs, with the API key redacted --------------------------------------

def test_waf_logs_to_an_aws_waf_logs_group_with_authorization_redacted():
    # Security Hub WAF.11. AWS WAF API LoggingConfiguration: destinations must be named
    # aws-waf-logs-*; RedactedFields keeps a header out of the logs (the bearer token is the vLLM
    # API key). Terraform aws_wafv2_web_acl_logging_configuration docs ("With CloudWatch Log Group
    # and managed CloudWatch Log Resource Policy"): the log delivery service writes with a resource
    # policy on the group; without one WAF edits the account-wide AWSWAF-LOGS policy, which fails
    # once too large (pulumi-aws 7.51.1 wafv2.WebAclLoggingConfiguration warning).
    import json

    from tests.test_load_balancer import _args
    from components.load_balancer import ModelLoadBalancer
    from infra.mockcloud import ACCOUNT_ID
    from tests.harness import one, run_component

    run = run_component(lambda: ModelLoadBalancer("edge", _args(waf_log_retention_days=14)))
    group = one(run, "aws:cloudwatch/logGroup:LogGroup")
    name = inputs(group)["name"]
    assert name.startswith("aws-waf-logs-") and inputs(group)["retentionInDays"] == 14
    logging = one(run, "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
    cfg = inputs(logging)
    assert cfg["resourceArn"] == inputs(one(run, "aws:wafv2/webAclAssociation:WebAclAssociation"))["webAclArn"]
    assert len(cfg["logDestinationConfigs"]) == 1 and cfg["logDestinationConfigs"][0].endswith(name)
    assert cfg["redactedFields"] == [{"singleHeader": {"name": "authorization"}}]
    policy_reg = one(run, "aws:cloudwatch/logResourcePolicy:LogResourcePolicy")
    assert policy_reg.urn in logging.dependencies  # delivery may write before the first log arrives
    (stmt,) = json.loads(inputs(policy_reg)["policyDocument"])["Statement"]
    assert stmt["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    assert set(stmt["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert stmt["Resource"] == f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:{name}:*"
    assert stmt["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT_ID}


def test_shipped_stacks_log_their_waf():
    from tests.harness import shipped_run

    for stack in ("dev", "prod"):
        run = shipped_run(stack)
        assert of_type(run, "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"), stack


# --- item 15 (ECS): containers run as non-root, and what they write is writable ------------------

# World-writable (sticky 1777) directories of the images: /tmp in vllm/vllm-openai (Ubuntu base,
# docker/Dockerfile) and /tmp, /var/tmp in amazon/aws-cli (Amazon Linux 2). Anything else in the
# images belongs to root 0755 (the vLLM image has no USER; its home is /root).
WORLD_WRITABLE = {"vllm/vllm-openai": ("/tmp",), "amazon/aws-cli": ("/tmp", "/var/tmp")}


def _writable(image: str, path: str) -> bool:
    repo = image.split(":")[0]
    return any(path == d or path.startswith(d + "/") for d in WORLD_WRITABLE[repo])


def test_ecs_containers_run_as_non_root_with_writable_home_and_adapter_volume():
    import json

    from components.vllm_ecs_service import sync_script
    from tests.test_ecs_stacks import _lora_run

    run = _lora_run(2)
    synced = 0
    for td in of_type(run, "aws:ecs/taskDefinition:TaskDefinition"):
        containers = {c["name"]: c for c in json.loads(inputs(td)["containerDefinitions"])}
        for c in containers.values():
            # ECS ContainerDefinition.user maps to `docker run --user`; without it the image's
            # user applies, root for both images.
            uid = c.get("user", "0").split(":")[0]
            assert uid.isdigit() and int(uid) != 0, (c["name"], c.get("user"))
            env = {e["name"]: e["value"] for e in c["environment"]}
            # A uid without an /etc/passwd entry gets HOME=/ (not writable); the HF and vLLM caches
            # live under ~ (vllm/envs.py VLLM_CACHE_ROOT, huggingface_hub HF_HOME defaults).
            assert "HOME" in env and _writable(c["image"], env["HOME"]), (c["name"], env.get("HOME"))
        if td.name.endswith("-mirror-task"):
            continue  # the run-once mirror task: non-root with a writable HOME, checked above
        vllm = containers["vllm"]
        env = {e["name"]: e["value"] for e in vllm["environment"]}
        assert env.get("USER") or env.get("LOGNAME")  # getpass.getuser() for torch's inductor cache
        assert vllm["linuxParameters"]["sharedMemorySize"] > 0 and vllm["resourceRequirements"][0]["type"] == "GPU"
        if "adapter-sync" in containers:
            sync = containers["adapter-sync"]
            (mount,) = sync["mountPoints"]
            # The sync writes into the shared volume, where the image's path is world-writable (Docker
            # copies that path's mode into the empty volume: ECS "Use bind mounts").
            assert _writable(sync["image"], mount["containerPath"]) and not mount["readOnly"]
            assert f'"{mount["containerPath"]}/$adapter/"' in sync["command"][0]
            assert vllm["mountPoints"][0]["sourceVolume"] == mount["sourceVolume"]
            synced += 1
    assert synced  # the LoRA base model's task copies adapters


def test_ecs_has_no_seccomp_setting_for_the_ec2_launch_type():
    # Recorded so nobody "adds" one: the ECS API has none; Docker's default profile applies.
    import botocore.session

    ecs = botocore.session.get_session().get_service_model("ecs")
    members = set(ecs.shape_for("ContainerDefinition").members) | set(ecs.shape_for("LinuxParameters").members)
    assert not any("seccomp" in m.lower() for m in members)
    doc = ecs.shape_for("ContainerDefinition").members["dockerSecurityOptions"].documentation
    assert 'Valid values: "no-new-privileges" | "apparmor:PROFILE" | "label:value"' in doc and "seccomp" not in doc
