"""Desired-state diff between two offline-preview documents, for pull-request review.

`diff_documents(base, head)` compares two documents written by
`python -m infra.preview --json` (resources by URN, inputs as the engine sees
them, secrets already masked as "[secret]"):

- per resource: added, removed, or changed inputs with before -> after per
  property path (`scalingConfig.desiredSize`, `tags.stack`);
- whether a change REPLACES the resource: the property is in the
  replace-on-change table `GUARD_RULES` (the provider's ForceNew properties,
  with source and date);
- destructive changes, which fail the check unless acknowledged
  (infra/pr_ack.py): a replacement of a resource type in the table, the
  removal of a type the table guards (stateful or expensive), and the
  replacement or removal of any resource marked `protect`;
- the cost and capacity delta (hourly and monthly $, GPUs, replicas per
  model) and the policy verdicts (new, resolved, still open);
- ordering: per resource, the `dependencies` (URNs it waits for) added or
  removed, and the deploy-readiness findings (infra/readiness.py: new,
  resolved, still open). A dropped dependency edge changes nothing Pulumi
  shows as an update, yet can break a first deploy; the report names it.

`render_markdown` writes the pull-request report, `render_console` the
terminal one, `render_mermaid` an architecture sketch from the resource tree.

    python -m infra.diff comment --out FILE REPORT.md...

joins per-stack reports into the one pull-request comment.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from infra.pr_ack import NONE, Acknowledgement

# --- the replace-on-change table ------------------------------------------------

_TF = "terraform-provider-aws internal/service/"  # pulumi-aws bridges these schemas: ForceNew = replace
_TF_AS_OF = "2026-11-22"


@dataclass(frozen=True)
class GuardRule:
    """What makes a change to one resource type destructive.

    `replace_on_change`: camelCase input paths whose change replaces the
    resource (delete + create). `replace_on_removal`: paths whose removal
    replaces it. `guard_delete`: deleting the resource loses data, capacity or
    an endpoint and needs acknowledgement. `roll_on_change`: paths whose change
    updates in place but replaces the instances built from it (a launch
    template's new version rolls every node of the groups pinned to its latest
    version), so it needs acknowledgement like a replacement.
    """

    type: str
    kind: str  # stateful | expensive | disruptive
    replace_on_change: tuple[str, ...]
    guard_delete: bool
    why: str
    source: str
    as_of: str
    replace_on_removal: tuple[str, ...] = ()
    roll_on_change: tuple[str, ...] = ()


GUARD_RULES: tuple[GuardRule, ...] = (
    GuardRule("aws:eks/cluster:Cluster", "expensive",
              ("name", "roleArn", "bootstrapSelfManagedAddons", "accessConfig.bootstrapClusterCreatorAdminPermissions",
               "kubernetesNetworkConfig.ipFamily", "kubernetesNetworkConfig.serviceIpv4Cidr", "outpostConfig",
               "remoteNetworkConfig"), True,
              "a new control plane: every node, workload and IRSA/OIDC trust is rebuilt",
              _TF + "eks/cluster.go (ForceNew; encryption_config removal forces new via CustomizeDiff)", _TF_AS_OF,
              replace_on_removal=("encryptionConfig",)),
    GuardRule("eks:index:Cluster", "expensive",
              ("name", "serviceRole", "kubernetesServiceIpAddressRange", "ipFamily", "bootstrapSelfManagedAddons"),
              True, "pulumi-eks passes these to aws.eks.Cluster name/roleArn/kubernetesNetworkConfig (ForceNew there)",
              "pulumi-eks Cluster inputs -> " + _TF + "eks/cluster.go", _TF_AS_OF,
              replace_on_removal=("encryptionConfigKeyArn",)),
    GuardRule("aws:eks/nodeGroup:NodeGroup", "expensive",
              ("clusterName", "nodeGroupName", "nodeGroupNamePrefix", "nodeRoleArn", "subnetIds", "instanceTypes",
               "capacityType", "amiType", "diskSize", "remoteAccess", "launchTemplate.id", "launchTemplate.name"),
              True, "GPU nodes are drained and recreated: roll capacity blue/green with a new group (FACTS.md)",
              _TF + "eks/node_group.go (ForceNew); ../shared/FACTS.md AWS safety defaults", _TF_AS_OF),
    GuardRule("aws:ec2/launchTemplate:LaunchTemplate", "disruptive", ("name", "namePrefix"), False,
              "other changes only add a template version; node groups pinned to it roll their nodes",
              _TF + "ec2/ec2_launch_template.go (name, name_prefix ForceNew); EKS managed node group update "
              "with a new launch template version replaces its nodes (AWS EKS user guide)", _TF_AS_OF,
              roll_on_change=("blockDeviceMappings", "imageId", "instanceType", "networkInterfaces", "userData",
                              "metadataOptions", "placement", "iamInstanceProfile")),
    GuardRule("aws:autoscaling/group:Group", "expensive", ("name", "namePrefix"), True,
              "the group and its GPU instances are recreated",
              _TF + "autoscaling/group.go (name, name_prefix ForceNew)", _TF_AS_OF),
    GuardRule("aws:s3/bucket:Bucket", "stateful", ("bucket", "bucketPrefix", "objectLockEnabled"), True,
              "customer LoRA adapters live here: a new bucket starts empty",
              _TF + "s3/bucket.go (bucket, bucket_prefix, object_lock_enabled ForceNew)", _TF_AS_OF),
    GuardRule("aws:s3/bucketV2:BucketV2", "stateful", ("bucket", "bucketPrefix", "objectLockEnabled"), True,
              "customer LoRA adapters live here: a new bucket starts empty",
              _TF + "s3/bucket.go (bucket, bucket_prefix, object_lock_enabled ForceNew)", _TF_AS_OF),
    GuardRule("aws:kms/key:Key", "stateful",
              ("customerMasterKeySpec", "keyUsage", "multiRegion", "customKeyStoreId", "xksKeyId"), True,
              "data encrypted under the old key becomes unreadable once its deletion window ends",
              _TF + "kms/key.go (ForceNew; delete = ScheduleKeyDeletion)", _TF_AS_OF),
    GuardRule("aws:kms/alias:Alias", "disruptive", ("name", "namePrefix"), False,
              "references by alias name break", _TF + "kms/alias.go (name, name_prefix ForceNew)", _TF_AS_OF),
    GuardRule("aws:sqs/queue:Queue", "stateful", ("name", "namePrefix", "fifoQueue"), True,
              "in-flight interruption messages are lost; Karpenter's settings.interruptionQueue names the queue",
              _TF + "sqs/queue.go (name, name_prefix, fifo_queue ForceNew)", _TF_AS_OF),
    GuardRule("aws:ecs/cluster:Cluster", "expensive", ("name",), True,
              "services and tasks must be recreated in the new cluster",
              _TF + "ecs/cluster.go (name ForceNew)", _TF_AS_OF),
    GuardRule("aws:lb/loadBalancer:LoadBalancer", "disruptive",
              ("name", "namePrefix", "internal", "loadBalancerType"), True,
              "the endpoint's DNS name changes: clients and DNS records break",
              _TF + "elbv2/load_balancer.go (name, name_prefix, internal, load_balancer_type ForceNew)", _TF_AS_OF),
    GuardRule("aws:ec2/vpc:Vpc", "expensive", ("cidrBlock",), True,
              "everything in the VPC (subnets, NAT, clusters, nodes) is recreated",
              _TF + "ec2/vpc_.go (cidr_block ForceNew)", _TF_AS_OF),
    GuardRule("aws:ec2/subnet:Subnet", "disruptive", ("vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"),
              False, "nodes and ENIs in the subnet must move first",
              _TF + "ec2/vpc_subnet.go (vpc_id, cidr_block, availability_zone ForceNew)", _TF_AS_OF),
    GuardRule("aws:ec2/natGateway:NatGateway", "disruptive", ("subnetId", "allocationId", "connectivityType"), False,
              "private subnets lose egress while the gateway is recreated; the public IP may change",
              _TF + "ec2/vpc_nat_gateway.go (ForceNew)", _TF_AS_OF),
    GuardRule("aws:iam/role:Role", "disruptive", ("name", "namePrefix", "path"), False,
              "trust relationships and ARNs that name the role break",
              _TF + "iam/role.go (name, name_prefix, path ForceNew)", _TF_AS_OF),
    GuardRule("aws:cloudwatch/logGroup:LogGroup", "stateful", ("name", "namePrefix"), True,
              "stored logs are deleted with the group", _TF + "logs/group.go (name, name_prefix ForceNew)", _TF_AS_OF),
    GuardRule("kubernetes:core/v1:PersistentVolumeClaim", "stateful",
              ("metadata.name", "metadata.namespace", "spec.storageClassName", "spec.accessModes"), True,
              "the volume (model cache, adapters) is released with the claim",
              "pulumi-kubernetes: metadata.name/namespace replace; PVC spec fields are immutable (Kubernetes API)",
              _TF_AS_OF),
    GuardRule("kubernetes:core/v1:Namespace", "disruptive", ("metadata.name",), True,
              "deleting a namespace deletes every workload in it", "pulumi-kubernetes: metadata.name replaces",
              _TF_AS_OF),
)

# pulumi-aws 7 (terraform-provider-aws 6) takes a per-resource `region` on every
# regional resource; moving a resource to another region recreates it. IAM is global.
_AWS_COMMON = ("region",)
GUARD_RULES = tuple(
    GuardRule(**{**asdict(r), "replace_on_change": r.replace_on_change + _AWS_COMMON})
    if r.type.startswith("aws:") and not r.type.startswith("aws:iam/") else r for r in GUARD_RULES)

RULES: dict[str, GuardRule] = {r.type: r for r in GUARD_RULES}

ABSENT = "(absent)"


class _Missing:
    def __repr__(self) -> str:
        return ABSENT


MISSING: Any = _Missing()


# --- diff model ------------------------------------------------------------------

@dataclass
class PropertyChange:
    path: str
    before: Any
    after: Any
    replaces: bool = False

    def as_dict(self) -> dict:
        return {"path": self.path, "before": _json_value(self.before), "after": _json_value(self.after),
                "replaces": self.replaces}


@dataclass
class ResourceChange:
    urn: str
    type: str
    name: str
    action: str  # create | delete | update | replace
    protect: bool = False
    properties: list[PropertyChange] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"urn": self.urn, "type": self.type, "name": self.name, "action": self.action,
                "protect": self.protect, "properties": [p.as_dict() for p in self.properties]}


@dataclass
class Flag:
    """A destructive change: replace or delete of a guarded or protected resource."""

    urn: str
    type: str
    name: str
    action: str
    reason: str
    acknowledged_by: Optional[str] = None


@dataclass
class DependencyChange:
    """Edges of the wait graph a resource gained or lost (URNs), for a resource in both documents."""

    urn: str
    type: str
    name: str
    added: list[str]
    removed: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class StackDiff:
    stack: str
    resources: list[ResourceChange]
    flags: list[Flag]
    cost: dict[str, Any]
    capacity: dict[str, Any]
    policy: dict[str, list[dict]]
    dependencies: list[DependencyChange] = field(default_factory=list)
    readiness: dict[str, list[dict]] = field(default_factory=lambda: {"current": [], "new": [], "resolved": []})

    def count(self, action: str) -> int:
        return sum(1 for r in self.resources if r.action == action)

    @property
    def unacknowledged(self) -> list[Flag]:
        return [f for f in self.flags if f.acknowledged_by is None]

    @property
    def clean(self) -> bool:
        """No resource change at all (cost and policy may still differ if the catalog changed)."""
        return not self.resources

    def as_dict(self) -> dict:
        return {"stack": self.stack, "resources": [r.as_dict() for r in self.resources],
                "flags": [asdict(f) for f in self.flags], "cost": self.cost, "capacity": self.capacity,
                "policy": self.policy, "dependencies": [d.as_dict() for d in self.dependencies],
                "readiness": self.readiness}


def _json_value(v: Any) -> Any:
    return ABSENT if v is MISSING else v


# --- property paths ----------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _join(path: str, key: str) -> str:
    if _IDENT.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def property_changes(before: Any, after: Any, path: str = "") -> list[PropertyChange]:
    """Leaf-level differences: maps recurse by key, lists of structures by index, others whole."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[PropertyChange] = []
        for key in sorted(set(before) | set(after)):
            out += property_changes(before.get(key, MISSING), after.get(key, MISSING), _join(path, key))
        return out
    if (isinstance(before, list) and isinstance(after, list) and len(before) == len(after)
            and any(isinstance(x, (dict, list)) for x in before + after)):
        out = []
        for i, (b, a) in enumerate(zip(before, after)):
            out += property_changes(b, a, f"{path}[{i}]")
        return out
    return [PropertyChange(path or "(inputs)", before, after)]


