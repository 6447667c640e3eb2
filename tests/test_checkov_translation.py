"""infra/tfplan.py: the preview document as the Terraform plan and manifests Checkov reads (no scanner needed).

What Checkov 3.3.30 reads (checkov/terraform/plan_parser.py): resources in
`planned_values.root_module.resources[].values`, blocks as lists of objects
(`_hclify`), and graph edges only from `configuration.root_module.resources[]
.expressions.<attr>.references` where the planned value is absent (unknown until
apply, `_add_references`). The type and property names are pulumi-aws's bridge
mapping (provider/cmd/pulumi-resource-aws/bridge-metadata.json: `renames`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from infra.tfplan import camel_to_snake, eks_cluster_inputs, translate, tf_type

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = ROOT / "tests" / "snapshots"


def snapshot(stack: str) -> dict:
    return json.loads((SNAPSHOTS / f"{stack}.json").read_text())


def planned(tr, address: str) -> dict:
    for r in tr.plan["planned_values"]["root_module"]["resources"]:
        if r["address"] == address:
            return r["values"]
    raise AssertionError(f"{address} not in the plan")


def expressions(tr, address: str) -> dict:
    for r in tr.plan["configuration"]["root_module"]["resources"]:
        if r["address"] == address:
            return r["expressions"]
    raise AssertionError(f"{address} not in the configuration")


def address_of(tr, typ: str, name_part: str = "") -> str:
    found = [r.address for r in tr.resources if r.type == typ and name_part in r.name]
    assert len(found) == 1, f"{typ} {name_part!r}: {found}"
    return found[0]


# Terraform names of every pulumi-aws type the stacks and the ECS variant use, as
# bridge-metadata.json `renames.resources` lists them (pulumi-aws 7.x).
TF_NAMES = {
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": "aws_cloudwatch_log_resource_policy",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "aws_default_security_group",
    "aws:iam/serviceLinkedRole:ServiceLinkedRole": "aws_iam_service_linked_role",
    "aws:sns/topic:Topic": "aws_sns_topic",
    "aws:ssm/parameter:Parameter": "aws_ssm_parameter",
    "aws:sns/topicSubscription:TopicSubscription": "aws_sns_topic_subscription",
    "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration": "aws_wafv2_web_acl_logging_configuration",
    "aws:appautoscaling/policy:Policy": "aws_appautoscaling_policy",
    "aws:appautoscaling/target:Target": "aws_appautoscaling_target",
    "aws:autoscaling/group:Group": "aws_autoscaling_group",
    "aws:budgets/budget:Budget": "aws_budgets_budget",
    "aws:cloudwatch/eventRule:EventRule": "aws_cloudwatch_event_rule",
    "aws:cloudwatch/eventTarget:EventTarget": "aws_cloudwatch_event_target",
    "aws:cloudwatch/logGroup:LogGroup": "aws_cloudwatch_log_group",
    "aws:ec2/eip:Eip": "aws_eip",
    "aws:ec2/flowLog:FlowLog": "aws_flow_log",
    "aws:ec2/internetGateway:InternetGateway": "aws_internet_gateway",
    "aws:ec2/launchTemplate:LaunchTemplate": "aws_launch_template",
    "aws:ec2/natGateway:NatGateway": "aws_nat_gateway",
    "aws:ec2/routeTable:RouteTable": "aws_route_table",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "aws_route_table_association",
    "aws:ec2/securityGroup:SecurityGroup": "aws_security_group",
    "aws:ec2/subnet:Subnet": "aws_subnet",
    "aws:ec2/tag:Tag": "aws_ec2_tag",
    "aws:ec2/vpc:Vpc": "aws_vpc",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "aws_vpc_endpoint",
    "aws:ecs/capacityProvider:CapacityProvider": "aws_ecs_capacity_provider",
    "aws:ecs/cluster:Cluster": "aws_ecs_cluster",
    "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": "aws_ecs_cluster_capacity_providers",
    "aws:ecs/service:Service": "aws_ecs_service",
    "aws:ecs/taskDefinition:TaskDefinition": "aws_ecs_task_definition",
    "aws:eks/accessEntry:AccessEntry": "aws_eks_access_entry",
    "aws:eks/addon:Addon": "aws_eks_addon",
    "aws:eks/nodeGroup:NodeGroup": "aws_eks_node_group",
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": "aws_eks_pod_identity_association",
    "aws:iam/instanceProfile:InstanceProfile": "aws_iam_instance_profile",
    "aws:iam/role:Role": "aws_iam_role",
    "aws:iam/rolePolicy:RolePolicy": "aws_iam_role_policy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "aws_iam_role_policy_attachment",
    "aws:kms/alias:Alias": "aws_kms_alias",
    "aws:kms/key:Key": "aws_kms_key",
    "aws:lb/listener:Listener": "aws_lb_listener",
    "aws:lb/listenerRule:ListenerRule": "aws_lb_listener_rule",
    "aws:lb/loadBalancer:LoadBalancer": "aws_lb",
    "aws:lb/targetGroup:TargetGroup": "aws_lb_target_group",
    "aws:s3/bucket:Bucket": "aws_s3_bucket",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": "aws_s3_bucket_lifecycle_configuration",
    "aws:s3/bucketLogging:BucketLogging": "aws_s3_bucket_logging",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": "aws_s3_bucket_ownership_controls",
    "aws:s3/bucketPolicy:BucketPolicy": "aws_s3_bucket_policy",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "aws_s3_bucket_public_access_block",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        "aws_s3_bucket_server_side_encryption_configuration",
    "aws:s3/bucketVersioning:BucketVersioning": "aws_s3_bucket_versioning",
    "aws:secretsmanager/secret:Secret": "aws_secretsmanager_secret",
    "aws:secretsmanager/secretVersion:SecretVersion": "aws_secretsmanager_secret_version",
    "aws:sqs/queue:Queue": "aws_sqs_queue",
    "aws:sqs/queuePolicy:QueuePolicy": "aws_sqs_queue_policy",
    "aws:wafv2/webAcl:WebAcl": "aws_wafv2_web_acl",
    "aws:wafv2/webAclAssociation:WebAclAssociation": "aws_wafv2_web_acl_association",
    # Not used today; the two other kinds of exception the rule must handle.
    "aws:autoscaling/tag:Tag": "aws_autoscaling_group_tag",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "aws_vpc_security_group_ingress_rule",
}


@pytest.mark.parametrize("token", sorted(TF_NAMES))
def test_terraform_type_of_each_pulumi_type(token):
    assert tf_type(token) == TF_NAMES[token]


def test_every_aws_type_the_stacks_use_has_a_checked_terraform_name(ecs_doc):
    used = {r["type"] for s in ("dev", "prod", "large-use1-a") for r in snapshot(s)["resources"]}
    used |= {r["type"] for r in ecs_doc["resources"]}
    missing = sorted(t for t in used if t.startswith("aws:") and t not in TF_NAMES)
    assert not missing, f"add the Terraform names of {missing} to TF_NAMES (bridge-metadata.json renames)"


def test_camel_case_to_terraform_snake_case():
    assert camel_to_snake("httpPutResponseHopLimit") == "http_put_response_hop_limit"
    assert camel_to_snake("ipv6CidrBlock") == "ipv6_cidr_block"
    assert camel_to_snake("sqsManagedSseEnabled") == "sqs_managed_sse_enabled"
    assert camel_to_snake("bucket") == "bucket"


@pytest.fixture(scope="module")
def prod():
    return translate(snapshot("prod"))


@pytest.fixture(scope="module")
def ecs_doc():
    from tests.harness import rendered_variant

    return rendered_variant("prod-ecs")


def test_objects_are_one_element_block_lists_and_maps_stay_maps(prod):
    lt = planned(prod, address_of(prod, "aws:ec2/launchTemplate:LaunchTemplate", "system"))
    # metadata_options is a block (MaxItems 1): Checkov reads conf["metadata_options"][0]["http_tokens"].
    assert lt["metadata_options"] == [{"http_endpoint": "enabled", "http_put_response_hop_limit": lt[
        "metadata_options"][0]["http_put_response_hop_limit"], "http_tokens": "required"}]
    assert isinstance(lt["block_device_mappings"], list) and isinstance(lt["block_device_mappings"][0]["ebs"], list)
    assert isinstance(lt["tags"], dict) and lt["tags"]["stack"] == "prod"
    assert isinstance(lt["tag_specifications"][0]["tags"], dict)


def test_pluralised_blocks_take_their_terraform_names(prod):
    https = [r.address for r in prod.resources if r.type == "aws:lb/listener:Listener"
             and planned(prod, r.address).get("protocol") == "HTTPS"]
    assert len(https) == 1
    values = planned(prod, https[0])
    assert "default_action" in values and "default_actions" not in values
    assert values["default_action"][0]["type"] == "forward"
    waf = planned(prod, address_of(prod, "aws:wafv2/webAcl:WebAcl"))
    assert {r["name"] for r in waf["rule"]} >= {"aws-known-bad-inputs"}
    assert waf["rule"][1]["statement"][0]["managed_rule_group_statement"][0]["name"] == \
        "AWSManagedRulesKnownBadInputsRuleSet"
    sse = planned(prod, address_of(prod, "aws:s3/bucketServerSideEncryptionConfiguration:"
                                         "BucketServerSideEncryptionConfiguration", "adapters"))
    assert sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"


def test_references_are_unknown_values_with_configuration_references(prod):
    """Connections Checkov's graph checks need: each is an edge only through `references`."""
    def refs(typ, part, *path):
        e = expressions(prod, address_of(prod, typ, part))
        for p in path:
            e = e[p]
        return e["references"]

    vpc = address_of(prod, "aws:ec2/vpc:Vpc")
    alb = address_of(prod, "aws:lb/loadBalancer:LoadBalancer")
    assert refs("aws:ec2/flowLog:FlowLog", "", "vpc_id") == [f"{vpc}.id", vpc]
    assert refs("aws:wafv2/webAclAssociation:WebAclAssociation", "", "resource_arn") == [f"{alb}.arn", alb]
    bucket = address_of(prod, "aws:s3/bucket:Bucket", "adapters")
    assert refs("aws:s3/bucketVersioning:BucketVersioning", "adapters", "bucket")[1] == bucket
    # A NAT gateway's allocationId is its EIP's id (the mock echoes it as the gateway's output too).
    eip = address_of(prod, "aws:ec2/eip:Eip", "us-east-1a")
    assert refs("aws:ec2/natGateway:NatGateway", "us-east-1a", "allocation_id")[1] == eip
    # Names are shared across types (cluster, ALB and budget are all llmserving-prod): by attribute.
    cluster = address_of(prod, "eks:index:Cluster")
    assert refs("aws:eks/nodeGroup:NodeGroup", "system", "cluster_name")[1] == cluster
    lt = address_of(prod, "aws:ec2/launchTemplate:LaunchTemplate", "system")
    assert refs("aws:eks/nodeGroup:NodeGroup", "system", "launch_template", 0, "id")[1] == lt
    # The planned value is absent: Terraform does not know an id before apply.
    assert "vpc_id" not in planned(prod, address_of(prod, "aws:ec2/flowLog:FlowLog"))


