"""Drives a CrossGuard policy pack over its Analyzer gRPC interface, as the CLI does.

The pack runs as `python __main__.py` in its folder; it prints the port of
its Analyzer server and blocks. The CLI then calls GetAnalyzerInfo,
Configure (with the policy config, schema defaults applied and validated
by the CLI, not the SDK), ConfigureStack, Analyze for each resource and
AnalyzeStack at the end. This module does the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import grpc
import jsonschema
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from infra.mockcloud import Registration

_LEVELS = {
    "advisory": analyzer_pb2.ADVISORY,
    "mandatory": analyzer_pb2.MANDATORY,
    "disabled": analyzer_pb2.DISABLED,
    "remediate": analyzer_pb2.REMEDIATE,
}
_LEVEL_NAMES = {v: k for k, v in _LEVELS.items()}


class PolicyConfigError(Exception):
    """The policy config file does not match the pack's config schema."""


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    urn: Optional[str]
    message: str

    def as_dict(self) -> dict:
        return {"policy": self.policy, "level": self.level, "urn": self.urn, "message": self.message}


class PolicyPackProcess:
    """A running policy pack and a client for its Analyzer server."""

    def __init__(self, pack_dir: Path, *, python: str = sys.executable, startup_timeout: float = 60.0,
                 env: Optional[dict[str, str]] = None):
        self.pack_dir = Path(pack_dir)
        self._proc = subprocess.Popen(
            [python, "__main__.py"], cwd=self.pack_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, env=env if env is not None else dict(os.environ))
        self._stderr: list[bytes] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        port = self._read_port(startup_timeout)
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}",
                                              options=[("grpc.max_receive_message_length", 400 * 1024 * 1024),
                                                       ("grpc.max_send_message_length", 400 * 1024 * 1024)])
        grpc.channel_ready_future(self._channel).result(timeout=startup_timeout)
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self._channel)

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    def _read_port(self, timeout: float) -> int:
        result: dict[str, Any] = {}

        def read() -> None:
            assert self._proc.stdout is not None
            result["line"] = self._proc.stdout.readline()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        line = result.get("line", b"").strip()
        if not line.isdigit():
            self.close()
            err = b"".join(self._stderr).decode(errors="replace")[-4000:]
            raise RuntimeError(f"policy pack in {self.pack_dir} did not start its Analyzer server "
                               f"(first stdout line {line!r}); stderr:\n{err}")
        return int(line)

    def close(self) -> None:
        if hasattr(self, "_channel"):
            self._channel.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> "PolicyPackProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the calls the CLI makes, in its order ---------------------------------
    def info(self) -> analyzer_pb2.AnalyzerInfo:
        return self.stub.GetAnalyzerInfo(empty_pb2.Empty())

    def plugin_version(self) -> str:
        return self.stub.GetPluginInfo(empty_pb2.Empty()).version

    def configure(self, info: analyzer_pb2.AnalyzerInfo, config: dict[str, Any]) -> dict[str, dict]:
        """Applies a policy config file the way the CLI does; returns the effective config.

        `config` maps a policy name (or "all") to a level string or to an object
        with an optional `enforcementLevel` and properties.
        """
        known = {p.name: p for p in info.policies}
        problems = [f"{name!r}: no such policy in pack {info.name!r}" for name in config if name not in known and name != "all"]
        pack_level = _level_of(config.get("all"))
        effective: dict[str, dict] = {}
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for name, policy in known.items():
            entry = config.get(name)
            level = _level_of(entry) or pack_level or _LEVEL_NAMES[policy.enforcementLevel]
            if level not in _LEVELS:
                problems.append(f"{name}.enforcementLevel: got {level!r}; allowed: {', '.join(_LEVELS)}")
                continue
            schema = json_format.MessageToDict(policy.configSchema) if policy.HasField("configSchema") else {}
            props = {k: v["default"] for k, v in schema.get("properties", {}).items() if "default" in v}
            if isinstance(entry, dict):
                props.update({k: v for k, v in entry.items() if k != "enforcementLevel"})
            full_schema = {"type": "object", "properties": schema.get("properties", {}),
                           "required": schema.get("required", []), "additionalProperties": False}
            for err in sorted(jsonschema.Draft7Validator(full_schema).iter_errors(props), key=lambda e: list(e.path)):
                where = ".".join(str(p) for p in err.path)
                problems.append(f"{name}{'.' + where if where else ''}: {err.message}")
            effective[name] = {"enforcementLevel": level, **props}
            pc = analyzer_pb2.PolicyConfig(enforcementLevel=_LEVELS[level])
            pc.properties.update(props)
            request.policyConfig[name].CopyFrom(pc)
        if problems:
            raise PolicyConfigError("policy config does not match the pack's schema:\n"
                                    + "\n".join(f"  - {p}" for p in problems))
        self.stub.Configure(request)
        return effective

    def configure_stack(self, *, project: str, stack: str, config: dict[str, str], tags: dict[str, str],
                        dry_run: bool = True) -> None:
        req = analyzer_pb2.AnalyzerStackConfigureRequest(stack=stack, project=project, organization="organization",
                                                         dry_run=dry_run)
        for k, v in config.items():
            req.config[k] = v
        for k, v in tags.items():
            req.tags[k] = v
        self.stub.ConfigureStack(req)

    def analyze(self, reg: Registration) -> list[Violation]:
        return _violations(self.stub.Analyze(_analyze_request(reg)), reg.urn)

    def analyze_all(self, regs: Iterable[Registration]) -> list[Violation]:
        """Analyze for each resource, pipelined (the pack serves calls on a thread pool, as under the CLI)."""
        calls = [(reg, self.stub.Analyze.future(_analyze_request(reg))) for reg in regs]
        return [v for reg, call in calls for v in _violations(call.result(), reg.urn)]

    def analyze_stack(self, regs: Iterable[Registration]) -> list[Violation]:
        resources = []
        for reg in regs:
            res = analyzer_pb2.AnalyzerResource(type=reg.type, urn=reg.urn, name=reg.name,
                                                properties=_struct(reg.inputs), options=_options(reg),
                                                parent=reg.parent or "", dependencies=reg.dependencies)
            for key, urns in reg.property_dependencies.items():
                res.propertyDependencies[key].urns.extend(urns)
            resources.append(res)
        return _violations(self.stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources)), None)


