"""Pod security, with the Pod Security Standards "restricted" profile as the reference
(kubernetes.io/docs/concepts/security/pod-security-standards, v1.33): host namespaces, hostPath,
capabilities, privilege escalation, root users, cluster-admin for workload accounts, privileged
namespaces. Only the objects the stack renders are judged (a Helm release's pods are the chart's).

One narrow exception, keyed on EFA: the engine of a multi-node group requests
`vpc.amazonaws.com/efa`, registers (pins) memory and so adds IPC_LOCK; Kubernetes grants added
capabilities only to uid 0 (no ambient capabilities: kubernetes/kubernetes#56374), so that container
runs as uid 0 with every other capability dropped and no privilege escalation
(components/vllm_workload.py engine_security). Nothing else may add capabilities or run as root.

One narrow hostPath exception, keyed on configuration: a serving workload (one that runs `vllm serve`) may
mount the node-level model/compile cache, exactly the directory the policy config names
(`pss-host-path.servingNodeCachePath`, generated from infra/eks_catalog.py NODE_CACHE_HOST_PATH by
infra/policy_config.py), with hostPath type `Directory`: the node creates that directory at boot for the
serving uid, and type Directory makes a node without it fail the mount instead of kubelet creating a
root-owned directory (DirectoryOrCreate: kubernetes pkg/volume/hostpath/host_path.go makeDir, v1.33). Any
other path (a parent, a child, a sibling), any other type, or any other workload still fails.
"""

from __future__ import annotations

from typing import Any

from rules.common import (Res, UNKNOWN, WORKLOAD_TYPES, as_list, container_paths, first_unknown, get, is_serving_workload,
                          num, of_type, pod_templates, requests_efa, resource_policy, stack_policy, unknown_in,
                          workload_label, workload_unknown)

NAMESPACE = "kubernetes:core/v1:Namespace"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
ENFORCE = "pod-security.kubernetes.io/enforce"
# PSS restricted: containers may add only NET_BIND_SERVICE ("Capabilities (v1.22+)").
ALLOWED_ADD = ("NET_BIND_SERVICE",)
EFA_ADD = ("IPC_LOCK",)


def _guard(r: Res, report) -> bool:
    where = workload_unknown(r)
    if where:
        report.unjudged(workload_label(r), where)
        return False
    return True


def _host_namespaces(r: Res, cfg: dict, report) -> None:
    if not _guard(r, report):
        return
    for role, spec, _, path in pod_templates(r):
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            value = spec.get(key)
            if value is UNKNOWN:
                report.unjudged(workload_label(r), ".".join(path) + f".{key}")
            elif value is True:
                report(f"{workload_label(r)} sets {key}: the pods share the node's "
                       f"{ {'hostNetwork': 'network', 'hostPID': 'process', 'hostIPC': 'IPC'}[key] } namespace "
                       f"(PSS baseline; CKV_K8S_{ {'hostPID': 17, 'hostIPC': 18, 'hostNetwork': 19}[key] })")


host_namespaces = resource_policy(
    "pss-host-namespaces",
    "Pods do not share the node's network, PID or IPC namespace (PSS:baseline/host-namespaces; Checkov CKV_K8S_17, "
    "CKV_K8S_18, CKV_K8S_19; Trivy AVD-KSV-0008, AVD-KSV-0009, AVD-KSV-0010).",
    _host_namespaces, types=WORKLOAD_TYPES)


NODE_CACHE_KEY = "servingNodeCachePath"
NODE_CACHE_TYPE = "Directory"