_SEGMENT = re.compile(r'\[(?:\d+|"(?:[^"\\]|\\.)*")\]|\.?([A-Za-z_][A-Za-z0-9_-]*)')


def _segments(path: str) -> list[str]:
    """`launchTemplate.id` -> [launchTemplate, id]; list indexes are dropped, quoted keys kept."""
    out = []
    for m in _SEGMENT.finditer(path):
        if m.group(1):
            out.append(m.group(1))
        elif m.group(0).startswith('["'):
            out.append(json.loads(m.group(0)[1:-1]))
    return out


def _covers(rule_path: str, changed: str) -> bool:
    """True when a change at `changed` touches `rule_path` (either is a prefix of the other)."""
    a, b = _segments(rule_path), _segments(changed)
    n = min(len(a), len(b))
    return n > 0 and a[:n] == b[:n]


def replaces(typ: str, change: PropertyChange) -> bool:
    rule = RULES.get(typ)
    if rule is None:
        return False
    if any(_covers(p, change.path) for p in rule.replace_on_change):
        return True
    removed = change.after is MISSING or change.after is None
    return removed and any(_covers(p, change.path) for p in rule.replace_on_removal)


# --- the diff -------------------------------------------------------------------------

def diff_documents(base: dict, head: dict, ack: Acknowledgement = NONE) -> StackDiff:
    """Desired-state difference between two preview documents (by URN)."""
    before = {r["urn"]: r for r in base.get("resources", [])}
    after = {r["urn"]: r for r in head.get("resources", [])}
    changes: list[ResourceChange] = []
    deps: list[DependencyChange] = []
    for urn in sorted(set(before) | set(after)):
        b, a = before.get(urn), after.get(urn)
        if b is not None and a is not None and "dependencies" in b and "dependencies" in a:
            # Only when both documents record dependencies (older base documents do not).
            bd, ad = set(b["dependencies"]), set(a["dependencies"])
            if bd != ad:
                deps.append(DependencyChange(urn, a["type"], a["name"], sorted(ad - bd), sorted(bd - ad)))
        if b is None:
            changes.append(ResourceChange(urn, a["type"], a["name"], "create", bool(a.get("protect"))))
            continue
        if a is None:
            changes.append(ResourceChange(urn, b["type"], b["name"], "delete", bool(b.get("protect"))))
            continue
        props = property_changes(b.get("inputs") or {}, a.get("inputs") or {})
        if not props:
            continue
        for p in props:
            p.replaces = replaces(a["type"], p)
        action = "replace" if any(p.replaces for p in props) else "update"
        changes.append(ResourceChange(urn, a["type"], a["name"], action, bool(b.get("protect")), props))

    flags = _flags(changes, ack)
    return StackDiff(stack=head.get("stack", "?"), resources=changes, flags=flags,
                     cost=cost_delta(base, head), capacity=capacity_delta(base, head),
                     policy=policy_delta(base, head), dependencies=deps, readiness=readiness_delta(base, head))


