"""ModelRouter: the model-aware router in front of the vLLM engines.

One endpoint for every model: the router (vLLM production-stack router)
reads the OpenAI request's `"model"` field, which an ALB listener rule
cannot (rules match host, path, headers and query strings, never the JSON
body), discovers the engines (pods matching `engine_selector`) and the
models each serves, LoRA adapters included, through the Kubernetes API and
`/v1/models`, and forwards the request.

Objects: ServiceAccount, Role (read pods) and RoleBinding, a Deployment
spread across zones, a ClusterIP Service (the load balancer's
TargetGroupBinding target), a PodDisruptionBudget and a NetworkPolicy that
admits only the load balancer's subnets (ALB IP targets: the ALB's nodes
connect from addresses in its own subnets) and the Prometheus namespace,
never the whole VPC.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from components.errors import ArgsError, out_of_range
from components.helm_chart import DNS_LABEL
from components.vllm_workload import create_object

ROUTING_LOGICS = ("roundrobin", "session")
# The router image (lmcache/lmstack-router, built from vllm-project/production-stack
# docker/Dockerfile at vllm-stack-0.1.11): python:3.12-slim, no USER (root), the package in
# the virtualenv /opt/venv, ENTRYPOINT /opt/venv/bin/vllm-router. It writes only /tmp (batch
# API files, off by default: src/vllm_router/parsers/parser.py --file-storage-path).
ROUTER_PYTHON = "/opt/venv/bin/python"
SCRATCH_DIR = "/tmp"


def router_launcher(keepalive_seconds: int) -> str:
    """Python that starts the router with a longer uvicorn keep-alive.

    vllm_router.app.main (vllm-stack-0.1.11) calls uvicorn.run(app, host, port, log_level,
    root_path) with no keep-alive option and no CLI flag for it, so uvicorn's default of 5 s
    applies (and uvicorn reads UVICORN_* variables only from its own CLI). main() looks
    uvicorn.run up when it calls it, so binding the keyword first reaches the server.
    """
    return "\n".join([
        "import functools, sys",
        "import uvicorn",
        f"uvicorn.run = functools.partial(uvicorn.run, timeout_keep_alive={int(keepalive_seconds)})",
        "from vllm_router.app import main",
        "sys.argv[0] = 'vllm-router'",
        "sys.exit(main())",
    ])


@dataclass(frozen=True)
class RouterResources:
    cpu: str = "500m"
    memory: str = "1Gi"
    memory_limit: str = "2Gi"


@dataclass(frozen=True)
class ModelRouterArgs:
    namespace: str
    image: str
    port: int
    replicas: int
    # Pod labels of the router (its Service and NetworkPolicy select on them).
    labels: dict[str, str]
    # Label selector of the engine pods, e.g. llmserving.io/serves=true.
    engine_selector: str
    # CIDRs of the load balancer's subnets; the only addresses outside the cluster that reach the router.
    load_balancer_cidrs: tuple[str, ...]
    prometheus_namespace: Optional[str] = None
    api_key_secret: Optional[str] = None
    routing_logic: str = "roundrobin"
    resources: RouterResources = field(default_factory=RouterResources)
    # Resources the objects wait for (the namespace, the API key Secret, the system nodes).
    depends_on: tuple[pulumi.Resource, ...] = ()
    # Non-root identity: the router image has no USER (ROUTER_IMAGE_NOTE).
    run_as_user: int = 1000
    fs_group: int = 1000
    scratch_mib: int = 256
    # HTTP keep-alive of the router's uvicorn server; 0 keeps uvicorn's default (5 s).
    keepalive_seconds: int = 0
    # Re-list engine pods every N seconds (0: watch forever), so models registered after a pod
    # turned ready (runtime LoRA adapters) reach the routing table.
    resync_seconds: int = 0


def validate_model_router_args(args: ModelRouterArgs) -> None:
    """Raises ArgsError naming every problem; pure (no resources)."""
    p: list[str] = []
    if not DNS_LABEL.match(args.namespace):
        p.append(f"namespace: got {args.namespace!r}; must be a DNS label")
    if not args.image or ":" not in args.image.rsplit("/", 1)[-1] or args.image.endswith(":latest"):
        p.append(f"image: got {args.image!r}; pin a tag such as lmcache/lmstack-router:v0.1.11 (never :latest)")
    p += out_of_range("port", args.port, 1, 65535)
    if args.replicas < 1:
        p.append(f"replicas: got {args.replicas}; the single endpoint needs at least 1 router replica")
    if not args.labels:
        p.append("labels: empty; the Service, PodDisruptionBudget and NetworkPolicy select the router pods by them "
                 "(an empty selector matches every pod)")
    if "=" not in args.engine_selector:
        p.append(f"engine_selector: got {args.engine_selector!r}; a label selector such as llmserving.io/serves=true")
    if not args.load_balancer_cidrs:
        p.append("load_balancer_cidrs: got (); list the load balancer's subnet CIDRs (its IP targets connect from them)")
    for cidr in args.load_balancer_cidrs:
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            p.append(f"load_balancer_cidrs: got {cidr!r}; must be a network CIDR such as 10.40.240.0/20")
            continue
        if net.prefixlen < 16:
            p.append(f"load_balancer_cidrs: got {cidr!r}; wider than /16 admits far more than the load balancer's "
                     f"subnets")
    if args.prometheus_namespace is not None and not DNS_LABEL.match(args.prometheus_namespace):
        p.append(f"prometheus_namespace: got {args.prometheus_namespace!r}; must be a DNS label")
    if args.run_as_user < 1 or args.fs_group < 1:
        p.append(f"run_as_user/fs_group: got {args.run_as_user}/{args.fs_group}; non-root ids are >= 1")
    if args.keepalive_seconds < 0 or args.resync_seconds < 0:
        p.append(f"keepalive_seconds/resync_seconds: got {args.keepalive_seconds}/{args.resync_seconds}; must be >= 0")
    if args.routing_logic not in ROUTING_LOGICS:
        p.append(f"routing_logic: got {args.routing_logic!r}; allowed: {', '.join(ROUTING_LOGICS)}")
    if p:
        raise ArgsError("ModelRouter", p)


def render(name: str, args: ModelRouterArgs) -> list[dict]:
    """Every router object as a plain dict (pure; validated by tests)."""
    validate_model_router_args(args)
    labels = dict(args.labels)
    meta = {"name": name, "namespace": args.namespace, "labels": labels}
    port = args.port
    key, value = args.engine_selector.split("=", 1)
    cli = ["--host", "0.0.0.0", "--port", str(port), "--service-discovery", "k8s", "--k8s-namespace", args.namespace,
           "--k8s-label-selector", f"{key}={value}", "--k8s-port", str(port), "--routing-logic", args.routing_logic]
    if args.resync_seconds:
        cli += ["--k8s-watcher-timeout-seconds", str(args.resync_seconds)]
    env: list[dict] = [{"name": "HOME", "value": SCRATCH_DIR}]
    if args.api_key_secret:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": args.api_key_secret, "key": "api-key"}}})
    # Behind the load balancer the keep-alive must outlast the ALB's idle timeout (router_launcher).
    command = ({"command": [ROUTER_PYTHON, "-c", router_launcher(args.keepalive_seconds)], "args": cli}
               if args.keepalive_seconds else {"args": cli})
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    r = args.resources
    peers: list[dict] = [{"ipBlock": {"cidr": cidr}} for cidr in args.load_balancer_cidrs]
    if args.prometheus_namespace:
        peers.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": args.prometheus_namespace}}})
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta), "automountServiceAccountToken": True},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": dict(meta),
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(meta),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": args.namespace}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dict(meta),
         "spec": {"replicas": args.replicas,
                  "selector": {"matchLabels": dict(labels)},
                  "template": {"metadata": {"labels": dict(labels)}, "spec": {
                      "serviceAccountName": name,
                      "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                                     "whenUnsatisfiable": "ScheduleAnyway",
                                                     "labelSelector": {"matchLabels": dict(labels)}}],
                      # runAsNonRoot needs a numeric runAsUser for an image whose user is root, or the
                      # kubelet refuses to start it (CreateContainerConfigError).
                      "securityContext": {"runAsNonRoot": True, "runAsUser": args.run_as_user,
                                          "runAsGroup": args.fs_group, "fsGroup": args.fs_group,
                                          "seccompProfile": {"type": "RuntimeDefault"}},
                      "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": f"{args.scratch_mib}Mi"}}],
                      "containers": [{"name": "router", "image": args.image, "env": env, **command,
                                      "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_DIR}],
                                      "ports": [{"name": "http", "containerPort": port}],
                                      "readinessProbe": {**probe, "periodSeconds": 5},
                                      "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4},
                                      "resources": {"requests": {"cpu": r.cpu, "memory": r.memory},
                                                    "limits": {"memory": r.memory_limit}},
                                      "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                                          "readOnlyRootFilesystem": True,
                                                          "capabilities": {"drop": ["ALL"]}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": dict(meta),
         "spec": {"type": "ClusterIP", "selector": dict(labels),
                  "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": dict(meta),
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(labels)}}},
        # Only the load balancer's subnets (IP targets) and Prometheus reach the router.
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": dict(meta),
         "spec": {"podSelector": {"matchLabels": dict(labels)}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": port}]}]}},
    ]


class ModelRouter(pulumi.ComponentResource):
    service_name: str
    service: pulumi.Resource
    port: int

    def __init__(self, name: str, args: ModelRouterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        objs = render(name, args)  # validates before anything exists
        super().__init__("llmserving:model_router:ModelRouter", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.resources = {o["kind"]: create_object(f"{name}-{o['kind'].lower()}", o, child) for o in objs}
        self.service_name = name
        self.service = self.resources["Service"]
        self.port = args.port
        self.register_outputs({"service": name, "port": args.port, "namespace": args.namespace})