def _host_path(r: Res, cfg: dict, report) -> None:
    if not _guard(r, report):
        return
    cache = cfg.get(NODE_CACHE_KEY) or ""
    for role, spec, _, path in pod_templates(r):
        volumes = spec.get("volumes")
        if volumes is UNKNOWN:
            report.unjudged(workload_label(r), ".".join(path) + ".volumes")
            continue
        for i, v in enumerate(as_list(volumes)):
            if v is UNKNOWN:
                report.unjudged(workload_label(r), ".".join(path) + f".volumes[{i}]")
                continue
            if not isinstance(v, dict) or v.get("hostPath") is None:
                continue
            hp = v.get("hostPath")
            where = first_unknown(hp, ".".join(path) + f".volumes[{i}].hostPath") if isinstance(hp, dict) else None
            if hp is UNKNOWN or where:
                report.unjudged(workload_label(r), where or ".".join(path) + f".volumes[{i}].hostPath")
                continue
            host, kind = get(v, "hostPath", "path"), get(v, "hostPath", "type")
            label = f"{workload_label(r)} mounts hostPath {host} (volume '{v.get('name')}')"
            if not cache or host != cache:
                report(f"{label}: node files in a pod (PSS baseline; AVD-KSV-0023)")
            elif not is_serving_workload(r):
                report(f"{label}: only serving workloads (vllm serve) may mount the node cache (PSS baseline; "
                       f"AVD-KSV-0023)")
            elif kind != NODE_CACHE_TYPE:
                report(f"{label} with type {kind or 'unset'}: the node cache is mounted with type Directory only "
                       f"(the node creates it for the serving uid; a missing one must fail the mount, not be created "
                       f"as root) (PSS baseline; AVD-KSV-0023)")


host_path = resource_policy(
    "pss-host-path",
    "Pods mount no hostPath volumes; the one exception is a serving workload mounting the node-level cache "
    "directory the config names (servingNodeCachePath) with type Directory (PSS:baseline/host-path-volumes; "
    "Trivy AVD-KSV-0023).",
    _host_path, types=WORKLOAD_TYPES,
    schema={NODE_CACHE_KEY: {"type": "string", "default": ""}})


def _efa_engine(c: dict) -> bool:
    """The EFA exception: a container that requests vpc.amazonaws.com/efa, adds exactly IPC_LOCK, drops ALL and
    cannot escalate privileges."""
    sc = c.get("securityContext") if isinstance(c.get("securityContext"), dict) else {}
    caps = sc.get("capabilities") if isinstance(sc.get("capabilities"), dict) else {}
    return (requests_efa(c) and sorted(as_list(caps.get("add"))) == list(EFA_ADD) and "ALL" in as_list(caps.get("drop"))
            and sc.get("allowPrivilegeEscalation") is False and sc.get("privileged") is not True)


def _containers(r: Res, report):
    if not _guard(r, report):
        return []
    return list(container_paths(r))


def _capabilities(r: Res, cfg: dict, report) -> None:
    for role, spec, c, path in _containers(r, report):
        label = f"{workload_label(r)} container '{c.get('name')}'"
        where = unknown_in(c, ("securityContext", "capabilities"), path)
        caps = get(c, "securityContext", "capabilities", default={})
        if where or (isinstance(caps, dict) and first_unknown(caps) is not None):
            report.unjudged(label, where or first_unknown(caps, f"{path}.securityContext.capabilities"))
            continue
        added = [str(x) for x in as_list(get(caps, "add"))]
        extra = [x for x in added if x not in ALLOWED_ADD]
        if extra and not (_efa_engine(c) and extra == list(EFA_ADD)):
            why = " (IPC_LOCK is allowed only to a container that requests vpc.amazonaws.com/efa, drops ALL and cannot " \
                  "escalate)" if "IPC_LOCK" in extra else ""
            report(f"{label} adds capabilities {', '.join(extra)}; PSS restricted allows only NET_BIND_SERVICE{why} "
                   f"(CKV_K8S_25, AVD-KSV-0022)")
        if "ALL" not in [str(x) for x in as_list(get(caps, "drop"))]:
            report(f"{label} does not drop ALL capabilities (securityContext.capabilities.drop); PSS restricted "
                   f"requires it (AVD-KSV-0003)")


capabilities = resource_policy(
    "pss-capabilities",
    "Containers drop ALL capabilities and add none beyond NET_BIND_SERVICE; the one exception is IPC_LOCK on an "
    "EFA engine (requests vpc.amazonaws.com/efa) (PSS:restricted/capabilities; Checkov CKV_K8S_25; Trivy "
    "AVD-KSV-0003, AVD-KSV-0022).",
    _capabilities, types=WORKLOAD_TYPES)


