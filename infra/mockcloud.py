"""Runs the real Pulumi program under the SDK's mock engine and records it.

Used by the offline preview and by the tests. The mocks answer like AWS
would (ids, ARNs, zones, AMI parameters, caller identity); an invoke the
program makes that is not answered here fails loudly, so a new data source
cannot silently return nothing.

First-deploy mode (`first_deploy=True`) answers as a real first `pulumi
preview` does, where nothing exists yet: a resource's inputs come back known
(the engine's preview of a create returns the checked inputs: pulumi/pulumi
pkg/resource/deploy/step.go CreateStep.Apply with preview, and the bridged
providers plan the create with computed attributes unknown,
pulumi/pulumi-terraform-bridge pkg/tfbridge/provider.go Create with
`preview`), its id is unknown (the SDK resolves an empty id as unknown in a
dry run: sdk/python/lib/pulumi/runtime/resource.py `is_known = bool(resp.id)`),
and every provider-computed output (ARN, endpoint, DNS name, the security
groups AWS creates, a remote component's outputs) is the engine's UNKNOWN
sentinel, which the SDK turns into an unknown Output
(sdk/python/lib/pulumi/runtime/rpc.py deserialize_property). Names the
provider assigns at Check (auto-names) are known in a real preview and stay
known here. Invokes still answer: a first preview runs data sources too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import runpy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import pulumi
import pulumi.runtime
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime import stack as pulumi_stack
from pulumi.runtime.proto import source_pb2

ACCOUNT_ID = "123456789012"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SIG_KEY = "4dabf18193072939515e22adb298388d"


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


# Prefixes AWS uses for physical ids, by resource type.
_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt",
    "aws:ec2/placementGroup:PlacementGroup": "pg",
    "aws:ec2/flowLog:FlowLog": "fl",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr",
}

# Resources whose physical id is their (auto-)name.
_NAMED = {
    "aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2", "aws:iam/role:Role", "aws:iam/policy:Policy",
    "aws:eks/cluster:Cluster", "aws:ecs/cluster:Cluster", "aws:cloudwatch/logGroup:LogGroup",
    "aws:sqs/queue:Queue", "aws:cloudwatch/eventRule:EventRule", "aws:budgets/budget:Budget",
    "aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup", "aws:iam/instanceProfile:InstanceProfile",
}


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: Optional[str]
    custom: bool
    protect: bool
    provider: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    delete_before_replace: bool
    ignore_changes: list[str]
    # Inputs exactly as the engine received them (protobuf Struct as a dict).
    inputs: dict[str, Any]
    # `custom_timeouts` as sent (create/update/delete Go durations such as "45m"); empty when unset.
    custom_timeouts: dict[str, str] = field(default_factory=dict)

    @property
    def all_dependencies(self) -> list[str]:
        """Every URN this resource's registration waited for: explicit and property dependencies."""
        urns = set(self.dependencies)
        for deps in self.property_dependencies.values():
            urns.update(deps)
        return sorted(urns)

    @property
    def provider_urn(self) -> Optional[str]:
        """The explicit provider's URN (the reference is `urn::id`); None for default providers."""
        return self.provider.rsplit("::", 1)[0] if self.provider else None


