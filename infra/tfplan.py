"""The desired state as an independent scanner reads it: a Terraform plan and Kubernetes manifests.

Checkov (the pinned scanner, see infra/scan.py) judges Terraform plan JSON and
Kubernetes manifests. pulumi-aws is bridged from the Terraform AWS provider, so
each `aws:` resource of the offline preview document is one Terraform resource:

- the type: `aws:<module>/<resource>:<Name>` -> `aws_<module>_<resource in snake_case>`,
  except module `ec2`, whose resources carry no module prefix in Terraform
  (`aws:ec2/vpc:Vpc` is `aws_vpc`), and the few tokens in TF_TYPE_EXCEPTIONS;
- the inputs: camelCase -> snake_case; an object is a Terraform block, written
  as a one-element list as `terraform show -json` writes blocks; maps (tags,
  labels) stay maps; list properties the bridge pluralised (`defaultActions`
  for the block `default_action`) take their Terraform name from
  PLURALISED_BLOCKS;
- references: an input equal to an id, ARN or name another resource of the
  document gets in the mock engine (infra/mockcloud.py) is written the way a
  first `terraform plan` writes it: absent from `planned_values` (unknown until
  apply) and a `references` entry in `configuration`. Checkov builds its graph
  edges (the connections CKV2_* checks test) from those.

Kubernetes objects (typed resources and CustomResources) are their rendered
inputs, one manifest each. Helm releases are not rendered offline (no chart
here) and multi-language components other than `eks:index:Cluster` are opaque:
both are listed in `Translation.not_scanned`.

Sources (pinned): type tokens and property renames are pulumi-aws's
`provider/cmd/pulumi-resource-aws/bridge-metadata.json` (`renames.resources`,
`renamedProperties`) and `provider/resources.go`/`legacy_aliases.go`
(`aws_lb` <- `awsResource(lbMod, "LoadBalancer")`); block names are the
Terraform AWS provider's `website/docs/r/*.html.markdown`. The plan shape is
what Checkov 3.3.30 reads: `checkov/terraform/plan_parser.py` (`_hclify`,
`_add_references`) and `checkov/terraform/context_parsers/tf_plan/__init__.py`
(a plan needs `terraform_version` and `planned_values`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

# Pulumi type tokens whose Terraform name does not follow the mechanical rule.
TF_TYPE_EXCEPTIONS = {
    # pulumi-aws provider/legacy_aliases.go: addLegacyAlias("aws_lb", ..., awsResource(lbMod, "LoadBalancer"))
    "aws:lb/loadBalancer:LoadBalancer": "aws_lb",
    # provider/resources.go: "aws_ec2_tag": {Tok: awsResource(ec2Mod, "Tag")}
    "aws:ec2/tag:Tag": "aws_ec2_tag",
    # bridge-metadata.json renames: "aws:autoscaling/tag:Tag": "aws_autoscaling_group_tag"
    "aws:autoscaling/tag:Tag": "aws_autoscaling_group_tag",
}
# Modules whose Terraform resources have no module prefix (aws_vpc, aws_subnet, aws_flow_log, ...).
UNPREFIXED_MODULES = {"ec2"}

# List properties the bridge pluralised from a singular Terraform block name
# (tfbridge names a list property with MaxItems != 1 in the plural). Keyed by
# Pulumi type and property path ("." between nesting levels). Terraform names:
# the provider's docs for each resource (Argument Reference, "... block").
PLURALISED_BLOCKS: dict[str, dict[str, str]] = {
    "aws:autoscaling/group:Group": {"tags": "tag", "mixedInstancesPolicy.launchTemplate.overrides": "override"},
    "aws:budgets/budget:Budget": {"costFilters": "cost_filter", "notifications": "notification"},
    "aws:ec2/routeTable:RouteTable": {"routes": "route"},
    "aws:ecs/cluster:Cluster": {"settings": "setting"},
    "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": {
        "defaultCapacityProviderStrategies": "default_capacity_provider_strategy"},
    "aws:ecs/service:Service": {"capacityProviderStrategies": "capacity_provider_strategy",
                                "loadBalancers": "load_balancer",
                                "orderedPlacementStrategies": "ordered_placement_strategy"},
    "aws:ecs/taskDefinition:TaskDefinition": {"volumes": "volume"},
    "aws:eks/addon:Addon": {"podIdentityAssociations": "pod_identity_association"},
    "aws:eks/nodeGroup:NodeGroup": {"taints": "taint"},
    "aws:lb/listener:Listener": {"defaultActions": "default_action"},
    "aws:lb/listenerRule:ListenerRule": {"actions": "action", "conditions": "condition"},
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": {"rules": "rule"},
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": {"rules": "rule"},
    "aws:wafv2/webAcl:WebAcl": {"rules": "rule"},
    "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration": {
        "loggingFilter.filters": "filter", "loggingFilter.filters.conditions": "condition"},
}
# List-of-object properties whose Terraform name is the plain snake_case form
# (already plural, or not a pluralisable word).
PLAIN_BLOCK_LISTS: dict[str, set[str]] = {
    "aws:ec2/launchTemplate:LaunchTemplate": {"blockDeviceMappings", "tagSpecifications", "networkInterfaces"},
    "aws:ec2/securityGroup:SecurityGroup": {"ingress", "egress"},
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": {"ingress", "egress"},
    # Terraform block `placement_constraints` (terraform-provider-aws internal/service/ecs/task_definition.go).
    "aws:ecs/taskDefinition:TaskDefinition": {"placementConstraints"},
    # Terraform block `redacted_fields` (already plural; the bridge keeps it).
    "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration": {"redactedFields"},
}
# Object properties that are Terraform maps (keys are data, not attribute names).
MAP_PROPERTIES = {"tags", "tagsAll", "labels"}

# Pulumi types that are Kubernetes objects Checkov's kubernetes framework cannot read
# from their inputs (a Helm release's manifests exist only after the chart is rendered).
K8S_NOT_MANIFESTS = {"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart",
                     "kubernetes:yaml:ConfigFile", "kubernetes:yaml/v2:ConfigGroup"}

# A name-valued input refers to a resource of these Terraform types (names are
# not unique across types: the EKS cluster, the ALB and the budget share one).
NAME_REFERENCES = {
    "cluster_name": {"aws_eks_cluster", "aws_ecs_cluster"},
    "cluster": {"aws_ecs_cluster"},
    "role": {"aws_iam_role"},
    "bucket": {"aws_s3_bucket"},
    "target_bucket": {"aws_s3_bucket"},
    "target_key_id": {"aws_kms_key"},
    "rule": {"aws_cloudwatch_event_rule"},
    "log_group_name": {"aws_cloudwatch_log_group"},
    "awslogs-group": {"aws_cloudwatch_log_group"},
    "capacity_provider": {"aws_ecs_capacity_provider"},
    "capacity_providers": {"aws_ecs_capacity_provider"},
}

UNKNOWN = "[unknown]"
TERRAFORM_VERSION = "1.9.8"  # any version: Checkov only needs the key to recognise a plan


def camel_to_snake(name: str) -> str:
    """`httpPutResponseHopLimit` -> `http_put_response_hop_limit`, `ipv6CidrBlock` -> `ipv6_cidr_block`."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def tf_type(token: str) -> Optional[str]:
    """The Terraform resource type of a pulumi-aws type token, or None for other providers."""
    if token in TF_TYPE_EXCEPTIONS:
        return TF_TYPE_EXCEPTIONS[token]
    if not token.startswith("aws:"):
        return None
    module_resource = token.split(":")[1]
    module, _, resource = module_resource.partition("/")
    snake = camel_to_snake(resource)
    if module in UNPREFIXED_MODULES:
        return f"aws_{snake}"
    return f"aws_{module.lower()}_{snake}"


