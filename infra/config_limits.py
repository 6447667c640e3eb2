"""Limits the components enforce, checked while the stack config is validated, in the stack's own keys.

Each component validates its typed args before it creates anything, and stays
the last line of defence; but a component's error names its args
(`notify_emails`, `server.precision`), surfaces halfway through a run, and
reads as a bug. Every limit a user's keys can reach is checked here first,
naming the key as the stack file writes it, the bad value and what is
allowed. `load_settings` (infra/config.py) calls these; tests keep each
check in step with the component it mirrors.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from infra import catalog as cat
from infra import names

if TYPE_CHECKING:
    from infra.config import StackConfig

STACK_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
QUANTIZED = ("fp8", "awq", "gptq", "int8")


# --- serving figures ------------------------------------------------------------------------

@dataclass(frozen=True)
class Bound:
    low: float
    high: float
    whole: bool = False
    # True: the value must be above `low` (0 excluded), not at or above it.
    above: bool = False


# Allowed values of the serving figures a stack may override (serving.figures,
# infra/serving_catalog.py SERVING_FIGURES). Why each bound: the component or
# the Kubernetes field it lands in (components/vllm_workload.py, model_router.py,
# observability.py); whole numbers where the value is cast to int.
FIGURE_BOUNDS: dict[str, Bound] = {
    "startup_probe_period_seconds": Bound(1, 300, whole=True),  # probe periodSeconds >= 1
    # Start-up timeline, rollout and pod identity figures (infra/serving_catalog.py).
    "adapter_cache_fill_ratio": Bound(0, 1, above=True),
    "await_margin_seconds": Bound(0, 86_400, whole=True),
    "fs_group": Bound(1, 2_147_483_647, whole=True),  # 0 would be root's group
    "run_as_user": Bound(1, 2_147_483_647, whole=True),  # runAsNonRoot refuses uid 0
    "image_pull_seconds": Bound(0, 86_400, whole=True),
    "node_ready_seconds": Bound(0, 86_400, whole=True),
    "max_surge_share": Bound(0, 1, above=True),
    "max_unavailable_share": Bound(0, 1, above=True),
    "ray_join_retry_seconds": Bound(1, 3600, whole=True),
    "router_resync_seconds": Bound(1, 86_400, whole=True),
    "router_scratch_mib": Bound(16, 1_048_576, whole=True),
    "scratch_gib": Bound(1, 16_384, whole=True),
    "sync_scratch_mib": Bound(16, 1_048_576, whole=True),
    "weights_download_mb_per_second": Bound(0, 100_000, above=True),
    "large_model_billion": Bound(0, 5000, above=True),
    # Cold start (issue 12, infra/startup.py).
    "startup_budget_floor_seconds": Bound(10, 86_400, whole=True),
    "startup_probe_safety_factor": Bound(1, 100),  # below 1 the probe would kill the estimated start
    "s3_stream_mb_per_second": Bound(0, 1_000_000, above=True),
    "hub_download_mb_per_second": Bound(0, 1_000_000, above=True),
    "runai_streamer_concurrency": Bound(1, 1024, whole=True),
    "runai_streamer_memory_share": Bound(0, 1, above=True),
    "engine_start_seconds": Bound(0, 86_400, whole=True),
    "engine_start_seconds_multi_gpu": Bound(0, 86_400, whole=True),
    "ray_group_seconds": Bound(0, 86_400, whole=True),
    "mirror_concurrency": Bound(1, 256, whole=True),
    "mirror_part_mib": Bound(5, 5120, whole=True),  # S3 multipart parts: 5 MiB to 5 GiB
    "mirror_keep_revisions": Bound(1, 100, whole=True),
    "mirror_deadline_factor": Bound(1, 100),
    "mirror_noncurrent_version_days": Bound(1, 3650, whole=True),
    "goal_ready_seconds_small": Bound(1, 86_400, whole=True),
    "goal_ready_seconds_large": Bound(1, 86_400, whole=True),
    "goal_ready_seconds_multinode": Bound(1, 86_400, whole=True),
    "adapter_bytes_per_parameter": Bound(0, 8, above=True),
    "adapter_disk_slots_per_cpu_lora": Bound(1, 100, whole=True),
    "prestop_sleep_seconds": Bound(0, 3600, whole=True),
    "drain_seconds": Bound(1, 86_400, whole=True),
    "shm_gib_per_gpu": Bound(0, 1024, above=True),
    "model_cache_headroom": Bound(1, 10),  # the cache must at least hold the weights
    "adapter_cache_gib": Bound(1, 16_384, whole=True),
    "adapter_sync_interval_seconds": Bound(1, 86_400, whole=True),
    "max_static_lora_modules": Bound(1, 10_000, whole=True),
    "queue_depth_per_replica": Bound(0, 100_000, above=True),  # a KEDA threshold of 0 scales on nothing
    "keda_polling_seconds": Bound(1, 3600, whole=True),
    "keda_cooldown_seconds": Bound(0, 86_400, whole=True),
    "cpu_per_gpu": Bound(1, 256, whole=True),
    "memory_gib_per_gpu": Bound(1, 4096, whole=True),
    "node_allocatable_share": Bound(0, 1, above=True),
    "alert_ttft_p95_seconds": Bound(0, 3600, above=True),  # components/observability.py: > 0
    "alert_queue_depth": Bound(0, 100_000),  # >= 0
    "alert_queue_minutes": Bound(1, 1440, whole=True),  # >= 1
    "alert_kv_cache_usage": Bound(0, 1, above=True),  # a fraction in (0, 1]
    "alert_restarts_per_hour": Bound(0, 10_000),  # >= 0
    "vllm_port": Bound(1, 65_535, whole=True),
    "ray_port": Bound(1, 65_535, whole=True),
    "router_replicas": Bound(1, 100, whole=True),  # components/model_router.py: >= 1
    "router_cpu_millicores": Bound(1, 256_000, whole=True),
    "router_memory_mib": Bound(1, 1_048_576, whole=True),
    "router_memory_limit_mib": Bound(1, 1_048_576, whole=True),
}


def _camel(snake: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), snake)


def _snake(camel: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def figure_problems(overrides: dict[str, float]) -> list[tuple[str, Any, str]]:
    """(figure key, value, why) for each override out of its bounds, or in conflict with another figure."""
    from infra.serving_catalog import SERVING_FIGURES

    items = []
    for key, value in overrides.items():
        bound = FIGURE_BOUNDS.get(_snake(key))
        if bound is None:
            continue  # unknown figures are reported with the allowed list (infra/config.py _cross_check)
        low_ok = value > bound.low if bound.above else value >= bound.low
        if not (low_ok and value <= bound.high):
            allowed = (f"must be above {_fmt(bound.low)} and at most {_fmt(bound.high)}" if bound.above
                       else f"must be between {_fmt(bound.low)} and {_fmt(bound.high)}")
            items.append((key, value, allowed))
        elif bound.whole and value != int(value):
            items.append((key, value, "must be a whole number"))
    if items:
        return items
    values = {_camel(k): float(f.value) for k, f in SERVING_FIGURES.items()} | dict(overrides)

    def pair(a: str, b: str, why: str) -> None:
        # Names the key the stack set (the other one may be a catalog default).
        key = a if a in overrides else b
        other = b if key == a else a
        items.append((key, overrides[key], why.format(other=f"{{here}}.{other}" if other in overrides
                                                      else f"{other} ({_fmt(values[other])}, the catalog default)")))

    period = values["startupProbePeriodSeconds"]
    for budget in ("startupBudgetFloorSeconds",):
        if values[budget] < period and (budget in overrides or "startupProbePeriodSeconds" in overrides):
            pair(budget, "startupProbePeriodSeconds", "a startup budget must cover at least one probe period {other}")
    if values["routerMemoryLimitMib"] < values["routerMemoryMib"] and (
            "routerMemoryLimitMib" in overrides or "routerMemoryMib" in overrides):
        pair("routerMemoryLimitMib", "routerMemoryMib", "a memory limit below the request {other} is refused by "
                                                       "Kubernetes")
    if values["rayPort"] == values["vllmPort"] and ("rayPort" in overrides or "vllmPort" in overrides):
        pair("rayPort", "vllmPort", "the Ray port must differ from the vLLM port {other}")
    return items


# --- the AWS provider's config keys ---------------------------------------------------------

@functools.lru_cache(maxsize=1)
def aws_provider_keys() -> frozenset[str]:
    """Config keys of the pinned pulumi-aws (its generated pulumi_aws/config/vars.py reads each one)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("pulumi_aws")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    source = Path(list(spec.submodule_search_locations)[0], "config", "vars.py")
    if not source.is_file():
        return frozenset()
    return frozenset(re.findall(r"__config__\.get\w*\('(\w+)'\)", source.read_text()))