class CloudMocks(pulumi.runtime.Mocks):
    """Answers resource creation and invokes like AWS in one region would.

    `first_deploy`: answer as a first `pulumi preview` does (module docstring):
    inputs known, ids and provider-computed outputs unknown.
    """

    def __init__(self, region: str, account_id: str = ACCOUNT_ID, *, first_deploy: bool = False):
        self.region = region
        self.account_id = account_id
        self.first_deploy = first_deploy

    # --- resources -------------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        physical, outputs = self._new_resource(args)
        if not self.first_deploy or not args.custom and args.typ != "eks:index:Cluster":
            return physical, outputs
        return self._as_first_preview(args, physical, outputs)

    def _as_first_preview(self, args: pulumi.runtime.MockResourceArgs, physical: str, outputs: dict) -> tuple[str, dict]:
        """What a first preview returns for a resource the known mocks answered with `outputs`."""
        if args.typ == "eks:index:Cluster":
            # A remote component's outputs come from its children, none of which exists yet.
            return "", {k: UNKNOWN for k in outputs}
        inputs = dict(args.inputs)
        known = {k: v for k, v in outputs.items() if k in inputs and _same(inputs[k], v)}
        if args.typ in _NAMED and "name" in outputs and "name" not in inputs:
            # pulumi-aws assigns an auto-name in Check, before the preview shows the resource.
            known["name"] = outputs["name"]
        computed = {k: UNKNOWN for k in outputs if k not in known}
        return "", {**computed, **known}

    def _new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        if typ == "eks:index:Cluster":
            return f"{name}-component", self._eks_cluster(name, inputs)
        if not args.custom:
            return f"{name}-component", {}
        h = _digest(typ, name)
        if typ in _ID_PREFIX:
            physical = f"{_ID_PREFIX[typ]}-{h}"
        elif typ in _NAMED or "name" in inputs or "bucket" in inputs:
            # A name that is itself unknown (first deploy) is not text: fall back to the auto-name.
            given = [v for v in (inputs.get("bucket"), inputs.get("name")) if isinstance(v, str) and v]
            physical = given[0] if given else f"{name}-{h[:7]}"
        else:
            physical = f"{name}-{h[:12]}"
        outputs = dict(inputs)
        outputs.setdefault("arn", self._arn(typ, physical))
        if "name" not in outputs and typ in _NAMED:
            outputs["name"] = physical
        outputs.update(self._extra_outputs(typ, physical, inputs))
        return physical, outputs

    def _arn(self, typ: str, physical: str) -> str:
        service = typ.split(":")[1].split("/")[0] if ":" in typ else "unknown"
        kind = typ.rsplit(":", 1)[-1]
        here = f"{self.region}:{self.account_id}"
        suffix = _digest(physical, length=16)
        # The ARN shapes AWS documents for the services whose ARNs the program passes on.
        special = {
            "aws:lb/loadBalancer:LoadBalancer": f"arn:aws:elasticloadbalancing:{here}:loadbalancer/app/{physical}/{suffix}",
            "aws:lb/targetGroup:TargetGroup": f"arn:aws:elasticloadbalancing:{here}:targetgroup/{physical}/{suffix}",
            "aws:lb/listener:Listener": f"arn:aws:elasticloadbalancing:{here}:listener/app/{physical}/{suffix}/{suffix[:8]}",
            "aws:lb/listenerRule:ListenerRule":
                f"arn:aws:elasticloadbalancing:{here}:listener-rule/app/{physical}/{suffix}/{suffix[:8]}/{suffix[8:]}",
            "aws:iam/instanceProfile:InstanceProfile": f"arn:aws:iam::{self.account_id}:instance-profile/{physical}",
            "aws:secretsmanager/secret:Secret": f"arn:aws:secretsmanager:{here}:secret:{physical}-{suffix[:6]}",
            "aws:wafv2/webAcl:WebAcl": f"arn:aws:wafv2:{here}:regional/webacl/{physical}/{suffix}",
            "aws:ecs/cluster:Cluster": f"arn:aws:ecs:{here}:cluster/{physical}",
            "aws:ecs/taskDefinition:TaskDefinition": f"arn:aws:ecs:{here}:task-definition/{physical}:1",
            "aws:cloudwatch/logGroup:LogGroup": f"arn:aws:logs:{here}:log-group:{physical}",
            "aws:cloudwatch/eventRule:EventRule": f"arn:aws:events:{here}:rule/{physical}",
            "aws:budgets/budget:Budget": f"arn:aws:budgets::{self.account_id}:budget/{physical}",
        }
        if typ in special:
            return special[typ]
        if typ.startswith("aws:s3/"):
            return f"arn:aws:s3:::{physical}"
        if typ.startswith("aws:iam/"):
            return f"arn:aws:iam::{self.account_id}:{kind[0].lower() + kind[1:]}/{physical}"
        return f"arn:aws:{service}:{here}:{kind.lower()}/{physical}"

    def _extra_outputs(self, typ: str, physical: str, inputs: dict) -> dict:
        if typ == "aws:ec2/vpc:Vpc":
            return {"defaultSecurityGroupId": f"sg-{_digest(physical, 'default')}",
                    "mainRouteTableId": f"rtb-{_digest(physical, 'main')}", "ownerId": self.account_id}
        if typ == "aws:ec2/eip:Eip":
            n = int(_digest(physical, length=4), 16)
            return {"publicIp": f"203.0.113.{n % 254 + 1}", "allocationId": physical}
        if typ == "aws:sqs/queue:Queue":
            return {"url": f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{physical}",
                    "arn": f"arn:aws:sqs:{self.region}:{self.account_id}:{physical}"}
        if typ == "aws:kms/key:Key":
            return {"keyId": physical, "arn": f"arn:aws:kms:{self.region}:{self.account_id}:key/{physical}"}
        if typ == "aws:eks/cluster:Cluster":
            return {"endpoint": f"https://{_digest(physical, length=32).upper()}.gr7.{self.region}.eks.amazonaws.com",
                    "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1PQ0sKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="},
                    "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/{_digest(physical, length=32).upper()}"}]}],
                    "status": "ACTIVE", "platformVersion": "eks.1"}
        if typ == "aws:ec2/launchTemplate:LaunchTemplate":
            return {"latestVersion": 1, "defaultVersion": 1}
        if typ == "aws:lb/loadBalancer:LoadBalancer":
            return {"dnsName": f"{physical}-{_digest(physical, length=10)}.{self.region}.elb.amazonaws.com",
                    "zoneId": "Z35SXDOTRQ7X7K", "arnSuffix": f"app/{physical}/{_digest(physical, length=16)}"}
        if typ == "aws:lb/targetGroup:TargetGroup":
            return {"arnSuffix": f"targetgroup/{physical}/{_digest(physical, length=16)}"}
        return {}

    def _eks_cluster(self, name: str, inputs: dict) -> dict:
        """Outputs of the pulumi-eks remote component (pulumi-eks 4.4.0 output names)."""
        given = inputs.get("name")
        cluster = given if isinstance(given, str) and given else f"{name}-{_digest(name, length=7)}"
        h = _digest(cluster, length=32).upper()
        endpoint = f"https://{h}.gr7.{self.region}.eks.amazonaws.com"
        ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1PQ0sKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "current-context": "aws",
            "clusters": [{"name": "kubernetes", "cluster": {"server": endpoint, "certificate-authority-data": ca}}],
            "contexts": [{"name": "aws", "context": {"cluster": "kubernetes", "user": "aws"}}],
            "users": [{"name": "aws", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
                "args": ["eks", "get-token", "--cluster-name", cluster, "--output", "json"]}}}],
        }
        sg = f"sg-{_digest(cluster, 'cluster-sg')}"
        return {
            "kubeconfig": kubeconfig,
            "kubeconfigJson": json.dumps(kubeconfig),
            # `eksCluster` is a resource reference (aws.eks.Cluster) that the SDK
            # rehydrates into a resource object; a mock cannot return one, so it
            # stays absent and programs take the name from their own input.
            "clusterSecurityGroupId": sg,
            "nodeSecurityGroupId": sg,
            "oidcProviderArn": "", "oidcIssuer": "", "oidcProviderUrl": "",
        }

    # --- invokes -------------------------------------------------------------
    def call(self, args: pulumi.runtime.MockCallArgs):
        handler = self._invokes().get(args.token)
        if handler is None:
            raise UnmockedInvokeError(
                f"the program called invoke {args.token!r}, which the offline mock engine does not answer; "
                f"add an answer in infra/mockcloud.py (CloudMocks._invokes) that matches what AWS returns")
        return handler(dict(args.args)), []

    def _invokes(self) -> dict[str, Callable[[dict], dict]]:
        return {
            "aws:index/getAvailabilityZones:getAvailabilityZones": self._zones,
            "aws:index/getCallerIdentity:getCallerIdentity": lambda a: {
                "accountId": self.account_id, "arn": f"arn:aws:iam::{self.account_id}:user/preview",
                "userId": "AIDAPREVIEW", "id": self.account_id},
            "aws:index/getRegion:getRegion": lambda a: {"name": self.region, "region": self.region, "id": self.region,
                                                         "endpoint": f"ec2.{self.region}.amazonaws.com"},
            "aws:index/getPartition:getPartition": lambda a: {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"},
            "aws:ssm/getParameter:getParameter": self._ssm_parameter,
        }

    def _zones(self, args: dict) -> dict:
        letters = "abcdef"
        return {"names": [f"{self.region}{x}" for x in letters],
                "zoneIds": [f"use1-az{i + 1}" for i in range(len(letters))], "id": self.region}

    def _ssm_parameter(self, args: dict) -> dict:
        name = args.get("name", "")
        if not name.startswith("/aws/service/"):
            raise UnmockedInvokeError(f"SSM parameter {name!r} is not a public AWS service parameter the mocks know")
        return {"name": name, "value": f"ami-{_digest(name)}", "type": "String", "version": 1,
                "arn": f"arn:aws:ssm:{self.region}::parameter{name}", "id": name, "insecureValue": f"ami-{_digest(name)}",
                "withDecryption": True}


class UnmockedInvokeError(Exception):
    pass


def _same(a: Any, b: Any) -> bool:
    try:
        return a == b
    except Exception:  # noqa: BLE001 - resource references and other SDK objects compare loosely
        return a is b


def _custom_timeouts(request: Any) -> dict[str, str]:
    """RegisterResourceRequest.customTimeouts as {op: duration}; the engine parses each with Go's
    time.ParseDuration (pulumi/pulumi pkg/resource/deploy/source_eval.go generateTimeoutInSeconds)."""
    if not request.HasField("customTimeouts"):
        return {}
    ct = request.customTimeouts
    return {op: getattr(ct, op) for op in ("create", "update", "delete") if getattr(ct, op)}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, keeping what the engine would see of each resource."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.stack_outputs: dict[str, Any] = {}
        self._stack_urn: Optional[str] = None

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            self._stack_urn = response.urn
            return response
        self.registrations.append(Registration(
            urn=response.urn, type=request.type, name=request.name, parent=request.parent or None,
            custom=bool(request.custom), protect=bool(request.protect) if request.HasField("protect") else False,
            provider=request.provider, dependencies=list(request.dependencies),
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
            delete_before_replace=bool(request.deleteBeforeReplace),
            ignore_changes=list(request.ignoreChanges),
            inputs=json_format.MessageToDict(request.object),
            custom_timeouts=_custom_timeouts(request),
        ))
        return response

    def RegisterResourceOutputs(self, request):
        if request.urn == self._stack_urn:
            self.stack_outputs = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)