def _escalation(r: Res, cfg: dict, report) -> None:
    for role, spec, c, path in _containers(r, report):
        label = f"{workload_label(r)} container '{c.get('name')}'"
        where = unknown_in(c, ("securityContext", "allowPrivilegeEscalation"), path)
        if where:
            report.unjudged(label, where)
        elif get(c, "securityContext", "allowPrivilegeEscalation") is not False:
            # Unset means true for a process that can gain privileges (setuid): PSS restricted requires false.
            report(f"{label} does not set securityContext.allowPrivilegeEscalation: false (PSS restricted; CKV_K8S_20, "
                   f"AVD-KSV-0001)")


escalation = resource_policy(
    "pss-privilege-escalation",
    "Every container sets allowPrivilegeEscalation: false (PSS:restricted/privilege-escalation; Checkov CKV_K8S_20; "
    "Trivy AVD-KSV-0001).",
    _escalation, types=WORKLOAD_TYPES)


def _run_as(sc: Any, key: str) -> Any:
    return sc.get(key) if isinstance(sc, dict) else None


def _non_root(r: Res, cfg: dict, report) -> None:
    if not _guard(r, report):
        return
    for role, spec, _, ppath in pod_templates(r):
        pod_sc = spec.get("securityContext")
        if pod_sc is UNKNOWN:
            report.unjudged(workload_label(r), ".".join(ppath) + ".securityContext")
            continue
        for key in ("containers", "initContainers"):
            for i, c in enumerate(as_list(spec.get(key))):
                if not isinstance(c, dict):
                    continue
                path = ".".join(ppath) + f".{key}[{i}]"
                label = f"{workload_label(r)} container '{c.get('name')}'"
                sc = c.get("securityContext")
                if sc is UNKNOWN or first_unknown({k: _run_as(sc, k) for k in ("runAsNonRoot", "runAsUser")}) \
                        or first_unknown({k: _run_as(pod_sc, k) for k in ("runAsNonRoot", "runAsUser")}):
                    report.unjudged(label, f"{path}.securityContext")
                    continue
                # A container's own setting wins over the pod's (core/v1 SecurityContext).
                non_root = _run_as(sc, "runAsNonRoot") if _run_as(sc, "runAsNonRoot") is not None else _run_as(pod_sc, "runAsNonRoot")
                user = _run_as(sc, "runAsUser") if _run_as(sc, "runAsUser") is not None else _run_as(pod_sc, "runAsUser")
                if _efa_engine(c) and num(user) == 0:
                    continue  # the EFA exception (module docstring)
                if num(user) == 0:
                    report(f"{label} runs as uid 0 (runAsUser 0); PSS restricted forbids root (CKV_K8S_23, AVD-KSV-0012)")
                elif non_root is not True:
                    report(f"{label} may run as root: neither it nor its pod sets runAsNonRoot: true (PSS restricted; "
                           f"CKV_K8S_23, AVD-KSV-0012)")


non_root = resource_policy(
    "pss-run-as-non-root",
    "Containers run as non-root: runAsNonRoot true and runAsUser not 0 (pod or container); the EFA engine of a "
    "multi-node group is the one exception (PSS:restricted/running-as-non-root; Checkov CKV_K8S_23; Trivy "
    "AVD-KSV-0012).",
    _non_root, types=WORKLOAD_TYPES)

ADMIN_ROLES = ("cluster-admin", "admin", "edit")


def _wildcard_cluster_roles(resources: list[Res]) -> set[str]:
    out = set()
    for cr in of_type(resources, CLUSTER_ROLE):
        for rule in as_list(cr.get("rules")):
            if isinstance(rule, dict) and "*" in as_list(rule.get("verbs")) and "*" in as_list(rule.get("resources")):
                name = cr.get("metadata", "name")
                if isinstance(name, str):
                    out.add(name)
    return out


def _service_accounts_of_workloads(resources: list[Res]) -> dict[tuple[str, str], str]:
    """(namespace, service account) -> the workload that runs as it."""
    out = {}
    for w in resources:
        if w.type not in WORKLOAD_TYPES:
            continue
        ns = w.get("metadata", "namespace", default="default")
        for _, spec, _, _ in pod_templates(w):
            sa = spec.get("serviceAccountName") or "default" if isinstance(spec, dict) else None
            if isinstance(sa, str) and isinstance(ns, str):
                out.setdefault((ns, sa), workload_label(w))
    return out