# --- the stack name -------------------------------------------------------------------------

def stack_name_problems(project: str, stack: str, region: str, c: "StackConfig") -> list[str]:
    """The stack name is part of bucket, cluster, role and load balancer names: it must fit them."""
    if not STACK_NAME.match(stack) or "--" in stack:
        return [f"stack {stack!r}: the stack name is part of S3 bucket, load balancer and Kubernetes names "
                f"(e.g. {names.log_bucket_name(f'{project}-{stack}', '123456789012', region)!r}), so it must be "
                f"lowercase letters, digits and single '-' (start and end with a letter or digit)"]
    karpenter = any(p.provisioner in (None, "karpenter") for p in c.gpu_pools)
    table = names.stack_names(project, stack, orchestrator=c.orchestrator, karpenter=karpenter)
    too_long = [(n, limit, what) for n, limit, what in table if len(n) > limit]
    if not too_long:
        return []
    name, limit, what = max(too_long, key=lambda t: len(t[0]) - t[1])
    fits = min(limit - (len(n) - len(stack)) for n, limit, _ in table)
    return [f"stack {stack!r}: the stack name is too long: {what} would be {name!r} ({len(name)} characters, "
            f"at most {limit})" + (f" and {len(too_long) - 1} more name(s) would not fit" if len(too_long) > 1 else "")
            + f"; use a stack name of at most {fits} characters"]