@dataclass
class ProgramRun:
    project: str
    stack: str
    registrations: list[Registration]
    outputs: dict[str, Any] = field(default_factory=dict)


def run_program(main: str, *, project: str, stack: str, config: dict[str, str], secret_keys: list[str],
                region: str, first_deploy: bool = False) -> ProgramRun:
    """Runs `main` (a folder or file) the way the CLI does, under mocks.

    The CLI runs the `main:` of Pulumi.yaml with runpy as `__main__`; here the
    mock engine stands in for the deployment engine. `first_deploy`: computed
    outputs are unknown, as in a first `pulumi preview` (CloudMocks).
    """
    return run_callable(lambda: runpy.run_path(main, run_name="__main__"), project=project, stack=stack,
                        config=config, secret_keys=secret_keys, region=region, first_deploy=first_deploy)


@contextlib.contextmanager
def _without_stack_traces() -> Iterator[None]:
    """Performance only: the SDK captures the Python stack for every resource it registers
    (pulumi/runtime/resource.py `_get_stack_trace`, sent as RegisterResourceRequest
    stackTrace/sourcePosition for the CLI's diagnostics), about a fifth of a run's CPU here. The
    mock engine records neither, so it gets the empty trace the SDK itself sends when it finds no
    user frame. Restored after the run; skipped if the pinned SDK has no such function."""
    original = getattr(pulumi_resource, "_get_stack_trace", None)
    if original is None:
        yield
        return
    pulumi_resource._get_stack_trace = source_pb2.StackTrace
    try:
        yield
    finally:
        pulumi_resource._get_stack_trace = original