def _cluster_admin(resources: list[Res], cfg: dict, report) -> None:
    powerful = set(ADMIN_ROLES) | _wildcard_cluster_roles(resources)
    used_by = _service_accounts_of_workloads(resources)
    for b in of_type(resources, ROLE_BINDING, CLUSTER_ROLE_BINDING):
        name = b.get("metadata", "name", default=b.name)
        ref, subjects = b.get("roleRef"), b.get("subjects")
        if ref is UNKNOWN or subjects is UNKNOWN or first_unknown(ref) or first_unknown(subjects):
            report.unjudged(f"{b.type.rsplit(':', 1)[-1]} '{name}'", "roleRef" if ref is UNKNOWN or first_unknown(ref) else "subjects",
                            b.urn)
            continue
        if not isinstance(ref, dict) or ref.get("kind") != "ClusterRole" or ref.get("name") not in powerful:
            continue
        for s in as_list(subjects):
            if not isinstance(s, dict) or s.get("kind") != "ServiceAccount":
                continue
            ns = s.get("namespace") or b.get("metadata", "namespace", default="default")
            who = used_by.get((ns, s.get("name"))) if isinstance(ns, str) and isinstance(s.get("name"), str) else None
            report(f"{b.type.rsplit(':', 1)[-1]} '{name}' gives service account {ns}/{s.get('name')}"
                   f"{' (used by ' + who + ')' if who else ''} the ClusterRole {ref.get('name')}; a compromised pod "
                   f"would own the cluster (AVD-KSV-0111)", b.urn)


cluster_admin = stack_policy(
    "rbac-no-admin-for-workloads",
    "No service account (serving, router or any workload account) is bound to cluster-admin, admin, edit or a "
    "ClusterRole with * verbs on * resources (Trivy AVD-KSV-0111).",
    _cluster_admin, types=[ROLE_BINDING, CLUSTER_ROLE_BINDING])


def _namespaces(resources: list[Res], cfg: dict, report) -> None:
    allowed = set(cfg.get("allowedPrivileged", []))
    serving_ns = {ns for w in resources if w.type in WORKLOAD_TYPES and is_serving_workload(w)
                  and isinstance(ns := w.get("metadata", "namespace", default="default"), str)}
    for ns in of_type(resources, NAMESPACE):
        name = ns.get("metadata", "name", default=ns.name)
        labels = ns.get("metadata", "labels", default={})
        if labels is UNKNOWN or (isinstance(labels, dict) and labels.get(ENFORCE) is UNKNOWN):
            report.unjudged(f"namespace '{name}'", f"metadata.labels" + (f".{ENFORCE}" if labels is not UNKNOWN else ""),
                            ns.urn)
            continue
        level = labels.get(ENFORCE) if isinstance(labels, dict) else None
        if level != "privileged":
            continue
        if name is UNKNOWN:
            report.unjudged(f"privileged namespace '{ns.name}'", "metadata.name", ns.urn)
            continue
        name = name if isinstance(name, str) else ns.name
        if name in serving_ns:
            report(f"namespace '{name}' runs model workloads and is labelled {ENFORCE}=privileged: any pod there may "
                   f"run privileged; serving namespaces enforce baseline or restricted", ns.urn)
        elif name not in allowed:
            report(f"namespace '{name}' is labelled {ENFORCE}=privileged, which admits privileged, host-namespace and "
                   f"hostPath pods; only the node-agent namespaces named in the policy config may be "
                   f"({', '.join(sorted(allowed)) or 'none'})", ns.urn)


namespaces = stack_policy(
    "pss-namespace-not-privileged",
    "No namespace is labelled pod-security.kubernetes.io/enforce=privileged, except the node-agent namespaces the "
    "policy config names (allowedPrivileged, e.g. the DCGM exporter's), and never one that runs model workloads "
    "(PSS:privileged/namespace-label).",
    _namespaces, types=[NAMESPACE],
    schema={"allowedPrivileged": {"type": "array", "items": {"type": "string"}, "default": []}})

POLICIES = [host_namespaces, host_path, capabilities, escalation, non_root, cluster_admin, namespaces]