def _analyze_request(reg: Registration) -> analyzer_pb2.AnalyzeRequest:
    return analyzer_pb2.AnalyzeRequest(type=reg.type, urn=reg.urn, name=reg.name, properties=_struct(reg.inputs),
                                       options=_options(reg))


def _level_of(entry: Any) -> Optional[str]:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        return entry.get("enforcementLevel")
    return None


def _struct(inputs: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(inputs)
    return s


def _options(reg: Registration) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(protect=reg.protect, ignoreChanges=reg.ignore_changes,
                                                deleteBeforeReplace=reg.delete_before_replace,
                                                parent=reg.parent or "")


def _violations(response: analyzer_pb2.AnalyzeResponse, default_urn: Optional[str]) -> list[Violation]:
    return [Violation(policy=d.policyName, level=_LEVEL_NAMES.get(d.enforcementLevel, "advisory"),
                      urn=d.urn or default_urn, message=d.message)
            for d in response.diagnostics]


def pack_env(project: str, stack: str) -> dict[str, str]:
    """The environment the CLI gives a policy pack process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    # Stack config reaches the pack through ConfigureStack, as from the CLI
    # (an environment variable would overflow with thousands of tenants).
    env.update({"PULUMI_PROJECT": project, "PULUMI_STACK": stack, "PULUMI_DRY_RUN": "true"})
    return env


def start_policy_pack(pack_dir: Path, *, project: str, stack: str, python: str = sys.executable) -> PolicyPackProcess:
    return PolicyPackProcess(pack_dir, python=python, env=pack_env(project, stack))


def run_policy_pack(pack_dir: Path, registrations: list[Registration], *, policy_config: dict[str, Any],
                    project: str, stack: str, stack_config: dict[str, str], stack_tags: dict[str, str],
                    python: str = sys.executable,
                    pack: Optional[PolicyPackProcess] = None) -> tuple[list[Violation], dict[str, dict]]:
    """One full analysis: every resource, then the stack. Returns (violations, effective config).

    `pack`: a process already started with `start_policy_pack` (the preview
    starts it while the program runs); it is closed here either way.
    """
    # URN order: the engine's registration order varies with async scheduling,
    # and stack-level messages list resources in the order they arrive.
    registrations = sorted(registrations, key=lambda r: r.urn)
    with pack or start_policy_pack(pack_dir, project=project, stack=stack, python=python) as pack:
        info = pack.info()
        effective = pack.configure(info, policy_config)
        pack.configure_stack(project=project, stack=stack, config=stack_config, tags=stack_tags)
        violations = pack.analyze_all(registrations) + pack.analyze_stack(registrations)
    violations.sort(key=lambda v: (v.level != "mandatory", v.policy, v.urn or "", v.message))
    return violations, effective