def test_the_eks_component_is_the_aws_eks_cluster_pulumi_eks_creates(prod):
    cluster = planned(prod, address_of(prod, "eks:index:Cluster"))
    assert cluster["name"] == "llmserving-prod"
    assert cluster["vpc_config"][0]["endpoint_public_access"] is False
    assert cluster["vpc_config"][0]["endpoint_private_access"] is True
    assert cluster["encryption_config"][0]["resources"] == ["secrets"]
    assert set(cluster["enabled_cluster_log_types"]) == {"api", "audit", "authenticator", "controllerManager",
                                                         "scheduler"}
    # The key is a reference to the secrets key, not a literal ARN.
    key_ref = expressions(prod, address_of(prod, "eks:index:Cluster"))["encryption_config"][0]["provider"][0]["key_arn"]
    assert key_ref["references"][1].startswith("aws_kms_key.")
    # pulumi-eks defaults bootstrapSelfManagedAddons to true and names the tag after the component.
    assert eks_cluster_inputs({"name": "c", "__name": "x"})["bootstrapSelfManagedAddons"] is True
    assert eks_cluster_inputs({"name": "c", "__name": "x"})["tags"]["Name"] == "x-eksCluster"


def test_kubernetes_objects_are_manifests_and_helm_releases_are_named_as_not_scanned(prod):
    doc = snapshot("prod")
    typed = [r for r in doc["resources"] if r["type"].startswith("kubernetes:") and "helm.sh" not in r["type"]]
    assert len(prod.manifests) == len(typed)
    deployments = [m for m in prod.manifests if m["kind"] == "Deployment"]
    assert {m["metadata"]["name"] for m in deployments} >= {"llm-router"}
    index = prod.by_address()
    assert index["Deployment.llmserving.llm-router"].name == "llm-router-deployment"
    helm = [r for r in doc["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release"]
    assert sorted(n for t, n, _ in prod.not_scanned if t == "kubernetes:helm.sh/v3:Release") == \
        sorted(r["name"] for r in helm)


@pytest.mark.parametrize("stack", ["dev", "prod", "large-use1-a"])
def test_shipped_stacks_translate_without_gaps(stack):
    tr = translate(snapshot(stack))
    assert tr.gaps == []
    assert not [n for n in tr.not_scanned if not n[0].startswith("kubernetes:helm.sh/")]


def test_ecs_variant_translates_without_gaps(ecs_doc):
    tr = translate(ecs_doc)
    assert tr.gaps == []
    td = planned(tr, address_of(tr, "aws:ecs/taskDefinition:TaskDefinition", "70b-task"))
    # Checkov parses container_definitions as JSON (plan_parser RESOURCE_TYPES_JSONIFY).
    assert json.loads(td["container_definitions"])[0]["name"]


def test_an_unclassified_list_of_objects_is_a_gap_not_a_guess():
    """A new pluralised block would get a wrong Terraform name silently; the scan fails on the gap instead."""
    doc = copy.deepcopy(snapshot("prod"))
    lb = next(r for r in doc["resources"] if r["type"] == "aws:lb/loadBalancer:LoadBalancer")
    lb["inputs"]["subnetMappings"] = [{"subnetId": "subnet-1"}]
    tr = translate(doc)
    assert tr.gaps == ["aws:lb/loadBalancer:LoadBalancer subnetMappings: list of objects not classified in "
                       "infra/tfplan.py (PLURALISED_BLOCKS or PLAIN_BLOCK_LISTS)"]


def test_unknown_values_are_left_out():
    doc = copy.deepcopy(snapshot("prod"))
    lt = next(r for r in doc["resources"] if r["type"] == "aws:ec2/launchTemplate:LaunchTemplate")
    lt["inputs"]["imageId"] = "[unknown]"
    tr = translate(doc)
    address = next(r.address for r in tr.resources if r.urn == lt["urn"])
    assert "image_id" not in planned(tr, address)


def test_the_ecs_variant_is_the_medium_tier_of_the_ecs_stack_tests():
    """tests/stacks/prod-ecs.yaml is TIERS["medium-p5"] of test_ecs_stacks.py applied to prod."""
    from infra.preview import read_stack
    from tests.harness import stack_config
    from tests.test_ecs_stacks import TIERS

    base, changes = TIERS["medium-p5"]
    want, secrets = stack_config(base, changes)
    got = read_stack(ROOT, "prod-ecs", ROOT / "tests" / "stacks" / "prod-ecs.yaml")

    def values(config):
        out = {}
        for k, v in config.items():
            try:
                out[k] = json.loads(v)
            except json.JSONDecodeError:
                out[k] = v
        return out

    assert values(got.config) == values(want)
    assert got.secret_keys == sorted(secrets)