def _address_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


@dataclass
class Translated:
    """One resource of the preview document as the scanner sees it."""
    urn: str
    type: str          # Pulumi type token
    name: str          # Pulumi logical name
    address: str       # Terraform address (aws_vpc.llmserving_prod_vpc) or Kubernetes id (Kind.namespace.name)


@dataclass
class Translation:
    plan: dict
    manifests: list[dict]
    resources: list[Translated] = field(default_factory=list)
    # (type, name, why) for resources the scanner cannot see
    not_scanned: list[tuple[str, str, str]] = field(default_factory=list)
    # properties the translator could not classify (a new list-of-objects property): fix the tables above
    gaps: list[str] = field(default_factory=list)

    def by_address(self) -> dict[str, Translated]:
        return {r.address: r for r in self.resources}

    def lookup(self, address: str) -> Optional[Translated]:
        """The resource a scanner result names, including the objects Checkov derives from ours:
        the pod template of a workload is `Pod.<namespace>.<workload name>.<labels>`
        (checkov/kubernetes/kubernetes_utils.py build_resource_id_from_labels), and the
        provider block is `aws.default`."""
        index = self.by_address()
        if address in index:
            return index[address]
        if address.startswith("Pod."):
            for r in self.resources:
                kind, _, rest = r.address.partition(".")
                if kind != "Pod" and r.type.startswith("kubernetes:") and address.startswith(f"Pod.{rest}."):
                    return r
        if address == "aws.default":
            return Translated(urn="", type="pulumi:providers:aws", name="aws", address=address)
        return None