def _flags(changes: list[ResourceChange], ack: Acknowledgement) -> list[Flag]:
    created_types = {c.type for c in changes if c.action == "create"}
    flags = []
    for c in changes:
        rule = RULES.get(c.type)
        reason = None
        if c.action == "replace":
            paths = ", ".join(f"`{p.path}`" for p in c.properties if p.replaces)
            reason = f"replaced: {paths} cannot change in place"
            if rule:
                reason += f"; {rule.kind}: {rule.why}"
            if c.protect:
                reason += " (resource is protected: the update will fail until `protect` is lifted)"
        elif c.action == "update" and rule and rule.roll_on_change:
            rolled = [p.path for p in c.properties if any(_covers(r, p.path) for r in rule.roll_on_change)]
            if rolled:
                reason = (f"rolls nodes: {', '.join(f'`{x}`' for x in rolled)} changes the template version "
                          f"every node is built from; {rule.kind}: {rule.why}")
        elif c.action == "delete" and (c.protect or (rule and rule.guard_delete)):
            reason = "deleted"
            if rule and rule.guard_delete:
                reason += f"; {rule.kind}: {rule.why}"
            if c.protect:
                reason += " (resource is protected)"
            if c.type in created_types:
                reason += ("; a resource of the same type is added: a rename or new parent changes the URN, "
                           "which deletes and recreates unless the new one carries an alias")
        if reason:
            flags.append(Flag(c.urn, c.type, c.name, c.action, reason, ack.covers(c.urn, c.type)))
    return flags