# --- limits of the components, in the stack's keys -------------------------------------------

# Model names the EKS stack gives to other things: the load balancer's default
# target group (infra/edge.py ROUTER_TARGET) and the router's Service
# (infra/serving.py ROUTER_NAME); a model's Service and target group take its name.
RESERVED_MODEL_NAMES = {"router": "the load balancer's target group for the model-aware router",
                        "llm-router": "the model-aware router's Kubernetes Service"}
# Tags the program sets on every resource (infra/stack.py cost_tags; ECS adds `model`).
PROGRAM_TAGS = ("project", "stack", "environment", "tier")
# AWS tagging rules: key 1-128, value 0-256 characters, letters, digits, spaces and _ . : / = + - @;
# the aws: prefix is reserved.
TAG_CHARS = re.compile(r"^[\w .:/=+\-@]*$")


def limit_problems(c: "StackConfig", catalog: cat.Catalog, project: str) -> list[str]:
    k = lambda path: f"{project}:{path}"  # noqa: E731
    p: list[str] = []
    pools = {pool.name: (i, pool) for i, pool in enumerate(c.gpu_pools)}
    for i, m in enumerate(c.models):
        arch = catalog.models.get(m.source)
        p += _precision_problems(k, i, m, arch, catalog, pools)
        context = arch.context_length if arch is not None else (m.architecture.context_length if m.architecture else None)
        if context is not None and m.max_model_len > context:
            # vLLM refuses --max-model-len above the model config's max_position_embeddings
            # (vllm/config/model.py _get_and_verify_max_len) unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.
            p.append(f"{k(f'models[{i}].maxModelLen')}: got {m.max_model_len}; {m.source} has a context window of "
                     f"{context:,} tokens (max_position_embeddings of its config.json) and vLLM refuses a longer "
                     f"--max-model-len; use at most {context}")
        if c.orchestrator == "eks" and m.name in RESERVED_MODEL_NAMES:
            p.append(f"{k(f'models[{i}].name')}: got {m.name!r}; the name is taken by "
                     f"{RESERVED_MODEL_NAMES[m.name]}; choose another")
        if m.pipeline_parallel > 1 and m.pool in pools:
            j, pool = pools[m.pool]
            if pool.capacity_type == "spot":
                # components/gpu_node_group.py refuses SPOT for EFA groups.
                p.append(f"{k(f'gpuPools[{j}].capacityType')}: got 'spot'; model {m.name!r} on this pool spans "
                         f"{m.pipeline_parallel} nodes ({k(f'models[{i}].pipelineParallel')} {m.pipeline_parallel}), "
                         f"and one Spot interruption takes the whole replica down; use 'on-demand'")
    p += _catalog_value_problems(c, catalog, k)
    for name in c.catalog.instance_types:
        if not INSTANCE_TYPE.match(name):
            # components/ecs_gpu_cluster.py; EC2 instance type names look like g5.12xlarge.
            p.append(f"{k(f'catalog.instanceTypes[{name!r}]')}: not an EC2 instance type name such as g5.12xlarge "
                     f"(lowercase family, '.', size)")
    if c.orchestrator == "ecs":
        p += _ecs_task_problems(c, catalog, k, pools)
    reserved = PROGRAM_TAGS + (("model",) if c.orchestrator == "ecs" else ())
    for key, value in c.tags.items():
        where = k(f"tags.{key}")
        if key in reserved:
            p.append(f"{where}: the program sets this tag itself (cost allocation), so the value would be replaced; "
                     f"remove it (program tags: {', '.join(reserved)})")
        elif not 1 <= len(key) <= 128 or key.lower().startswith("aws:") or not TAG_CHARS.match(key):
            p.append(f"{where}: AWS tag keys are 1-128 letters, digits, spaces and _ . : / = + - @, and may not start "
                     f"with aws:")
        elif len(value) > 256 or not TAG_CHARS.match(value):
            p.append(f"{where}: got {value[:40]!r}; AWS tag values are at most 256 letters, digits, spaces and "
                     f"_ . : / = + - @")
    return p