def run_callable(program: Callable[[], Any], *, project: str = "llmserving", stack: str = "test",
                 config: Optional[dict[str, str]] = None, secret_keys: Optional[list[str]] = None,
                 region: str = "us-east-1", first_deploy: bool = False) -> ProgramRun:
    """Runs any Pulumi program function under the mock engine (components in unit tests)."""
    with _without_stack_traces():
        return _run_callable(program, project=project, stack=stack, config=config, secret_keys=secret_keys,
                             region=region, first_deploy=first_deploy)


def _run_callable(program: Callable[[], Any], *, project: str, stack: str, config: Optional[dict[str, str]],
                  secret_keys: Optional[list[str]], region: str, first_deploy: bool) -> ProgramRun:
    mocks = CloudMocks(region, first_deploy=first_deploy)
    monitor = RecordingMonitor(mocks)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # Config must be in place before the root stack exists.
    pulumi.runtime.set_all_config(dict(config or {}), list(secret_keys or []))
    # A fresh root stack per run: set_mocks keeps an existing one, which would carry
    # the previous run's stack name into parent URNs and its exports into this run.
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=True, monitor=monitor)
    root = pulumi_stack.get_root_resource()
    try:
        loop.run_until_complete(pulumi_stack.run_pulumi_func(program))
        outputs = loop.run_until_complete(_stack_exports(root))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return ProgramRun(project=project, stack=stack, registrations=list(monitor.registrations), outputs=outputs)


async def _stack_exports(root: Any) -> dict[str, Any]:
    """Resolves what the program passed to `pulumi.export`."""
    exports = getattr(root, "outputs", {}) or {}
    resolved = {}
    for key in sorted(exports):
        out = pulumi.Output.from_input(exports[key])
        # A secret export stays masked, as `pulumi stack output` shows it.
        resolved[key] = "[secret]" if await out.is_secret() else await out.future()
    return resolved


def plain(value: Any, *, reveal_secrets: bool = False) -> Any:
    """Engine property values as plain JSON: secrets masked (or revealed, for
    schema checks of placeholder values), resource refs as URNs, 4.0 as 4."""
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            return plain(value.get("value"), reveal_secrets=True) if reveal_secrets else "[secret]"
        if sig == RESOURCE_SIG:
            return value.get("urn")
        return {k: plain(v, reveal_secrets=reveal_secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, reveal_secrets=reveal_secrets) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value == UNKNOWN:
        return "[unknown]"
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