# --- outputs the mock engine gives each resource (for references) --------------

def _mock_outputs(resources: list[dict], region: str) -> dict[str, dict[str, Any]]:
    """urn -> outputs, as infra/mockcloud.py answers them (ids, ARNs, names)."""
    from pulumi.runtime import MockResourceArgs

    from infra.mockcloud import CloudMocks

    mocks = CloudMocks(region)
    out: dict[str, dict[str, Any]] = {}
    for r in resources:
        custom = r.get("custom", True) if r["type"] != "eks:index:Cluster" else False
        try:
            physical, outputs = mocks.new_resource(MockResourceArgs(
                typ=r["type"], name=r["name"], inputs=dict(r.get("inputs") or {}), custom=custom))
        except Exception:  # a mock that cannot answer offline gives no references, not a failure
            continue
        # Only what the cloud computes identifies a resource: the mock echoes inputs as outputs
        # (a NAT gateway's allocationId is its EIP's, an event target's arn is its queue's).
        outs = {"id": physical, **{k: v for k, v in (outputs or {}).items() if k not in (r.get("inputs") or {})
                                   or k in ("name", "bucket")}}
        if r["type"] == "eks:index:Cluster":
            # The component's cluster is named by its `name` argument (pulumi-eks passes it to aws.eks.Cluster).
            outs.setdefault("name", (r.get("inputs") or {}).get("name"))
        out[r["urn"]] = outs
    return out


# Output keys whose values are unique per resource (ids and ARNs carry a type prefix and a hash).
_UNIQUE_OUTPUTS = ("arn", "url", "clusterSecurityGroupId", "nodeSecurityGroupId", "keyId", "allocationId")


class _References:
    def __init__(self, addresses: dict[str, str], types: dict[str, str], outputs: dict[str, dict[str, Any]]):
        self.unique: dict[str, tuple[str, str]] = {}
        self.named: dict[str, list[tuple[str, str]]] = {}
        ambiguous: set[str] = set()
        for urn, outs in outputs.items():
            address = addresses.get(urn)
            if address is None:
                continue
            tft = types[urn]
            physical = outs.get("id")
            keys = [k for k in _UNIQUE_OUTPUTS if isinstance(outs.get(k), str) and outs.get(k)]
            entries = [(outs[k], camel_to_snake(k)) for k in keys]
            is_named = isinstance(physical, str) and (physical == outs.get("name") or physical == outs.get("bucket"))
            if isinstance(physical, str) and physical and not is_named and not physical.endswith("-component"):
                entries.append((physical, "id"))
            for value, attr in entries:
                if value in self.unique and self.unique[value][0] != address:
                    ambiguous.add(value)
                self.unique[value] = (address, attr)
            for key, attr in (("bucket", "id"), ("name", "name")):
                value = outs.get(key)
                if isinstance(value, str) and value:
                    hits = self.named.setdefault(value, [])
                    if all(a != address for a, _ in hits):
                        hits.append((address, attr))
        for value in ambiguous:
            self.unique.pop(value, None)

    def find(self, value: Any, key: str, self_address: str) -> Optional[str]:
        if not isinstance(value, str) or not value:
            return None
        hit = self.unique.get(value)
        if hit and hit[0] != self_address:
            return f"{hit[0]}.{hit[1]}"
        wanted = NAME_REFERENCES.get(key)
        if wanted:
            found = [(a, attr) for a, attr in self.named.get(value, [])
                     if a != self_address and a.split(".", 1)[0] in wanted]
            if len(found) == 1:
                return f"{found[0][0]}.{found[0][1]}"
        return None


# --- inputs -> planned values + configuration expressions ------------------------

