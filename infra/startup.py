"""Start-up estimate per model: from node launch to Ready, and the timeouts derived from it.

One source of truth (issue 12 item 4): the figures live in infra/serving_catalog.py
SERVING_FIGURES (each with its source; a stack overrides them under
`llmserving:serving.figures`), this module turns them into one estimate per
model, and everything that must outlast a start derives from that estimate:

- the startupProbe budget (EKS) = max(floor, safety factor x (weight read +
  engine start + Ray group)), so liveness never kills a loading pod;
- the ECS health-check grace period = the same budget plus the adapter copy
  that runs in the task before vLLM;
- the Kubernetes await timeouts = node launch + image pull + what the init
  containers write (fallback copy, static adapters) + the probe budget
  (components/vllm_workload.py pod_ready_seconds; infra/readiness.py
  estimates a pod the same way from the same figures);
- the mirror job's deadline = factor x the copy at the Hub's bandwidth.

The estimate states its basis (which figure, which bandwidth) so the
preview can print it next to the capacity plan, and checks it against the
issue's goals (Ready after the node is up: 8B < 2 min, 70B FP8 < 6 min,
405B < 20 min), with the image pulled on a fresh node and with the image
already on the node (the goals need the latter: a ~10 GB image does not
pull in under 2 minutes; see docs/serving.md "Cold start").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from infra import capacity
from infra.config import ModelConfig, Settings

STREAM = "runai_streamer"


def figure(settings: Settings, key: str) -> float:
    from infra.serving import figure as _figure

    return _figure(settings, key)


@dataclass(frozen=True)
class StartupEstimate:
    model: str
    load_format: str
    checkpoint_gb: float
    # Seconds, in order: node launch, image pull, fallback copy into the pod cache, static adapters,
    # weight read (S3 stream or local disk), engine start, Ray group (multi-node).
    node_boot_seconds: int
    image_pull_seconds: int
    copy_seconds: int
    adapter_sync_seconds: int
    weight_read_seconds: int
    engine_start_seconds: int
    ray_group_seconds: int
    read_mb_per_second: float
    goal_seconds: int
    # Derived budgets.
    startup_probe_budget_seconds: int
    mirror_deadline_seconds: int
    basis: list[str] = field(default_factory=list)

    @property
    def load_seconds(self) -> int:
        """What the startupProbe covers: the vLLM container from start to /health."""
        return self.weight_read_seconds + self.engine_start_seconds + self.ray_group_seconds

    @property
    def ready_after_node_seconds(self) -> int:
        return self.image_pull_seconds + self.ready_after_node_cached_image_seconds

    @property
    def ready_after_node_cached_image_seconds(self) -> int:
        return self.copy_seconds + self.adapter_sync_seconds + self.load_seconds

    @property
    def ready_after_restart_on_node_seconds(self) -> int:
        """A pod restarted on a node that served the model (image there): the fallback copy is skipped (the node
        cache holds it, components/vllm_workload.py copy_script); static adapters sync again (pod-scoped). The
        compile cache also survives, but no sourced figure splits engine_start_seconds into compile and the rest,
        so the engine start is counted whole (an upper bound)."""
        return self.adapter_sync_seconds + self.load_seconds

    @property
    def ready_from_launch_seconds(self) -> int:
        return self.node_boot_seconds + self.ready_after_node_seconds

    @property
    def ecs_grace_seconds(self) -> int:
        """ECS ignores ELB health checks this long after the task started (image pulled): adapters + probe budget."""
        return self.adapter_sync_seconds + self.startup_probe_budget_seconds

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(load_seconds=self.load_seconds, ready_after_node_seconds=self.ready_after_node_seconds,
                 ready_after_node_cached_image_seconds=self.ready_after_node_cached_image_seconds,
                 ready_from_launch_seconds=self.ready_from_launch_seconds, ecs_grace_seconds=self.ecs_grace_seconds,
                 ready_after_restart_on_node_seconds=self.ready_after_restart_on_node_seconds,
                 goal_met=self.ready_after_node_seconds <= self.goal_seconds,
                 goal_met_with_cached_image=self.ready_after_node_cached_image_seconds <= self.goal_seconds)
        return d


def transfer_seconds(settings: Settings, gib: float) -> int:
    """Writing `gib` GiB into a pod volume at the node disk's rate (weights_download_mb_per_second)."""
    return math.ceil(gib * 2 ** 30 / (figure(settings, "weights_download_mb_per_second") * 1e6))


def checkpoint_gb(settings: Settings, model: ModelConfig) -> float:
    c = settings.catalog
    arch = c.models.get(model.source)
    ckpt = arch.checkpoint_precision if arch is not None else "bf16"
    params = model.parameters_billion or (arch.parameters_billion if arch else 0)
    return params * c.bytes_per_parameter[ckpt].value


def parameters_billion(settings: Settings, model: ModelConfig) -> float:
    arch = settings.catalog.models.get(model.source)
    return model.parameters_billion or (arch.parameters_billion if arch else 0)


def cache_gib(settings: Settings, model: ModelConfig) -> int:
    """The pod cache of the fallback path: the checkpoint x headroom (0 when the weights stream)."""
    if model.load_format == STREAM:
        return 0
    return max(1, math.ceil(checkpoint_gb(settings, model) * figure(settings, "model_cache_headroom") / 1.073741824))


