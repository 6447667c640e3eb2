"""IAM guardrails: no admin grants, no public trust, scoped PassRole, private KMS keys, and the
adapter store's tenant isolation (components/adapter_store.py) enforced, not only tested.

Policy documents arrive as JSON text (or objects). In a real first preview a document built from
outputs (a bucket or key ARN) is unknown as a whole: the rules then report what they could not judge.

Action and resource patterns follow IAM's wildcard semantics (`*` any run, `?` one character,
case-insensitive actions): IAM User Guide, "IAM JSON policy elements: Action / Resource".
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any, Iterator, Optional

from rules.common import Res, UNKNOWN, as_list, of_type, refers_to, resource_policy, stack_policy

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
USER_POLICY = "aws:iam/userPolicy:UserPolicy"
GROUP_POLICY = "aws:iam/groupPolicy:GroupPolicy"
ROLE_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
POLICY_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"
KMS_KEY = "aws:kms/key:Key"
KMS_KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
BUCKET = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
IDENTITY_DOCS = (ROLE_POLICY, MANAGED_POLICY, USER_POLICY, GROUP_POLICY)


# --- policy documents ------------------------------------------------------------------

def document(value: Any) -> Any:
    """A policy document as a dict; UNKNOWN when unknown; None when absent or unreadable."""
    if value is UNKNOWN:
        return UNKNOWN
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def statements(doc: Any) -> list[dict]:
    return [s for s in as_list(doc.get("Statement")) if isinstance(s, dict)] if isinstance(doc, dict) else []


def sid(st: dict, i: int) -> str:
    return f"statement {st['Sid']!r}" if isinstance(st.get("Sid"), str) else f"statement {i}"


def _glob(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM wildcard match (* and ?); `[` is literal in IAM, so escape it for fnmatch."""
    p = pattern.replace("[", "[[]")
    return fnmatch.fnmatchcase(value, p) if case else fnmatch.fnmatchcase(value.lower(), p.lower())


def allows_action(st: dict, action: str) -> bool:
    """Whether an Allow statement's Action/NotAction covers `action`."""
    if st.get("Effect") != "Allow":
        return False
    if "NotAction" in st:
        return not any(_glob(a, action, case=False) for a in as_list(st.get("NotAction")) if isinstance(a, str))
    return any(_glob(a, action, case=False) for a in as_list(st.get("Action")) if isinstance(a, str))


def resources(st: dict) -> list[str]:
    return [r for r in as_list(st.get("Resource")) if isinstance(r, str)]


def on_every_resource(st: dict) -> bool:
    return "NotResource" in st or "*" in resources(st)