def _num(d: dict, *keys: str, default: float = 0.0) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def cost_delta(base: dict, head: dict) -> dict:
    b, a = base.get("cost") or {}, head.get("cost") or {}
    out: dict[str, Any] = {}
    for key in ("hourly_usd", "monthly_usd", "max_hourly_usd", "max_monthly_usd"):
        x, y = float(_num(b, key)), float(_num(a, key))
        out[key] = {"before": round(x, 2), "after": round(y, 2), "delta": round(y - x, 2)}
    pools = {}
    for name in sorted(set(b.get("by_pool") or {}) | set(a.get("by_pool") or {})):
        pb, pa = (b.get("by_pool") or {}).get(name), (a.get("by_pool") or {}).get(name)
        row = {}
        for key in ("instance_type", "capacity_type", "nodes", "hourly_usd"):
            row[key] = {"before": pb.get(key) if pb else None, "after": pa.get(key) if pa else None}
        if row["hourly_usd"]["before"] != row["hourly_usd"]["after"] or any(
                row[k]["before"] != row[k]["after"] for k in row):
            pools[name] = row
    out["by_pool"] = pools
    return out


_MODEL_KEYS = ("pool", "instance_type", "replicas", "min_replicas", "max_replicas", "gpus", "tensor_parallel",
               "pipeline_parallel", "capacity_tokens_per_second")