def static_adapter_gib(settings: Settings, model: ModelConfig) -> int:
    """What the static adapter sync writes before vLLM starts (0 unless this model serves static LoRA)."""
    lora = settings.config.lora
    if not (lora.enabled and lora.base_model == model.name) or lora.runtime_loading:
        return 0
    from infra.serving import adapter_cache_gib

    return adapter_cache_gib(settings)


def estimate(settings: Settings, plan: capacity.Plan, model: ModelConfig) -> StartupEstimate:
    f = lambda k: figure(settings, k)  # noqa: E731
    mp = next(p for p in plan.models if p.model == model.name)
    gb = checkpoint_gb(settings, model)
    gpus = model.tensor_parallel * model.pipeline_parallel
    basis = []
    if model.load_format == STREAM:
        rate = f("s3_stream_mb_per_second")
        copy = 0
        basis.append(f"weights {gb:,.0f} GB streamed from the S3 mirror at {rate:,.0f} MB/s per node "
                     f"(s3_stream_mb_per_second; every node of a replica reads the whole checkpoint)")
    else:
        rate = f("weights_download_mb_per_second")
        copy = transfer_seconds(settings, cache_gib(settings, model))
        basis.append(f"fallback: copy from the S3 mirror into the pod cache (<= {cache_gib(settings, model)} GiB) "
                     f"and read {gb:,.0f} GB from local disk at {rate:,.0f} MB/s (weights_download_mb_per_second)")
    read = math.ceil(gb * 1000 / rate)
    start = int(f("engine_start_seconds") if gpus == 1 else f("engine_start_seconds_multi_gpu"))
    ray = int(f("ray_group_seconds")) if model.pipeline_parallel > 1 else 0
    adapters = transfer_seconds(settings, static_adapter_gib(settings, model))
    if adapters:
        basis.append(f"static LoRA: up to {static_adapter_gib(settings, model)} GiB of adapters copied before start")
    basis.append(f"engine start {start}s ({'engine_start_seconds' if gpus == 1 else 'engine_start_seconds_multi_gpu'})"
                 + (f", Ray group {ray}s" if ray else ""))
    budget = max(int(f("startup_budget_floor_seconds")),
                 math.ceil(f("startup_probe_safety_factor") * (read + start + ray)))
    period = int(f("startup_probe_period_seconds"))
    budget = math.ceil(budget / period) * period
    if model.pipeline_parallel > 1:
        goal = f("goal_ready_seconds_multinode")
    elif parameters_billion(settings, model) >= f("large_model_billion"):
        goal = f("goal_ready_seconds_large")
    else:
        goal = f("goal_ready_seconds_small")
    deadline = math.ceil(f("mirror_deadline_factor") * gb * 1000 / f("hub_download_mb_per_second")) + 600
    basis.append(f"node launch {int(f('node_ready_seconds'))}s, image pull {int(f('image_pull_seconds'))}s "
                 f"(node_ready_seconds, image_pull_seconds); instance {mp.instance_type}")
    return StartupEstimate(
        model=model.name, load_format=model.load_format, checkpoint_gb=round(gb, 1),
        node_boot_seconds=int(f("node_ready_seconds")), image_pull_seconds=int(f("image_pull_seconds")),
        copy_seconds=copy, adapter_sync_seconds=adapters, weight_read_seconds=read, engine_start_seconds=start,
        ray_group_seconds=ray, read_mb_per_second=rate, goal_seconds=int(goal), startup_probe_budget_seconds=budget,
        mirror_deadline_seconds=deadline, basis=basis)


def estimates(settings: Settings, plan: capacity.Plan) -> dict[str, StartupEstimate]:
    return {m.name: estimate(settings, plan, m) for m in settings.config.models}


def section(settings: Settings, plan: capacity.Plan) -> dict[str, dict]:
    """The stack output `startup` (the preview prints it beside the capacity plan)."""
    return {name: e.as_dict() for name, e in estimates(settings, plan).items()}


def _dur(s: float) -> str:
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def render(doc: dict, console: Any) -> None:
    """The preview's start-up table (infra/preview.py calls it after the capacity plan)."""
    rows = (doc.get("outputs") or {}).get("startup") or {}
    if not rows:
        return
    from rich.table import Table

    t = Table(title="Start-up estimate (node launch -> Ready)")
    for col in ("model", "load", "weights GB", "node", "image", "copy", "read", "start", "after node up",
                "image cached", "goal", "probe budget"):
        t.add_column(col, justify="left" if col in ("model", "load") else "right")
    for name, e in rows.items():
        ok = "[green]" if e["goal_met_with_cached_image"] else "[red]"
        t.add_row(name, e["load_format"], f"{e['checkpoint_gb']:,.0f}", _dur(e["node_boot_seconds"]),
                  _dur(e["image_pull_seconds"]), _dur(e["copy_seconds"] + e["adapter_sync_seconds"]),
                  _dur(e["weight_read_seconds"]), _dur(e["engine_start_seconds"] + e["ray_group_seconds"]),
                  _dur(e["ready_after_node_seconds"]), f"{ok}{_dur(e['ready_after_node_cached_image_seconds'])}[/]",
                  f"< {_dur(e['goal_seconds'])}", _dur(e["startup_probe_budget_seconds"]))
    console.print(t)
    for name, e in rows.items():
        console.print(f"  [dim]{name}: " + "; ".join(e["basis"]) + "[/]")