class _Converter:
    def __init__(self, token: str, address: str, refs: _References, gaps: list[str]):
        self.token, self.address, self.refs, self.gaps = token, address, refs, gaps

    def tf_key(self, path: str, key: str, value: Any) -> str:
        renamed = PLURALISED_BLOCKS.get(self.token, {}).get(path)
        if renamed:
            return renamed
        if (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
                and key not in PLAIN_BLOCK_LISTS.get(self.token, set()) and key not in MAP_PROPERTIES):
            # A list of objects is a Terraform block; where the bridge pluralised it the
            # Terraform name is singular, and only a table can tell which: record the gap.
            self.gaps.append(f"{self.token} {path}: list of objects not classified in infra/tfplan.py "
                             f"(PLURALISED_BLOCKS or PLAIN_BLOCK_LISTS)")
        return camel_to_snake(key)

    def convert(self, inputs: dict, path: str = "") -> tuple[dict, dict]:
        """(planned values, configuration expressions) of one object."""
        values: dict[str, Any] = {}
        exprs: dict[str, Any] = {}
        for key, value in inputs.items():
            sub = f"{path}.{key}" if path else key
            tfk = self.tf_key(sub, key, value)
            if value == UNKNOWN:
                continue
            if key in MAP_PROPERTIES and isinstance(value, dict):
                values[tfk] = {k: v for k, v in value.items() if v != UNKNOWN}
                continue
            if isinstance(value, dict):
                v, e = self.convert(value, sub)
                values[tfk] = [v]
                if e:
                    exprs[tfk] = [e]
                continue
            if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
                items = [self.convert(x, sub) for x in value]
                values[tfk] = [v for v, _ in items]
                if any(e for _, e in items):
                    exprs[tfk] = [e for _, e in items]
                continue
            if isinstance(value, list):
                refs = [self.refs.find(x, tfk, self.address) for x in value]
                if any(refs):
                    # Terraform: a list built from other resources' attributes is unknown until apply.
                    exprs[tfk] = {"references": _ref_list([r for r in refs if r])}
                    continue
                values[tfk] = [x for x in value if x != UNKNOWN]
                continue
            ref = self.refs.find(value, tfk, self.address)
            if ref:
                exprs[tfk] = {"references": _ref_list([ref])}
                continue
            values[tfk] = value
        return values, exprs


def _ref_list(refs: list[str]) -> list[str]:
    """Terraform lists a reference as the attribute and the resource (`aws_vpc.x.id`, `aws_vpc.x`)."""
    out: list[str] = []
    for r in refs:
        for item in (r, r.rsplit(".", 1)[0]):
            if item not in out:
                out.append(item)
    return out


# --- pulumi-eks: the aws.eks.Cluster its Cluster component creates --------------------

def eks_cluster_inputs(component: dict) -> dict:
    """The inputs of the `aws.eks.Cluster` that `eks:index:Cluster` creates from its arguments.

    pulumi/pulumi-eks nodejs/eks/cluster/cluster.ts (createCore; identical at
    v4.3.0 and the main branch of 2026-08, which pulumi-eks 4.4.0 ships):
    vpcConfig from endpointPrivateAccess/endpointPublicAccess/publicAccessCidrs
    and the public+private subnet ids; encryptionConfig {provider {keyArn},
    resources ["secrets"]} from encryptionConfigKeyArn; accessConfig from
    authenticationMode (with bootstrapClusterCreatorAdminPermissions true);
    enabledClusterLogTypes, version, deletionProtection, bootstrapSelfManagedAddons
    (default true) passed through; tags {Name: <name>-eksCluster, ...tags}.
    """
    a = component
    vpc: dict[str, Any] = {"subnetIds": list(a.get("publicSubnetIds") or []) + list(a.get("privateSubnetIds") or [])
                           if (a.get("publicSubnetIds") or a.get("privateSubnetIds")) else a.get("subnetIds")}
    for key in ("endpointPrivateAccess", "endpointPublicAccess", "publicAccessCidrs"):
        if key in a:
            vpc[key] = a[key]
    out: dict[str, Any] = {"vpcConfig": {k: v for k, v in vpc.items() if v is not None}}
    for key in ("name", "version", "enabledClusterLogTypes", "deletionProtection"):
        if key in a:
            out[key] = a[key]
    out["bootstrapSelfManagedAddons"] = a.get("bootstrapSelfManagedAddons", True)
    if a.get("encryptionConfigKeyArn"):
        out["encryptionConfig"] = {"provider": {"keyArn": a["encryptionConfigKeyArn"]}, "resources": ["secrets"]}
    if a.get("authenticationMode"):
        out["accessConfig"] = {"authenticationMode": a["authenticationMode"],
                               "bootstrapClusterCreatorAdminPermissions": True}
    tags = {"Name": f"{a.get('__name', 'cluster')}-eksCluster", **(a.get("clusterTags") or {}), **(a.get("tags") or {})}
    out["tags"] = tags
    return out


