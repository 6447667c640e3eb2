"""vLLM plugin: fetch a tenant's LoRA adapter from the adapter store on its first request.

Shipped into the LoRA base model's pods as a general plugin (a ConfigMap
mounted on PYTHONPATH with a dist-info whose entry point is `register`;
vLLM v0.11.1 loads `vllm.general_plugins` entry points in every process,
vllm/plugins/__init__.py load_general_plugins, and the API server asks the
registered LoRA resolvers for a model name it does not serve when
VLLM_ALLOW_RUNTIME_LORA_UPDATING is on: vllm/entrypoints/openai/serving_engine.py
_check_model -> serving_models.py resolve_lora, which then add_lora()s the
adapter and keeps it registered).

So a pod stores only the adapters its traffic asks for: the mapping
(adapter<TAB>tenant, from the tenant ConfigMap) says where an adapter lives
(`s3://<bucket>/tenants/<tenant>/<adapter>/`), the resolver copies it into
the adapter cache when it is first requested, and refuses new adapters
while the cache holds LLMSERVING_ADAPTER_SLOTS of them; the adapter sync
sidecar (components/vllm_workload.py adapter_sync_script, runtime mode)
unloads and deletes the least recently active ones to keep that bound, so
pod storage is O(active adapters), not O(tenants). An adapter is served
only when mapped to a tenant (a tenant reaches only its own adapters; the
mapping is the authority, FACTS.md: runtime loading is risky otherwise).

Standard library and boto3 only (both in the vLLM image); credentials from
Pod Identity, the region from AWS_REGION.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time

WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "adapter_model.pt")
COMPLETE = ".complete"


def log(msg: str) -> None:
    print(f"llmserving-lora-resolver: {msg}", file=sys.stderr, flush=True)


def settings(env=os.environ) -> dict:
    return {"dir": env.get("LLMSERVING_ADAPTER_DIR", "/adapters"),
            "mapping": env.get("LLMSERVING_ADAPTER_MAPPING", "/etc/llmserving/adapters.tsv"),
            "bucket_file": env.get("LLMSERVING_ADAPTER_BUCKET_FILE", "/etc/llmserving/bucket"),
            "slots": int(env.get("LLMSERVING_ADAPTER_SLOTS", "64"))}


def tenant_of(mapping_file: str, adapter: str) -> str | None:
    """Read at every miss: ConfigMap updates reach the mounted file without a restart."""
    try:
        with open(mapping_file) as f:
            for line in f:
                name, _, tenant = line.rstrip("\n").partition("\t")
                if name == adapter and tenant:
                    return tenant
    except OSError:
        return None
    return None


def cached(adapter_dir: str) -> list[str]:
    try:
        return [d for d in os.listdir(adapter_dir)
                if not d.startswith(".") and os.path.exists(os.path.join(adapter_dir, d, COMPLETE))]
    except OSError:
        return []


def fetch(s3, bucket: str, tenant: str, adapter: str, adapter_dir: str) -> bool:
    """Copies a complete upload (config and weights) into the cache atomically; False when it is not there."""
    prefix = f"tenants/{tenant}/{adapter}/"
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents") or []]
    files = {k[len(prefix):] for k in keys}
    if "adapter_config.json" not in files or not files & set(WEIGHTS):
        return False
    stage = os.path.join(adapter_dir, ".staging", adapter)
    shutil.rmtree(stage, ignore_errors=True)
    for key in keys:
        rel = key[len(prefix):]
        if not rel or rel.endswith("/") or ".." in rel.split("/"):
            continue
        target = os.path.join(stage, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        s3.download_file(bucket, key, target)
    open(os.path.join(stage, COMPLETE), "w").close()
    final = os.path.join(adapter_dir, adapter)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(stage, final)
    return True


def resolve_path(adapter: str, env=os.environ, s3=None) -> str | None:
    """The local path of `adapter`, fetched when needed; None when unmapped, not uploaded or the cache is full."""
    cfg = settings(env)
    tenant = tenant_of(cfg["mapping"], adapter)
    if tenant is None:
        return None
    path = os.path.join(cfg["dir"], adapter)
    if os.path.exists(os.path.join(path, COMPLETE)):
        return path
    if len(cached(cfg["dir"])) >= cfg["slots"]:
        log(f"adapter cache full ({cfg['slots']} adapters): not fetching {adapter} now; the sync evicts idle ones")
        return None
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    with open(cfg["bucket_file"]) as f:
        bucket = f.read().strip()
    started = time.time()
    if not fetch(s3, bucket, tenant, adapter, cfg["dir"]):
        log(f"{adapter}: no complete upload under s3://{bucket}/tenants/{tenant}/{adapter}/")
        return None
    log(f"fetched {adapter} for tenant {tenant} in {time.time() - started:.1f}s")
    return path


def register() -> None:
    """vllm.general_plugins entry point; loaded in every vLLM process, registers in each (harmless)."""
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

    class S3AdapterResolver(LoRAResolver):
        async def resolve_lora(self, base_model_name, lora_name):
            path = await asyncio.to_thread(resolve_path, lora_name)
            # lora_int_id is replaced by vLLM's own counter (serving_models.py resolve_lora).
            return None if path is None else LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=path)

    LoRAResolverRegistry.register_resolver("llmserving-s3", S3AdapterResolver())