def _precision_problems(k, i: int, m, arch: Optional[cat.ModelArchitecture], catalog: cat.Catalog,
                        pools: dict) -> list[str]:
    """The precision rules of components/vllm_server_args.py spec_problems, in the stack's keys."""
    from components.vllm_server_args import VllmServerSpec, spec_problems

    where = k(f"models[{i}].precision")
    ckpt = arch.checkpoint_precision if arch is not None else "bf16"
    if m.precision in ("awq", "gptq", "int8") and ckpt != m.precision:
        known = sorted(src for src, a in catalog.models.items() if a.checkpoint_precision == m.precision)
        return [f"{where}: got {m.precision!r}; vLLM cannot quantize to {m.precision} while loading, and "
                f"{k(f'models[{i}].source')} {m.source!r} is a {ckpt} checkpoint"
                + (" (a model outside the catalog counts as bf16: add it under " + k("catalog.models")
                   + " with checkpointPrecision)" if arch is None else "")
                + "; use a pre-quantized " + m.precision + " checkpoint"
                + (f" such as {known[0]}" if known else "") + ", or precision bf16 or fp8"]
    if ckpt in QUANTIZED and m.precision != ckpt:
        return [f"{where}: got {m.precision!r}; {k(f'models[{i}].source')} {m.source!r} is a checkpoint pre-quantized "
                f"to {ckpt} and vLLM serves it as {ckpt}; set precision {ckpt!r}"]
    if m.pool not in pools:
        return []
    # Anything else the component would refuse (e.g. a kernel the GPU cannot run), per instance type of the pool.
    j, pool = pools[m.pool]
    out: list[str] = []
    for t, name in enumerate(pool.instance_types):
        it = catalog.instance_types.get(name)
        gpu = catalog.gpus.get(it.gpu) if it else None
        if gpu is None:
            continue  # an unknown type or GPU is reported by the config cross-check
        spec = VllmServerSpec(served_model_name=m.name, model=m.source, precision=m.precision, checkpoint_precision=ckpt,
                              tensor_parallel=m.tensor_parallel, pipeline_parallel=m.pipeline_parallel,
                              max_model_len=m.max_model_len, gpu_memory_utilization=m.gpu_memory_utilization or 0.9,
                              gpu_compute_capability=gpu.compute_capability, kv_cache_dtype=m.kv_cache_dtype,
                              max_num_seqs=m.batching.max_num_seqs,
                              max_num_batched_tokens=m.batching.max_num_batched_tokens)
        for problem in spec_problems(spec):
            field, _, rest = problem.partition(": ")
            key = _SPEC_KEYS.get(field, "")
            line = (f"{k(f'models[{i}]' + ('.' + key if key else ''))}: {rest} on {name} "
                    f"({k(f'gpuPools[{j}].instanceTypes[{t}]')}, {gpu.name})")
            if line not in out:
                out.append(line)
    return out