# --- the whole document ----------------------------------------------------------------

def _k8s_id(manifest: dict) -> str:
    """Checkov's id of a manifest: Kind.namespace.name, namespace "default" when absent
    (checkov/kubernetes/kubernetes_utils.py get_resource_id, 3.3.30)."""
    meta = manifest.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    return f"{manifest.get('kind')}.{ns}.{meta.get('name')}"


def translate(doc: dict, *, region: Optional[str] = None) -> Translation:
    """The preview document (infra/preview.py --json) as a Terraform plan and Kubernetes manifests."""
    resources = doc.get("resources") or []
    region = region or _region(doc)
    tr = Translation(plan={}, manifests=[])

    # Terraform addresses, unique per type.
    addresses: dict[str, str] = {}
    types: dict[str, str] = {}
    used: set[str] = set()
    for r in resources:
        typ = r["type"]
        tft = "aws_eks_cluster" if typ == "eks:index:Cluster" else tf_type(typ)
        if tft is None:
            continue
        base = f"{tft}.{_address_name(r['name'])}"
        address, n = base, 2
        while address in used:
            address, n = f"{base}_{n}", n + 1
        used.add(address)
        addresses[r["urn"]] = address
        types[r["urn"]] = tft

    refs = _References(addresses, types, _mock_outputs([r for r in resources if r["urn"] in addresses], region))

    planned, config = [], []
    for r in resources:
        typ, urn = r["type"], r["urn"]
        inputs = r.get("inputs") or {}
        if urn in addresses:
            address = addresses[urn]
            tft, name = address.split(".", 1)
            if typ == "eks:index:Cluster":
                inputs = eks_cluster_inputs({**inputs, "__name": r["name"]})
                conv_token = "aws:eks/cluster:Cluster"
            else:
                conv_token = typ
            values, exprs = _Converter(conv_token, address, refs, tr.gaps).convert(inputs)
            planned.append({"address": address, "mode": "managed", "type": tft, "name": name,
                            "provider_name": "registry.terraform.io/hashicorp/aws", "schema_version": 0,
                            "values": values})
            config.append({"address": address, "mode": "managed", "type": tft, "name": name,
                           "provider_config_key": "aws", "expressions": exprs})
            tr.resources.append(Translated(urn=urn, type=typ, name=r["name"], address=address))
        elif typ.startswith("kubernetes:") and typ not in K8S_NOT_MANIFESTS and not typ.startswith("pulumi:"):
            if not inputs.get("apiVersion") or not inputs.get("kind"):
                tr.not_scanned.append((typ, r["name"], "no apiVersion/kind in its inputs"))
                continue
            manifest = _drop_unknown(inputs)
            tr.manifests.append(manifest)
            tr.resources.append(Translated(urn=urn, type=typ, name=r["name"], address=_k8s_id(manifest)))
        elif typ in K8S_NOT_MANIFESTS:
            tr.not_scanned.append((typ, r["name"], "Helm/YAML release: its manifests are rendered only by the cloud run"))
        elif r.get("custom", True) and not typ.startswith(("pulumi:", "llmserving:")):
            tr.not_scanned.append((typ, r["name"], "no Terraform or Kubernetes equivalent"))

    tr.plan = {
        "format_version": "1.2",
        "terraform_version": TERRAFORM_VERSION,
        "planned_values": {"root_module": {"resources": planned}},
        "resource_changes": [{"address": p["address"], "mode": "managed", "type": p["type"], "name": p["name"],
                              "provider_name": p["provider_name"],
                              "change": {"actions": ["create"], "before": None, "after": p["values"]}}
                             for p in planned],
        "configuration": {"provider_config": {"aws": {"name": "aws", "full_name": "registry.terraform.io/hashicorp/aws",
                                                      "expressions": {"region": {"constant_value": region}}}},
                          "root_module": {"resources": config}},
    }
    tr.gaps = sorted(set(tr.gaps))
    return tr


def _drop_unknown(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_unknown(v) for k, v in value.items() if v != UNKNOWN}
    if isinstance(value, list):
        return [_drop_unknown(v) for v in value if v != UNKNOWN]
    return value


def _region(doc: dict) -> str:
    """The stack's region: the preview document does not record it, its regional ARNs do."""
    import json

    found = re.search(r"arn:aws:[a-z0-9-]+:([a-z]{2}(?:-[a-z]+)+-\d):", json.dumps(doc.get("resources") or []))
    return found.group(1) if found else "us-east-1"