def capacity_delta(base: dict, head: dict) -> dict:
    b, a = base.get("capacity") or {}, head.get("capacity") or {}
    out: dict[str, Any] = {}
    for key in ("gpus_total", "max_gpus_total", "required_tokens_per_second"):
        x, y = _num(b, key), _num(a, key)
        out[key] = {"before": x, "after": y, "delta": round(y - x, 2)}
    models = {}
    bm, am = b.get("models") or {}, a.get("models") or {}
    for name in sorted(set(bm) | set(am)):
        mb, ma = bm.get(name), am.get(name)
        row = {k: {"before": mb.get(k) if mb else None, "after": ma.get(k) if ma else None} for k in _MODEL_KEYS}
        if mb != ma:
            models[name] = {"status": "added" if mb is None else "removed" if ma is None else "changed", **row}
    out["models"] = models
    return out


def _vkey(v: dict) -> tuple:
    return (v.get("policy"), v.get("urn"), v.get("message"))


def policy_delta(base: dict, head: dict) -> dict:
    bv = (base.get("policy") or {}).get("violations") or []
    hv = (head.get("policy") or {}).get("violations") or []
    bkeys, hkeys = {_vkey(v) for v in bv}, {_vkey(v) for v in hv}
    return {"current": list(hv), "new": [v for v in hv if _vkey(v) not in bkeys],
            "resolved": [v for v in bv if _vkey(v) not in hkeys]}


def _fkey(f: dict) -> tuple:
    return (f.get("check"), f.get("urn"), f.get("message"))


def readiness_delta(base: dict, head: dict) -> dict:
    bf = (base.get("readiness") or {}).get("findings") or []
    hf = (head.get("readiness") or {}).get("findings") or []
    bkeys, hkeys = {_fkey(f) for f in bf}, {_fkey(f) for f in hf}
    return {"current": list(hf), "new": [f for f in hf if _fkey(f) not in bkeys],
            "resolved": [f for f in bf if _fkey(f) not in hkeys]}


# --- rendering: Markdown -------------------------------------------------------------

MARKER = "<!-- llmserving:pr-preview -->"
MAX_VALUE = 160
_SYMBOL = {"create": "+", "delete": "-", "update": "~", "replace": "+-"}