def condition_keys(st: dict) -> dict[str, dict[str, list[str]]]:
    """{operator: {key (lower case): [values]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    cond = st.get("Condition") if isinstance(st.get("Condition"), dict) else {}
    for op, body in cond.items():
        if isinstance(body, dict):
            out[op] = {k.lower(): [str(v) for v in as_list(val)] for k, val in body.items()}
    return out


def principals(st: dict) -> list[str]:
    """Principal values as "AWS:<v>", "Service:<v>", "Federated:<v>", or "*"."""
    p = st.get("Principal")
    if p == "*":
        return ["*"]
    if isinstance(p, dict):
        return [f"{k}:{v}" for k, vals in p.items() for v in as_list(vals)]
    return []


def public_principal(st: dict) -> bool:
    return any(p in ("*", "AWS:*") for p in principals(st))


# Condition keys that tie a "*" principal to one account or organization (IAM condition context keys).
ACCOUNT_KEYS = ("aws:principalaccount", "aws:principalorgid", "aws:principalarn", "aws:sourceaccount",
                "aws:sourcearn", "aws:sourceorgid", "kms:calleraccount", "aws:principalorgpaths")


def narrowed_to_account(st: dict) -> bool:
    for op, keys in condition_keys(st).items():
        if op.lower().startswith(("forallvalues:", "foranyvalue:")) or "Not" in op or op.endswith("IfExists"):
            continue
        if any(k in ACCOUNT_KEYS and vals and "*" not in vals for k, vals in keys.items()):
            return True
    return False


def _label(r: Res) -> str:
    kind = {ROLE_POLICY: "role policy", MANAGED_POLICY: "IAM policy", USER_POLICY: "user policy",
            GROUP_POLICY: "group policy", ROLE: "role", KMS_KEY: "KMS key", KMS_KEY_POLICY: "KMS key policy",
            BUCKET_POLICY: "bucket policy"}.get(r.type, r.type)
    return f"{kind} '{r.name}'"


def identity_documents(r: Res) -> Iterator[tuple[str, str, Any]]:
    """(label, input path, document or UNKNOWN) of the identity policies a resource carries."""
    if r.type in IDENTITY_DOCS:
        yield _label(r), "policy", document(r.get("policy"))
    elif r.type == ROLE:
        inline = r.get("inlinePolicies")
        if inline is UNKNOWN:
            yield _label(r), "inlinePolicies", UNKNOWN
        for i, p in enumerate(as_list(inline)):
            if p is UNKNOWN or (isinstance(p, dict) and p.get("policy") is UNKNOWN):
                yield _label(r), f"inlinePolicies[{i}].policy", UNKNOWN
            elif isinstance(p, dict):
                yield f"{_label(r)} inline policy {p.get('name')!r}", f"inlinePolicies[{i}].policy", document(p.get("policy"))


# --- generic IAM rules -------------------------------------------------------------------

def _wildcard_action(r: Res, cfg: dict, report) -> None:
    for label, path, doc in identity_documents(r):
        if doc is UNKNOWN:
            report.unjudged(label, path)
            continue
        for i, st in enumerate(statements(doc)):
            if st.get("Effect") != "Allow":
                continue
            if "NotAction" in st:
                report(f"{label} {sid(st, i)} allows every action except {st.get('NotAction')} (Allow with NotAction) "
                       f"(CKV_AWS_62, CKV_AWS_63)")
            elif any(a in ("*", "*:*") for a in as_list(st.get("Action"))):
                report(f"{label} {sid(st, i)} allows every action (Action \"*\") on {', '.join(resources(st)) or 'NotResource'} "
                       f"(CKV_AWS_62, CKV_AWS_63)")


wildcard_action = resource_policy(
    "iam-no-wildcard-action",
    "Identity policies never Allow every action (Action \"*\" or Allow with NotAction) (Checkov CKV_AWS_62, "
    "CKV_AWS_63; Trivy AVD-AWS-0057).",
    _wildcard_action, types=[*IDENTITY_DOCS, ROLE])


def _service_wildcard(r: Res, cfg: dict, report) -> None:
    for label, path, doc in identity_documents(r):
        if doc is UNKNOWN:
            report.unjudged(label, path)
            continue
        for i, st in enumerate(statements(doc)):
            if st.get("Effect") != "Allow" or not on_every_resource(st):
                continue
            wild = [a for a in as_list(st.get("Action")) if isinstance(a, str) and re.fullmatch(r"[a-zA-Z0-9-]+:\*", a)]
            if wild:
                report(f"{label} {sid(st, i)} allows {', '.join(wild)} on every resource (Resource \"*\"); name the "
                       f"resources it needs (CKV_AWS_355)")


service_wildcard = resource_policy(
    "iam-no-service-wildcard-on-all-resources",
    "Identity policies never Allow a whole service (e.g. s3:*) on every resource (Checkov CKV_AWS_355; Trivy "
    "AVD-AWS-0057).",
    _service_wildcard, types=[*IDENTITY_DOCS, ROLE])


def _trust_public(r: Res, cfg: dict, report) -> None:
    doc = document(r.get("assumeRolePolicy"))
    if doc is UNKNOWN:
        report.unjudged(_label(r), "assumeRolePolicy")
        return
    for i, st in enumerate(statements(doc)):
        if st.get("Effect") == "Allow" and public_principal(st) and not narrowed_to_account(st):
            report(f"role '{r.name}' trust policy {sid(st, i)} lets any AWS principal assume it (Principal "
                   f"{json.dumps(st.get('Principal'))}) with no account condition (CKV_AWS_60)")
        elif st.get("Effect") == "Allow" and "NotPrincipal" in st:
            report(f"role '{r.name}' trust policy {sid(st, i)} trusts every principal but the ones listed (NotPrincipal) "
                   f"(CKV_AWS_60)")


trust_public = resource_policy(
    "iam-trust-not-public",
    "Role trust policies never let any AWS principal (\"*\" or {\"AWS\": \"*\"}) assume the role without an "
    "account or organization condition (Checkov CKV_AWS_60).",
    _trust_public, types=[ROLE])

# AWS managed policies that grant every action, or the power to grant oneself every action
# (AWS managed policy reference: AdministratorAccess "*" on "*"; PowerUserAccess all but most of IAM and
# Organizations; IAMFullAccess iam:*; the two AdministratorAccess-* variants grant iam:PassRole and service
# administration), and S3 on every bucket (every tenant's adapters).
ADMIN_POLICIES = {
    "AdministratorAccess": "every action on every resource",
    "PowerUserAccess": "every action except most of IAM",
    "IAMFullAccess": "iam:*, enough to grant itself anything",
    "AdministratorAccess-Amplify": "administration of Amplify and the roles it passes",
    "AdministratorAccess-AWSElasticBeanstalk": "administration of Elastic Beanstalk and the roles it passes",
    "AmazonS3FullAccess": "s3:* on every bucket, every tenant's adapters included",
}


def _admin_name(arn: Any) -> Optional[str]:
    if not isinstance(arn, str):
        return None
    m = re.match(r"^arn:aws[a-z-]*:iam::aws:policy/(?:.*/)?([^/]+)$", arn)
    return m.group(1) if m and m.group(1) in ADMIN_POLICIES else None


def _admin_managed(r: Res, cfg: dict, report) -> None:
    if r.type == ROLE:
        arns = r.get("managedPolicyArns")
        if arns is UNKNOWN:
            report.unjudged(_label(r), "managedPolicyArns")
            return
        pairs = [(f"role '{r.name}'", a, f"managedPolicyArns[{i}]") for i, a in enumerate(as_list(arns))]
    else:
        who = r.get("role") if r.type == ROLE_ATTACHMENT else r.get("roles")
        who_label = (f"role '{who}'" if isinstance(who, str) else
                     f"roles {', '.join(map(str, as_list(who)))}" if isinstance(who, list) else f"'{r.name}'")
        pairs = [(who_label, r.get("policyArn"), "policyArn")]
    for who, arn, path in pairs:
        if arn is UNKNOWN:
            report.unjudged(f"{who} ({_label(r) if r.type == ROLE else r.type.rsplit(':', 1)[-1] + ' ' + repr(r.name)})", path)
            continue
        name = _admin_name(arn)
        if name:
            report(f"{who} gets the AWS managed policy {name} ({ADMIN_POLICIES[name]}); node, task and pod roles get "
                   f"only the permissions they use (CKV_AWS_274)")


admin_managed = resource_policy(
    "iam-no-admin-managed-policy",
    "No role (node, task or pod role) gets an admin-equivalent AWS managed policy (AdministratorAccess, "
    "PowerUserAccess, IAMFullAccess, AmazonS3FullAccess, ...) (Checkov CKV_AWS_274).",
    _admin_managed, types=[ROLE_ATTACHMENT, POLICY_ATTACHMENT, ROLE])


def _passrole(r: Res, cfg: dict, report) -> None:
    for label, path, doc in identity_documents(r):
        if doc is UNKNOWN:
            report.unjudged(label, path)
            continue
        for i, st in enumerate(statements(doc)):
            acts = [a for a in as_list(st.get("Action")) if isinstance(a, str) and a not in ("*", "*:*")
                    and _glob(a, "iam:PassRole", case=False)]
            if st.get("Effect") != "Allow" or not acts or not on_every_resource(st):
                continue
            keys = {k for body in condition_keys(st).values() for k in body}
            if "iam:passedtoservice" not in keys:
                report(f"{label} {sid(st, i)} allows {', '.join(acts)} on every role (Resource \"*\") without an "
                       f"iam:PassedToService condition: whoever holds it can hand any role, admin roles included, to a "
                       f"service it controls (CKV_AWS_286)")


passrole = resource_policy(
    "iam-passrole-scoped",
    "iam:PassRole is granted on named roles, or on \"*\" only with an iam:PassedToService condition (Checkov "
    "CKV_AWS_286).",
    _passrole, types=[*IDENTITY_DOCS, ROLE])


def _kms_public(r: Res, cfg: dict, report) -> None:
    doc = document(r.get("policy"))
    if doc is UNKNOWN:
        report.unjudged(_label(r), "policy")
        return
    for i, st in enumerate(statements(doc)):
        if st.get("Effect") == "Allow" and public_principal(st) and not narrowed_to_account(st):
            report(f"{_label(r)} {sid(st, i)} allows {st.get('Action')} to any principal (\"*\") with no "
                   f"kms:CallerAccount or aws:PrincipalAccount condition (CKV_AWS_33)")


kms_public = resource_policy(
    "kms-key-policy-not-public",
    "KMS key policies never Allow a \"*\" principal without an account condition (Checkov CKV_AWS_33).",
    _kms_public, types=[KMS_KEY, KMS_KEY_POLICY])


# --- the adapter store: readers and tenant isolation ----------------------------------------

TENANT_VAR = "${aws:PrincipalTag/%s}"
READ_ACTION = "s3:GetObject"
WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl",
                 "s3:PutObjectTagging", "s3:AbortMultipartUpload", "s3:RestoreObject")
WORKLOAD_SERVICES = ("pods.eks.amazonaws.com", "ecs-tasks.amazonaws.com")
NEGATED = re.compile(r"(Not(Equals|Like|IpAddress)|NotEquals)", re.I)


class Grant:
    """One Allow statement of an identity or bucket policy, with who holds it."""

    def __init__(self, holder: str, holder_res: Optional[Res], doc_label: str, st: dict, index: int, doc_res: Res):
        self.holder, self.holder_res, self.doc_label, self.st, self.index = holder, holder_res, doc_label, st, index
        self.doc_res = doc_res


def _tenant(cfg: dict) -> tuple[str, str]:
    return cfg.get("tenantTag", "tenant"), cfg.get("tenantRoot", "tenants/")


def adapter_buckets(resources: list[Res], docs: list[tuple[Any, Any]], cfg: dict) -> list[str]:  # noqa: A002
    """Names of the adapter buckets: named with the configured marker, or addressed under the tenant root."""
    _, root = _tenant(cfg)
    marker = cfg.get("bucketMarker", "adapters")
    names = {b.get("bucket") for b in of_type(resources, *BUCKET) if isinstance(b.get("bucket"), str)
             and marker and marker in b.get("bucket")}
    for _, doc in docs:
        for st in statements(doc):
            for res in resources_of(st):
                m = re.match(rf"^arn:aws[a-z-]*:s3:::([^/*]+)/{re.escape(root)}", res)
                if m:
                    names.add(m.group(1))
    return sorted(n for n in names if n)


def resources_of(st: dict) -> list[str]:
    return resources(st)


def _role_of(resources_: list[Res], r: Res) -> Optional[Res]:
    """The role an inline/attached policy belongs to (by dependency or by name)."""
    roles = of_type(resources_, ROLE)
    for role in roles:
        if refers_to(r, "role", role) or (isinstance(r.get("role"), str) and r.get("role") == role.get("name")):
            return role
    return None


def grants(resources_: list[Res]) -> tuple[list[Grant], list[tuple[str, str, Res]]]:
    """Every Allow statement of the stack's identity and bucket policies, and the (label, path, resource) of
    each document that is unknown."""
    out: list[Grant] = []
    unknown: list[tuple[str, str, Res]] = []
    attached: dict[str, list[Res]] = {}
    for a in of_type(resources_, ROLE_ATTACHMENT):
        for urn in a.prop_deps.get("policyArn", []):
            role = _role_of(resources_, a)
            if role is not None:
                attached.setdefault(urn, []).append(role)
    for r in resources_:
        if r.type == BUCKET_POLICY:
            doc = document(r.get("policy"))
            if doc is UNKNOWN:
                unknown.append((_label(r), "policy", r))
                continue
            for i, st in enumerate(statements(doc)):
                if st.get("Effect") == "Allow":
                    out.append(Grant(f"principal {json.dumps(st.get('Principal'))}", None, _label(r), st, i, r))
            continue
        for label, path, doc in identity_documents(r):
            if doc is UNKNOWN:
                unknown.append((label, path, r))
                continue
            if r.type == ROLE:
                holders = [(f"role '{r.name}'", r)]
            elif r.type == ROLE_POLICY:
                role = _role_of(resources_, r)
                if role is None and r.get("role") is UNKNOWN:
                    unknown.append((label, "role", r))
                    continue
                holders = [(f"role '{role.name}'", role) if role is not None else (f"role '{r.get('role')}'", None)]
            elif r.type == MANAGED_POLICY:
                holders = [(f"role '{x.name}'", x) for x in attached.get(r.urn, [])] or [(label, None)]
            else:
                holders = [(label, None)]
            for i, st in enumerate(statements(doc)):
                if st.get("Effect") == "Allow":
                    for holder, res in holders:
                        out.append(Grant(holder, res, label, st, i, r))
    return out, unknown


def _matches_object(st: dict, bucket: str, key: str) -> bool:
    arn = f"arn:aws:s3:::{bucket}/{key}"
    if "NotResource" in st:
        return not any(_glob(p, arn) for p in as_list(st.get("NotResource")) if isinstance(p, str))
    return any(_glob(p.replace("arn:aws-cn:", "arn:aws:").replace("arn:aws-us-gov:", "arn:aws:"), arn) for p in resources(st))


def _tenant_scoped(st: dict, cfg: dict) -> bool:
    tag, _ = _tenant(cfg)
    return any(TENANT_VAR % tag in p for p in resources(st))


def _all_tenants(st: dict, bucket: str, cfg: dict) -> bool:
    """The statement reaches the objects of two different tenants (no per-tenant variable narrows it)."""
    _, root = _tenant(cfg)
    return all(_matches_object(st, bucket, f"{root}{t}/adapter/adapter_config.json") for t in ("t-a1", "t-b2"))


def _trusted_by(role: Optional[Res]) -> tuple[list[str], bool]:
    """(principals that may assume a role, whether the trust policy is unknown)."""
    if role is None:
        return [], False
    doc = document(role.get("assumeRolePolicy"))
    if doc is UNKNOWN:
        return [], True
    return sorted({p for st in statements(doc) if st.get("Effect") == "Allow" for p in principals(st)}), False


def _adapter_readers(resources_: list[Res], cfg: dict, report) -> None:
    found, unknown = grants(resources_)
    buckets = adapter_buckets(resources_, [(None, {"Statement": [g.st]}) for g in found], cfg)
    for b in buckets:
        readers: dict[str, Grant] = {}
        for g in found:
            if allows_action(g.st, READ_ACTION) and _all_tenants(g.st, b, cfg):
                readers.setdefault(g.holder, g)
        bad = []
        workload_roles = []
        for holder, g in readers.items():
            if g.holder_res is None:
                bad.append((f"{holder} ({g.doc_label} {sid(g.st, g.index)})", g.doc_res.urn))
                continue
            trusted, trust_unknown = _trusted_by(g.holder_res)
            if trust_unknown:
                report.unjudged(f"readers of adapter bucket '{b}'", f"assumeRolePolicy of {holder}")
                continue
            services = [p.split(":", 1)[1] for p in trusted if p.startswith("Service:")]
            if trusted and all(p.startswith("Service:") for p in trusted) and set(services) <= set(WORKLOAD_SERVICES):
                workload_roles.append(holder)
            else:
                bad.append((f"{holder} (assumed by {', '.join(trusted) or 'nobody known'})", g.doc_res.urn))
        for who, where in bad:
            report(f"{who} can read every tenant's adapters in bucket '{b}'; only the serving reader role (trusted by "
                   f"{' / '.join(WORKLOAD_SERVICES)}) may read across tenants", where)
        if len(workload_roles) > 1:
            report(f"{len(workload_roles)} roles can read every tenant's adapters in bucket '{b}' ({', '.join(sorted(workload_roles))}); "
                   f"the adapter store grants that to one serving reader role")
        for label, path, res in unknown:
            report.unjudged(f"readers of adapter bucket '{b}' ({label})", path, res.urn)


adapter_readers = stack_policy(
    "adapter-store-readers",
    "Only one role, trusted only by serving workloads (EKS Pod Identity, ECS tasks), can read every tenant's LoRA "
    "adapters; no other role, user or bucket-policy principal gets read across tenants.",
    _adapter_readers, types=[*BUCKET, ROLE_POLICY, ROLE, MANAGED_POLICY, BUCKET_POLICY],
    schema={"bucketMarker": {"type": "string", "default": "adapters"},
            "tenantTag": {"type": "string", "default": "tenant"},
            "tenantRoot": {"type": "string", "default": "tenants/"}})


def _cond_value(st: dict, op: str, key: str) -> list[str]:
    """Values of condition `op` on `key` (operator and key case-insensitive)."""
    out: list[str] = []
    for o, keys in condition_keys(st).items():
        if o.lower() == op.lower():
            out += keys.get(key.lower(), [])
    return out


def _fails_closed(st: dict, tag: str) -> bool:
    return "false" in [v.lower() for v in _cond_value(st, "Null", f"aws:PrincipalTag/{tag}")]


def _negated_ops(st: dict) -> list[str]:
    cond = st.get("Condition") if isinstance(st.get("Condition"), dict) else {}
    return [op for op in cond if NEGATED.search(op.split(":")[-1])]


def _tenant_isolation(resources_: list[Res], cfg: dict, report) -> None:
    tag, root = _tenant(cfg)
    found, unknown = grants(resources_)
    buckets = adapter_buckets(resources_, [(None, {"Statement": [g.st]}) for g in found], cfg)
    if not buckets:
        return
    scoped_roles: dict[str, Res] = {}
    for b in buckets:
        for g in found:
            writes = [a for a in WRITE_ACTIONS if allows_action(g.st, a)]
            if not writes:
                continue
            where = f"{g.holder} ({g.doc_label} {sid(g.st, g.index)})"
            if _all_tenants(g.st, b, cfg):
                report(f"{where} can write every tenant's adapters in bucket '{b}' ({', '.join(writes)} on "
                       f"{', '.join(resources(g.st)) or 'NotResource'}); a writer may only write "
                       f"{root}{TENANT_VAR % tag}/", g.doc_res.urn)
            elif _tenant_scoped(g.st, cfg) and g.holder_res is not None:
                scoped_roles[g.holder_res.urn] = g.holder_res
    # Every statement of a tenant-scoped role fails closed and uses no negated operator; its trust policy binds
    # the session tag to the caller's own tag (components/adapter_store.py writer_policy / writer_trust_policy).
    for role in scoped_roles.values():
        for g in (x for x in found if x.holder_res is role):
            where = f"role '{role.name}' ({g.doc_label} {sid(g.st, g.index)})"
            if not _fails_closed(g.st, tag):
                report(f"{where} does not fail closed: it lacks Null {{aws:PrincipalTag/{tag}: false}}, so a session "
                       f"without the {tag} tag is not refused outright", g.doc_res.urn)
            neg = _negated_ops(g.st)
            if neg:
                report(f"{where} uses negated condition operators ({', '.join(neg)}), which match when the key is "
                       f"absent; tenant scoping must use positive operators and Null checks", g.doc_res.urn)
            if allows_action(g.st, "s3:ListBucket") and any(_glob(p, f"arn:aws:s3:::{b}") for p in resources(g.st)
                                                            for b in buckets):
                prefixes = _cond_value(g.st, "StringLike", "s3:prefix") + _cond_value(g.st, "StringEquals", "s3:prefix")
                if not prefixes or not all(TENANT_VAR % tag in p for p in prefixes):
                    report(f"{where} lists the adapter bucket beyond the tenant's own prefix (s3:prefix "
                           f"{', '.join(prefixes) or 'unrestricted'}); limit it to {root}{TENANT_VAR % tag}/",
                           g.doc_res.urn)
        doc = document(role.get("assumeRolePolicy"))
        if doc is UNKNOWN:
            report.unjudged(f"tenant isolation of role '{role.name}'", "assumeRolePolicy", role.urn)
            continue
        allows = [st for st in statements(doc) if st.get("Effect") == "Allow"]
        gaps = []
        for st in allows:
            if "false" not in [v.lower() for v in _cond_value(st, "Null", f"aws:RequestTag/{tag}")]:
                gaps.append(f"no Null {{aws:RequestTag/{tag}: false}}")
            if TENANT_VAR % tag not in _cond_value(st, "StringEquals", f"aws:RequestTag/{tag}"):
                gaps.append(f"aws:RequestTag/{tag} not bound to {TENANT_VAR % tag} (StringEquals)")
            if _negated_ops(st):
                gaps.append(f"negated operators {', '.join(_negated_ops(st))}")
        if gaps:
            report(f"role '{role.name}' is scoped to the caller's tenant, but its trust policy does not make the session "
                   f"carry the caller's own {tag}: {'; '.join(dict.fromkeys(gaps))}; any caller could open a session "
                   f"for another tenant", role.urn)
    for label, path, res in unknown:
        report.unjudged(f"tenant isolation of the adapter store ({label})", path, res.urn)


tenant_isolation = stack_policy(
    "adapter-store-tenant-isolation",
    "Writes to the adapter store are scoped to tenants/${aws:PrincipalTag/tenant}/, fail closed (Null check, no "
    "negated operators), list only the own prefix, and the writer's trust policy binds the session tag to the "
    "caller's own tag (components/adapter_store.py).",
    _tenant_isolation, types=[*BUCKET, ROLE_POLICY, ROLE, MANAGED_POLICY, BUCKET_POLICY],
    schema={"bucketMarker": {"type": "string", "default": "adapters"},
            "tenantTag": {"type": "string", "default": "tenant"},
            "tenantRoot": {"type": "string", "default": "tenants/"}})

POLICIES = [wildcard_action, service_wildcard, trust_public, admin_managed, passrole, kms_public, adapter_readers,
            tenant_isolation]
