"""The program run the way the Pulumi CLI runs it, and the pinned SDK internals that relies on.

The CLI's Python language host runs `main: infra/` with runpy as a script:
the project root is the working directory but NOT on sys.path, so `infra`
and `components` import only through the editable install. The test does the
same in a fresh process whose script lives outside the repo.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests.harness import ROOT, once_per_session

SCRIPT = textwrap.dedent('''
    import asyncio, json, os, runpy, sys
    from pathlib import Path

    root = Path.cwd()
    report = {"root_on_path": any(Path(p or ".").resolve() == root for p in sys.path)}

    import pulumi
    import pulumi.runtime
    from pulumi.runtime import stack as pulumi_stack

    from infra.mockcloud import CloudMocks, RecordingMonitor, run_program
    from infra.preview import read_stack
    import infra, components
    report["infra_file"] = infra.__file__
    report["components_file"] = components.__file__

    # 1. The dev stack, driven with the SDK calls directly.
    files = read_stack(root, "dev")
    mocks = CloudMocks("us-east-1")
    monitor = RecordingMonitor(mocks)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_all_config(files.config, files.secret_keys)
    pulumi.runtime.set_mocks(mocks, project=files.project, stack="dev", preview=True, monitor=monitor)
    root_resource = pulumi_stack.get_root_resource()
    loop.run_until_complete(pulumi_stack.run_pulumi_func(lambda: runpy.run_path("infra", run_name="__main__")))
    exports = {}
    for key, value in root_resource.outputs.items():
        exports[key] = loop.run_until_complete(pulumi.Output.from_input(value).future())
    report["types"] = sorted({r.type for r in monitor.registrations})
    report["names"] = sorted(r.name for r in monitor.registrations)
    report["exports"] = json.loads(json.dumps(exports, default=str))

    # 2. A misspelled key: the program fails with a RunError naming it (no traceback for the CLI to show).
    bad = dict(files.config)
    bad["llmserving:modles"] = bad.pop("llmserving:models")
    try:
        run_program("infra", project="llmserving", stack="dev", config=bad, secret_keys=files.secret_keys,
                    region="us-east-1")
        report["bad_config_error"] = None
    except pulumi.RunError as e:
        report["bad_config_error"] = str(e)

    print("REPORT " + json.dumps(report))
''')


@pytest.fixture(scope="module")
def cli_like_run(tmp_path_factory):
    def run():
        script_dir = tmp_path_factory.mktemp("cli-host")
        script = script_dir / "language_host.py"
        script.write_text(SCRIPT)
        assert ROOT not in script.resolve().parents
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        env.pop("PYTHONPATH", None)
        proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-4000:]
        [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
        return json.loads(line[len("REPORT "):])

    # One language-host process per session, whichever xdist worker asks first.
    return once_per_session("test_cli_run.cli_like_run", run)


def test_repo_root_is_not_on_sys_path(cli_like_run):
    assert cli_like_run["root_on_path"] is False


def test_packages_import_from_this_checkout(cli_like_run):
    # The editable install points at the project under test.
    assert cli_like_run["infra_file"] == str(ROOT / "infra" / "__init__.py")
    assert cli_like_run["components_file"] == str(ROOT / "components" / "__init__.py")


def test_program_registers_the_network(cli_like_run):
    assert {"llmserving:network:Network", "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet",
            "aws:ec2/natGateway:NatGateway", "aws:ec2/flowLog:FlowLog"} <= set(cli_like_run["types"])
    assert "llmserving-dev-vpc" in cli_like_run["names"]


def test_program_exports_capacity_and_cost(cli_like_run):
    exports = cli_like_run["exports"]
    assert exports["capacity"]["required_tokens_per_second"] == 2400
    assert set(exports["capacity"]["models"]) == {"llama-3-1-8b", "mistral-7b"}
    assert exports["cost"]["hourly_usd"] > 0
    assert exports["vpcId"].startswith("vpc-")
    assert exports["zones"] == ["us-east-1a", "us-east-1b"]


def test_bad_config_is_a_run_error_naming_the_key(cli_like_run):
    message = cli_like_run["bad_config_error"]
    assert message is not None
    assert "llmserving:modles: unknown key 'modles' (did you mean 'models'?)" in message
    assert "Traceback" not in message


# --- pinned SDK internals the preview and the tests rely on -------------------------------------------

def test_pulumi_is_pinned():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert pins["pulumi"] == "3.272.0"
    assert {"pulumi-aws", "pulumi-policy", "pydantic"} <= set(pins)
    assert _installed("pulumi") == "3.272.0"


def _installed(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def test_installed_versions_match_pins():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    for dist, pinned in pins.items():
        assert _installed(dist) == pinned, dist


def test_sdk_internals_exist():
    import inspect

    import pulumi.runtime
    from pulumi.runtime import mocks, settings, stack
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    assert callable(mocks.MockMonitor.RegisterResource)
    assert callable(mocks.MockMonitor.RegisterResourceOutputs)
    assert inspect.iscoroutinefunction(stack.run_pulumi_func)
    assert callable(pulumi.runtime.set_all_config)
    assert "monitor" in inspect.signature(pulumi.runtime.set_mocks).parameters
    assert type(settings.ROOT).__name__ == "ContextVar"
    assert callable(stack.get_root_resource)
    for name in ("GetAnalyzerInfo", "Configure", "ConfigureStack", "Analyze", "AnalyzeStack"):
        assert hasattr(analyzer_pb2_grpc.AnalyzerStub(_FakeChannel()), name), name
    assert analyzer_pb2.MANDATORY != analyzer_pb2.ADVISORY


class _FakeChannel:
    def unary_unary(self, *a, **k):
        return object()

    def unary_stream(self, *a, **k):
        return object()

    def stream_unary(self, *a, **k):
        return object()

    def stream_stream(self, *a, **k):
        return object()