# components/vllm_server_args.py spec fields -> the model's stack keys.
_SPEC_KEYS = {"precision": "precision", "checkpoint_precision": "source", "tensor_parallel": "tensorParallel",
              "pipeline_parallel": "pipelineParallel", "gpu_memory_utilization": "gpuMemoryUtilization",
              "kv_cache_dtype": "kvCacheDtype", "max_model_len": "maxModelLen",
              "max_num_batched_tokens": "batching.maxNumBatchedTokens", "max_num_seqs": "batching.maxNumSeqs"}


# Catalog figures a stack may override (catalog.assumptions, catalog.tiers,
# catalog.bytesPerParameter) and the values the planner can work with.
ASSUMPTION_BOUNDS: dict[str, Bound] = {
    "active_request_share": Bound(0, 1, above=True),
    "tokens_per_request_per_second": Bound(0, 10_000, above=True),
    "tensor_parallel_efficiency_per_doubling": Bound(0, 1, above=True),
    "pipeline_parallel_efficiency_per_stage": Bound(0, 1, above=True),
    "kv_cache_min_sequences": Bound(1, 100_000, whole=True),
    "fp8_compute_min_capability": Bound(0, 100),
    "hours_per_month": Bound(1, 744),  # at most 31 x 24
    "default_gpu_memory_utilization": Bound(0, 1, above=True),
}


def _catalog_value_problems(c: "StackConfig", catalog: cat.Catalog, k) -> list[str]:
    p = []
    checks = [("assumptions", c.catalog.assumptions, catalog.assumptions, lambda key: ASSUMPTION_BOUNDS.get(key)),
              ("tiers", c.catalog.tiers, catalog.tiers, lambda key: Bound(1, 10_000_000, whole=True)),
              ("bytesPerParameter", c.catalog.bytes_per_parameter, catalog.bytes_per_parameter,
               lambda key: Bound(0, 8, above=True))]
    for table, overrides, merged, bound_of in checks:
        for key in overrides:
            bound, row = bound_of(key), merged.get(key)
            if bound is None or row is None:
                continue
            value = row.value
            low_ok = value > bound.low if bound.above else value >= bound.low
            if not (low_ok and value <= bound.high):
                allowed = (f"must be above {_fmt(bound.low)} and at most {_fmt(bound.high)}" if bound.above
                           else f"must be between {_fmt(bound.low)} and {_fmt(bound.high)}")
                p.append(f"{k(f'catalog.{table}[{key!r}].value')}: got {_fmt(value)}; {allowed}")
            elif bound.whole and value != int(value):
                p.append(f"{k(f'catalog.{table}[{key!r}].value')}: got {_fmt(value)}; must be a whole number")
    return p


def _ecs_task_problems(c: "StackConfig", catalog: cat.Catalog, k, pools: dict) -> list[str]:
    """An ECS task's /dev/shm must fit in its memory share of the pool's smallest instance type
    (components/vllm_ecs_service.py task_resources; reachable with catalog overrides of memoryGib)."""
    from types import SimpleNamespace

    from components.vllm_ecs_service import task_resources
    from infra import edge_catalog as ec

    p = []
    for i, m in enumerate(c.models):
        if m.pool not in pools:
            continue
        j, pool = pools[m.pool]
        types = [catalog.instance_types[t] for t in pool.instance_types if t in catalog.instance_types]
        if not types:
            continue
        small = min(types, key=lambda t: (t.gpu_count, t.memory_gib, t.vcpus))
        if m.tensor_parallel > small.gpu_count:
            continue  # the capacity plan names this one
        args = SimpleNamespace(instance_vcpus=small.vcpus, instance_memory_mib=int(small.memory_gib * 1024),
                               resource_share=float(ec.ECS_DEFAULTS["instance_resource_share"].value),
                               instance_gpus=small.gpu_count, gpus_per_task=m.tensor_parallel,
                               shared_memory_mib_per_gpu=int(ec.ECS_DEFAULTS["shared_memory_mib_per_gpu"].value))
        _, memory, shm = task_resources(args)
        if shm >= memory:
            t = pool.instance_types.index(small.name)
            p.append(f"{k(f'gpuPools[{j}].instanceTypes[{t}]')}: got {small.name!r}; a task of "
                     f"{k(f'models[{i}]')} ({m.tensor_parallel} GPU(s)) gets {memory} MiB of its memory but needs "
                     f"{shm} MiB of /dev/shm alone; use an instance type with more memory per GPU")
    return p
