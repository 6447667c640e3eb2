"""Adapters fetched on demand: the resolver plugin as the pod ships it (components/lora_s3_resolver.py).

The plugin is packaged the way the pod mounts it (ConfigMap items on PYTHONPATH) and discovered the way
vLLM v0.11.1 discovers general plugins (importlib.metadata entry points, vllm/plugins/__init__.py); its
fetch runs against a moto S3 server on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from components import lora_s3_resolver as resolver
from components.vllm_workload import RESOLVER_FILES, RESOLVER_PLUGIN, render, resolver_plugin_files

import boto3  # noqa: E402  (requirements-dev.txt)
from moto import server as moto_server  # noqa: E402  (requirements-dev.txt: never skipped)
BUCKET = "llmserving-prod-adapters"


@pytest.fixture
def s3():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).read()
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def upload(s3, tenant: str, adapter: str, *, weights: bool = True) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"tenants/{tenant}/{adapter}/adapter_config.json",
                  Body=json.dumps({"peft_type": "LORA", "r": 64}).encode())
    if weights:
        s3.put_object(Bucket=BUCKET, Key=f"tenants/{tenant}/{adapter}/adapter_model.safetensors", Body=b"\0" * 1024)


def pod_env(tmp_path: Path, mapping: str, slots: int = 2) -> dict:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "adapters.tsv").write_text(mapping)
    (tmp_path / "etc" / "bucket").write_text(BUCKET + "\n")
    (tmp_path / "adapters").mkdir(exist_ok=True)
    return {"LLMSERVING_ADAPTER_DIR": str(tmp_path / "adapters"),
            "LLMSERVING_ADAPTER_MAPPING": str(tmp_path / "etc" / "adapters.tsv"),
            "LLMSERVING_ADAPTER_BUCKET_FILE": str(tmp_path / "etc" / "bucket"), "LLMSERVING_ADAPTER_SLOTS": str(slots)}


def test_an_adapter_is_fetched_on_its_first_request_only_when_mapped_and_complete(tmp_path, s3):
    env = pod_env(tmp_path, "acme-support\tacme\nglobex-sql\tglobex\n")
    upload(s3, "acme", "acme-support")
    upload(s3, "globex", "globex-sql", weights=False)
    upload(s3, "initech", "not-mapped")
    path = resolver.resolve_path("acme-support", env, s3)
    assert path == str(tmp_path / "adapters" / "acme-support")
    assert sorted(os.listdir(path)) == [".complete", "adapter_config.json", "adapter_model.safetensors"]
    assert resolver.resolve_path("globex-sql", env, s3) is None  # not completely uploaded yet
    assert resolver.resolve_path("not-mapped", env, s3) is None  # another tenant's: the mapping decides
    assert not (tmp_path / "adapters" / "not-mapped").exists()
    # A second request is served from the cache without S3 (no client: it would fail if called).
    assert resolver.resolve_path("acme-support", env, None) == path


def test_a_full_cache_refuses_new_adapters_until_the_sync_evicts(tmp_path, s3):
    env = pod_env(tmp_path, "a1\tt\na2\tt\na3\tt\n", slots=2)
    for a in ("a1", "a2", "a3"):
        upload(s3, "t", a)
    assert resolver.resolve_path("a1", env, s3) and resolver.resolve_path("a2", env, s3)
    assert resolver.resolve_path("a3", env, s3) is None
    assert sorted(resolver.cached(env["LLMSERVING_ADAPTER_DIR"])) == ["a1", "a2"]


def test_the_plugin_as_mounted_is_discovered_by_entry_point_and_registers_a_resolver(tmp_path):
    """The ConfigMap's items, laid out at their volume paths, are an installed plugin for importlib.metadata;
    register() (with stand-ins for vllm.lora.*) registers a resolver that answers through resolve_path."""
    files = resolver_plugin_files()
    for key, rel in RESOLVER_FILES.items():
        target = tmp_path / "plugins" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(files[key])
    stubs = tmp_path / "stubs" / "vllm" / "lora"
    stubs.mkdir(parents=True)
    (tmp_path / "stubs" / "vllm" / "__init__.py").write_text("")
    (stubs / "__init__.py").write_text("")
    (stubs / "request.py").write_text(textwrap.dedent("""
        class LoRARequest:
            def __init__(self, lora_name, lora_int_id, lora_path=""):
                self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path
    """))
    (stubs / "resolver.py").write_text(textwrap.dedent("""
        class LoRAResolver:
            pass
        class _Registry:
            resolvers = {}
            def register_resolver(self, name, r):
                self.resolvers[name] = r
        LoRAResolverRegistry = _Registry()
    """))
    probe = textwrap.dedent(f"""
        import asyncio, importlib.metadata as md
        (ep,) = [e for e in md.entry_points(group="vllm.general_plugins") if e.name == "{RESOLVER_PLUGIN}"]
        ep.load()()
        from vllm.lora.resolver import LoRAResolverRegistry
        r = LoRAResolverRegistry.resolvers["llmserving-s3"]
        print(asyncio.run(r.resolve_lora("base", "unmapped")))
    """)
    env = {**os.environ, **pod_env(tmp_path, "x\tt\n"),
           "PYTHONPATH": f"{tmp_path / 'plugins'}{os.pathsep}{tmp_path / 'stubs'}"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


def test_the_pod_mounts_the_plugin_where_pythonpath_points():
    from infra import capacity, serving
    from tests import serving_presets as presets
    from tests.harness import settings_for
    from tests.test_serving import MIRROR_BUCKET, scheduling

    s = settings_for("prod", {"llmserving:lora": presets.many_tenants(3, runtime_loading=True)})
    m = next(x for x in s.config.models if x.name == "llama-3-1-8b")
    args = serving.workload_args(s, capacity.plan(s), m, scheduling(s), mirror_bucket=MIRROR_BUCKET,
                                 hf_token_secret=None, api_key_secret=None)
    objs = render(args)
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    pod = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    vllm = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in vllm["env"]}
    mount = next(x for x in vllm["volumeMounts"] if x["name"] == "lora-resolver")
    vol = next(v for v in pod["volumes"] if v["name"] == "lora-resolver")
    assert env["PYTHONPATH"] == mount["mountPath"] and vol["configMap"]["name"] == cm["metadata"]["name"]
    assert {i["key"] for i in vol["configMap"]["items"]} == set(cm["data"]) == set(RESOLVER_FILES)
    assert cm["data"]["module"] == Path(resolver.__file__).read_text()
    # vLLM writes fetched adapters into the cache: its mount is writable; the mapping is mounted for it.
    assert next(x for x in vllm["volumeMounts"] if x["name"] == "adapters")["readOnly"] is False
    assert env["LLMSERVING_ADAPTER_MAPPING"].startswith(
        next(x for x in vllm["volumeMounts"] if x["name"] == "tenant-adapters")["mountPath"])