def _short_urn(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<type chain>::<name> -> <type>::<name>
    parts = urn.split("::")
    return f"{parts[-2].split('$')[-1]}::{parts[-1]}" if len(parts) >= 2 else urn


def _value(v: Any) -> str:
    text = ABSENT if v is MISSING else json.dumps(v, sort_keys=True, ensure_ascii=False)
    if len(text) > MAX_VALUE:
        text = text[: MAX_VALUE - 1] + "…"
    return text


def _code(text: str) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _money(x: float) -> str:
    return f"${x:,.2f}"


def _signed_money(x: float) -> str:
    return f"{'+' if x > 0 else '-' if x < 0 else '±'}${abs(x):,.2f}"


def _signed(x: float) -> str:
    x = int(x) if float(x).is_integer() else x
    return f"{x:+,}" if x else "±0"


def render_markdown(head: dict, diff: Optional[StackDiff] = None, *, base_label: str = "base",
                    mermaid: bool = True) -> str:
    """The pull-request report for one stack."""
    stack = head.get("stack", "?")
    out: list[str] = [f"### Stack `{stack}`", ""]
    cost = head.get("cost") or {}
    cap = head.get("capacity") or {}
    violations = (head.get("policy") or {}).get("violations") or []
    mandatory = [v for v in violations if v.get("level") == "mandatory"]

    if diff is None:
        out += [f"{len(head.get('resources', []))} resources, {_money(_num(cost, 'hourly_usd'))}/hour, "
                f"{_num(cap, 'gpus_total', default=0)} GPUs (no base to compare with).", ""]
    else:
        counts = ", ".join(f"{diff.count(a)} to {a}" for a in ("create", "update", "replace", "delete"))
        out += [f"Desired state vs {base_label}: **{counts}**." if diff.resources
                else f"Desired state vs {base_label}: **no resource changes**.", ""]
        out += _flags_md(diff)
    verdict = (f"❌ {len(mandatory)} mandatory policy violation(s)" if mandatory
               else "✅ policies pass" + (f" ({len(violations)} advisory)" if violations else ""))
    out += [f"**Policies:** {verdict}", ""]
    findings = (head.get("readiness") or {}).get("findings") or []
    not_ready = [f for f in findings if f.get("level") == "mandatory"]
    ready = (f"❌ {len(not_ready)} mandatory finding(s): the deploy would fail or hang" if not_ready
             else "✅ ready" + (f" ({len(findings)} advisory)" if findings else ""))
    out += [f"**Deploy readiness:** {ready}", ""]

    out += _cost_md(head, diff)
    out += _policy_md(head, diff)
    out += _readiness_md(head, diff)
    if diff is not None and diff.resources:
        out += _resources_md(diff)
    if diff is not None and diff.dependencies:
        out += _dependencies_md(diff)
    if mermaid:
        chart = render_mermaid(head)
        if chart:
            out += ["<details><summary>Architecture (from the recorded resource tree)</summary>", "", chart, "",
                    "</details>", ""]
    return "\n".join(out).rstrip() + "\n"


def _flags_md(diff: StackDiff) -> list[str]:
    if not diff.flags:
        return ["✅ No destructive changes (no replacement or deletion of stateful, expensive or protected "
                "resources).", ""]
    open_ = diff.unacknowledged
    head = (f"⛔ **{len(open_)} destructive change(s) need acknowledgement** (label `allow-destructive` or a "
            f"PR body line `/allow-destructive <urn or type>`; see docs/pr-previews.md)." if open_
            else f"⚠️ **{len(diff.flags)} destructive change(s), all acknowledged.**")
    out = [head, "", "| | resource | type | why | acknowledged |", "|---|---|---|---|---|"]
    for f in diff.flags:
        out.append(f"| {_SYMBOL[f.action]} {f.action} | {_code(f.name)} | {_code(f.type)} | "
                   f"{_cell(f.reason)} | {f.acknowledged_by or '**no**'} |")
    return out + [""]


def _cost_md(head: dict, diff: Optional[StackDiff]) -> list[str]:
    cost, cap = head.get("cost") or {}, head.get("capacity") or {}
    out = ["#### Cost and capacity", ""]
    if diff is None:
        out += ["| | planned | at max scale |", "|---|---:|---:|",
                f"| $/hour | {_money(_num(cost, 'hourly_usd'))} | {_money(_num(cost, 'max_hourly_usd'))} |",
                f"| $/month | {_money(_num(cost, 'monthly_usd'))} | {_money(_num(cost, 'max_monthly_usd'))} |",
                f"| GPUs | {_num(cap, 'gpus_total')} | {_num(cap, 'max_gpus_total')} |", ""]
    else:
        c, k = diff.cost, diff.capacity
        out += ["| | before | after | delta |", "|---|---:|---:|---:|"]
        for key, label in (("hourly_usd", "$/hour (planned)"), ("monthly_usd", "$/month (planned)"),
                           ("max_hourly_usd", "$/hour (at max)"), ("max_monthly_usd", "$/month (at max)")):
            r = c[key]
            out.append(f"| {label} | {_money(r['before'])} | {_money(r['after'])} | {_signed_money(r['delta'])} |")
        for key, label in (("gpus_total", "GPUs (planned)"), ("max_gpus_total", "GPUs (at max)")):
            r = k[key]
            out.append(f"| {label} | {r['before']} | {r['after']} | {_signed(r['delta'])} |")
        out.append("")
    models = cap.get("models") or {}
    changed = diff.capacity["models"] if diff is not None else {}
    if models or changed:
        out += ["| model | pool / instance | replicas (min-max) | GPUs | change |", "|---|---|---:|---:|---|"]
        for name in sorted(set(models) | set(changed)):
            m = models.get(name)
            ch = changed.get(name)
            note = _model_note(ch) if ch else ""
            if m:
                out.append(f"| {name} | {m.get('pool')} / {m.get('instance_type')} | {m.get('replicas')} "
                           f"({m.get('min_replicas')}-{m.get('max_replicas')}) | {m.get('gpus')} | {note} |")
            else:
                out.append(f"| {name} | — | — | — | {note} |")
        out.append("")
    return out


def _model_note(ch: dict) -> str:
    if ch["status"] != "changed":
        return ch["status"]
    return "; ".join(f"{k} {ch[k]['before']} → {ch[k]['after']}" for k in _MODEL_KEYS if ch[k]["before"] != ch[k]["after"])


def _policy_md(head: dict, diff: Optional[StackDiff]) -> list[str]:
    violations = (head.get("policy") or {}).get("violations") or []
    new = {_vkey(v) for v in diff.policy["new"]} if diff is not None else set()
    out = []
    if violations:
        out += ["#### Policy verdicts", "", "| level | policy | resource | message | |", "|---|---|---|---|---|"]
        for v in violations:
            level = "❌ mandatory" if v.get("level") == "mandatory" else "⚠️ advisory"
            res = _short_urn(v["urn"]) if v.get("urn") else "(stack)"
            tag = "new" if _vkey(v) in new else ""
            out.append(f"| {level} | {v.get('policy')} | {_code(res)} | {_cell(str(v.get('message')))} "
                       f"| {tag} |")
        out.append("")
    if diff is not None and diff.policy["resolved"]:
        out += ["Resolved since base: " + "; ".join(f"{v.get('policy')} ({_short_urn(v['urn']) if v.get('urn') else 'stack'})"
                                                     for v in diff.policy["resolved"]), ""]
    return out


def _readiness_md(head: dict, diff: Optional[StackDiff]) -> list[str]:
    findings = (head.get("readiness") or {}).get("findings") or []
    new = {_fkey(f) for f in diff.readiness["new"]} if diff is not None else set()
    out = []
    if findings:
        out += ["#### Deploy readiness", "", "| level | check | resource | what would happen | |", "|---|---|---|---|---|"]
        for f in findings:
            level = "❌ mandatory" if f.get("level") == "mandatory" else "⚠️ advisory"
            res = _short_urn(f["urn"]) if f.get("urn") else "(stack)"
            out.append(f"| {level} | {f.get('check')} | {_code(res)} | {_cell(str(f.get('message')))} "
                       f"| {'new' if _fkey(f) in new else ''} |")
        out.append("")
    if diff is not None and diff.readiness["resolved"]:
        out += ["Resolved since base: " + "; ".join(f"{f.get('check')} ({_short_urn(f['urn']) if f.get('urn') else 'stack'})"
                                                     for f in diff.readiness["resolved"]), ""]
    return out


def _dependencies_md(diff: StackDiff) -> list[str]:
    out = ["#### Ordering changes (what each resource waits for)", "", "| resource | now waits for | no longer waits for |",
           "|---|---|---|"]
    for d in diff.dependencies:
        added = ", ".join(_code(_short_urn(u)) for u in d.added) or "—"
        removed = ", ".join(_code(_short_urn(u)) for u in d.removed) or "—"
        out.append(f"| {_code(d.type + '::' + d.name)} | {added} | {removed} |")
    return out + [""]


def _resources_md(diff: StackDiff) -> list[str]:
    out = ["#### Resource changes", ""]
    for r in diff.resources:
        summary = f"{_SYMBOL[r.action]} {r.action} <code>{r.type}</code> <b>{r.name}</b>"
        if not r.properties:
            out.append(f"- {summary.replace('<code>', '`').replace('</code>', '`').replace('<b>', '**').replace('</b>', '**')}")
            continue
        n = len(r.properties)
        out += [f"<details><summary>{summary} ({n} propert{'y' if n == 1 else 'ies'})</summary>", "",
                f"URN: {_code(r.urn)}", "", "| property | before | after | |", "|---|---|---|---|"]
        for p in r.properties:
            out.append(f"| {_code(p.path)} | {_code(_value(p.before))} | {_code(_value(p.after))} | "
                       f"{'**replaces**' if p.replaces else ''} |")
        out += ["", "</details>", ""]
    return out + [""]


# --- rendering: Mermaid ------------------------------------------------------------------

MAX_MERMAID_COMPONENTS = 40


def render_mermaid(doc: dict) -> str:
    """A flowchart of components (subgraphs) and their custom children grouped by type."""
    resources = doc.get("resources") or []
    by_urn = {r["urn"]: r for r in resources}
    components = [r for r in resources if not r.get("custom", True)]
    if not resources or len(components) > MAX_MERMAID_COMPONENTS:
        return ""
    children: dict[Optional[str], list[dict]] = {}
    for r in resources:
        parent = r.get("parent") if r.get("parent") in by_urn else None
        children.setdefault(parent, []).append(r)
    ids: dict[str, str] = {}

    def node_id(key: str) -> str:
        return ids.setdefault(key, f"n{len(ids)}")

    def label(text: str) -> str:
        return '"' + text.replace('"', "#quot;") + '"'

    lines = ["```mermaid", "flowchart LR"]

    def emit(parent: Optional[str], indent: str) -> None:
        kids = children.get(parent, [])
        groups: dict[str, int] = {}
        for r in kids:
            if r.get("custom", True):
                groups[r["type"]] = groups.get(r["type"], 0) + 1
        for typ, n in sorted(groups.items()):
            short = typ.rsplit(":", 1)[-1]
            lines.append(f"{indent}{node_id(f'{parent}|{typ}')}[{label(f'{short} x{n}' if n > 1 else short)}]")
        for r in sorted((r for r in kids if not r.get("custom", True)), key=lambda r: (r["type"], r["name"])):
            cid = node_id(r["urn"])
            lines.append(f"{indent}subgraph {cid}[{label(r['type'].rsplit(':', 1)[-1] + ' ' + r['name'])}]")
            emit(r["urn"], indent + "  ")
            lines.append(f"{indent}end")

    emit(None, "  ")
    lines.append("```")
    return "\n".join(lines)


# --- rendering: console ---------------------------------------------------------------------

def render_console(diff: StackDiff, console: Any, base_label: str = "base") -> None:
    c = diff.cost
    console.print(f"[bold]Diff vs {base_label}:[/] {diff.count('create')} to create, {diff.count('update')} to update, "
                  f"{diff.count('replace')} to replace, {diff.count('delete')} to delete | "
                  f"{_signed_money(c['hourly_usd']['delta'])}/hour, {_signed_money(c['monthly_usd']['delta'])}/month, "
                  f"GPUs {_signed(diff.capacity['gpus_total']['delta'])}", soft_wrap=True)
    colour = {"create": "green", "delete": "red", "update": "yellow", "replace": "magenta"}
    for r in diff.resources:
        console.print(f"  [{colour[r.action]}]{_SYMBOL[r.action]} {r.action} {r.type} {r.name}[/]", soft_wrap=True)
        for p in r.properties:
            console.print(f"      {p.path}: {_value(p.before)} -> {_value(p.after)}"
                          f"{'  [magenta](replaces)[/]' if p.replaces else ''}", markup=True, soft_wrap=True,
                          highlight=False)
    for name, m in diff.capacity["models"].items():
        console.print(f"  model {name}: {_model_note(m)}", soft_wrap=True)
    from rich.markup import escape

    for d in diff.dependencies:
        added = ", ".join(_short_urn(u) for u in d.added)
        removed = ", ".join(_short_urn(u) for u in d.removed)
        console.print(f"  [cyan]waits[/] {escape(d.type)} {escape(d.name)}:"
                      + escape((f" now for {added}" if added else "") + (f"; no longer for {removed}" if removed else "")),
                      soft_wrap=True, markup=True, highlight=False)
    for f in diff.readiness["new"]:
        console.print(f"  [red]NEW readiness {f['level']}[/] {escape(f['check'])}: {escape(f['message'])}",
                      soft_wrap=True)
    for f in diff.flags:
        state = f"[green]acknowledged by {f.acknowledged_by}[/]" if f.acknowledged_by else "[red]NOT acknowledged[/]"
        console.print(f"  [red]DESTRUCTIVE[/] {f.action} {f.type} {f.name}: {f.reason} ({state})", soft_wrap=True)


# --- the pull-request comment ---------------------------------------------------------------------

MAX_COMMENT = 60000  # GitHub rejects comment bodies over 65,536 characters


def comment(reports: list[str], *, header: str = "") -> str:
    """One comment from per-stack reports; folded resource details are dropped if it gets too long."""
    body = "\n".join([MARKER, "## Offline preview", header, *reports]).strip() + "\n"
    if len(body) <= MAX_COMMENT:
        return body
    trimmed = [re.sub(r"#### Resource changes.*?(?=\n### |\n<details><summary>Architecture|\Z)",
                      "#### Resource changes\n\n_Too long for a comment: see the workflow artifact._\n",
                      r, flags=re.S) for r in reports]
    body = "\n".join([MARKER, "## Offline preview", header, *trimmed]).strip() + "\n"
    return body[:MAX_COMMENT] + ("\n\n_(truncated; full report in the workflow artifact)_\n"
                                 if len(body) > MAX_COMMENT else "")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.diff", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("comment", help="join per-stack Markdown reports into one PR comment")
    c.add_argument("reports", nargs="+", metavar="REPORT.md")
    c.add_argument("--header", default="", help="a line under the title (e.g. the commit)")
    c.add_argument("--out", required=True, metavar="FILE")
    sub.add_parser("rules", help="print the replace-on-change table as Markdown")
    args = parser.parse_args(argv)
    if args.cmd == "comment":
        parts = [Path(p).read_text() if Path(p).is_file() else f"### `{p}`\n\n_No report (the preview did not run; "
                 f"see the workflow log)._\n" for p in args.reports]
        Path(args.out).write_text(comment(parts, header=args.header))
        return 0
    print(rules_markdown())
    return 0


def rules_markdown() -> str:
    out = ["| type | kind | replaced when changed | deletion guarded | source (as of) |", "|---|---|---|---|---|"]
    for r in GUARD_RULES:
        props = ", ".join(f"`{p}`" for p in r.replace_on_change)
        if r.replace_on_removal:
            props += "; removal of " + ", ".join(f"`{p}`" for p in r.replace_on_removal)
        if r.roll_on_change:
            props += "; rolls nodes on change of " + ", ".join(f"`{p}`" for p in r.roll_on_change)
        out.append(f"| `{r.type}` | {r.kind} | {props} | {'yes' if r.guard_delete else 'no'} | {r.source} ({r.as_of}) |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
