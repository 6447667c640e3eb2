"""Capacity planner: users -> active requests -> tok/s -> replicas -> nodes -> USD.

The method follows the seed sizing guide:

1. concurrent users x active-request share (default 15%) = peak active requests
2. active requests x tokens per request per second = required tok/s
   (or an explicit `scale.targetTokensPerSecond`)
3. each model takes its traffic share of that demand; replicas = demand /
   per-replica throughput, clamped up to minReplicas, and never above
   maxReplicas (a plan that needs more is an error, not a silent shortfall)
4. replicas pack onto the pool's first instance type (TP x PP GPUs each;
   a pipeline-parallel replica takes PP whole nodes)
5. nodes x price (spot discount applied for spot pools) = USD/hour; x hours
   per month = USD/month. The worst case (every pool at maxNodes, on-demand
   where fallback may happen) is reported for budget policies.

Per-replica throughput comes from the stack (`tokensPerSecondPerReplica`) or
is scaled from the catalog's nearest measured anchor by HBM bandwidth and by
bytes of weights read per token (decode is memory-bound); every plan states
which figure it used. Memory fit: weights + KV cache for
`kv_cache_min_sequences` sequences of maxModelLen must fit the replica's GPU
memory x gpu-memory-utilization.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from infra import catalog as cat
from infra.config import ModelConfig, Settings


class PlanError(Exception):
    """The configuration cannot be served as asked; the message says why."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("capacity plan failed:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class ModelPlan:
    model: str
    source: str
    pool: str
    instance_type: str
    precision: str
    tensor_parallel: int
    pipeline_parallel: int
    gpus_per_replica: int
    demand_tokens_per_second: float
    tokens_per_second_per_replica: float
    throughput_basis: str
    replicas: int
    min_replicas: int
    max_replicas: int
    nodes: int
    gpus: int
    capacity_tokens_per_second: float
    weights_gb: float
    kv_cache_gb_required: float
    usable_gpu_memory_gb: float
    fp8_compute: bool


@dataclass(frozen=True)
class PoolPlan:
    pool: str
    instance_type: str
    capacity_type: str
    gpus_per_node: int
    nodes: int
    min_nodes: int
    max_nodes: int
    gpus: int
    max_gpus: int
    usd_per_node_hour: float
    hourly_usd: float
    max_hourly_usd: float
    price_basis: str
    # Capacity reservations (ODCRs, Capacity Blocks): nodes paid whether they run or not, included
    # in hourly_usd/max_hourly_usd and shown apart in the cost table.
    reserved_nodes: int = 0
    reserved_hourly_usd: float = 0.0
    reserved_basis: str = ""


@dataclass(frozen=True)
class Plan:
    users: int | None
    active_requests: float | None
    tokens_per_request_per_second: float | None
    required_tokens_per_second: float
    demand_basis: str
    models: list[ModelPlan]
    pools: list[PoolPlan]
    gpus_total: int
    max_gpus_total: int
    hourly_usd: float
    monthly_usd: float
    max_hourly_usd: float
    max_monthly_usd: float

    def capacity_dict(self) -> dict:
        return {
            "users": self.users,
            "active_requests": self.active_requests,
            "tokens_per_request_per_second": self.tokens_per_request_per_second,
            "required_tokens_per_second": self.required_tokens_per_second,
            "demand_basis": self.demand_basis,
            "gpus_total": self.gpus_total,
            "max_gpus_total": self.max_gpus_total,
            "models": {m.model: _rounded(asdict(m)) for m in self.models},
            "pools": {p.pool: {k: v for k, v in _rounded(asdict(p)).items() if "usd" not in k and k not in ("price_basis", "reserved_basis")}
                      for p in self.pools},
        }

    def cost_dict(self) -> dict:
        return {
            "hourly_usd": round(self.hourly_usd, 2),
            "monthly_usd": round(self.monthly_usd, 2),
            "max_hourly_usd": round(self.max_hourly_usd, 2),
            "max_monthly_usd": round(self.max_monthly_usd, 2),
            "by_pool": {name: row for p in self.pools for name, row in _cost_rows(p)},
        }


RESERVED_SUFFIX = "/reserved"


def _cost_rows(p: PoolPlan) -> list[tuple[str, dict]]:
    """One cost row per pool; a pool with reservations gets a second row, `<pool>/reserved`, for what
    the reservations cost whether used or not (the first row then covers the nodes beyond them)."""
    unreserved = max(0, p.nodes - p.reserved_nodes)
    rows = [(p.pool, {"instance_type": p.instance_type, "capacity_type": p.capacity_type, "nodes": unreserved,
                      "usd_per_node_hour": round(p.usd_per_node_hour, 4),
                      "hourly_usd": round(p.hourly_usd - p.reserved_hourly_usd, 2),
                      "max_hourly_usd": round(p.max_hourly_usd - p.reserved_hourly_usd, 2),
                      "price_basis": p.price_basis})]
    if p.reserved_nodes:
        rows.append((p.pool + RESERVED_SUFFIX, {
            "instance_type": p.instance_type, "capacity_type": "reserved", "nodes": p.reserved_nodes,
            "usd_per_node_hour": round(p.reserved_hourly_usd / p.reserved_nodes, 4),
            "hourly_usd": round(p.reserved_hourly_usd, 2), "max_hourly_usd": round(p.reserved_hourly_usd, 2),
            "price_basis": p.reserved_basis}))
    return rows


def reservation_cost(settings: Settings, pool) -> tuple[int, float, str]:
    """(reserved nodes, $/hour they cost whether used or not, basis) of a pool's capacity reservations.

    An On-Demand Capacity Reservation bills the instance type's on-demand rate for every reserved
    instance, running or not (EC2 User Guide, "Capacity Reservation pricing and billing"); a Capacity
    Block is paid upfront at the price EC2 quoted, given per instance-hour in the stack config.
    """
    count, usd, parts = 0, 0.0, []
    for r in pool.capacity_reservations:
        if r.type == "capacity-block":
            rate, how = float(r.usd_per_instance_hour), "capacity block, quoted price"
        else:
            rate = settings.catalog.instance(r.instance_type).on_demand_usd_per_hour
            how = f"ODCR at the on-demand rate ({settings.catalog.instance(r.instance_type).as_of})"
        count += r.instance_count
        usd += r.instance_count * rate
        parts.append(f"{r.instance_count} x {r.instance_type} {rate:g} $/h ({how}; {r.id or r.tags})")
    basis = ("reserved, paid whether used or not: " + "; ".join(parts)) if parts else ""
    return count, usd, basis


def _rounded(d: dict) -> dict:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in d.items()}


def required_throughput(settings: Settings) -> tuple[float, int | None, float | None, float | None, str]:
    """Returns (tok/s, users, active requests, tok/s per request, basis)."""
    s = settings.config.scale
    c = settings.catalog
    if s.target_tokens_per_second is not None:
        return s.target_tokens_per_second, None, None, None, "scale.targetTokensPerSecond"
    users = s.users if s.users is not None else int(c.tiers[s.tier].value)
    share = s.active_request_share if s.active_request_share is not None else c.assumption("active_request_share")
    rate = (s.tokens_per_request_per_second if s.tokens_per_request_per_second is not None
            else c.assumption("tokens_per_request_per_second"))
    active = users * share
    basis = (f"{users:,} users x {share:.0%} active x {rate:g} tok/s per request"
             + (f" (tier {s.tier})" if s.tier and s.users is None else ""))
    return active * rate, users, active, rate, basis


def weights_gb(settings: Settings, model: ModelConfig) -> float:
    return _parameters_billion(settings, model) * settings.catalog.bytes_per_parameter[model.precision].value


def _parameters_billion(settings: Settings, model: ModelConfig) -> float:
    if model.parameters_billion is not None:
        return model.parameters_billion
    return settings.catalog.models[model.source].parameters_billion


def kv_bytes_per_token(settings: Settings, model: ModelConfig) -> float:
    c = settings.catalog
    dtype_bytes = c.bytes_per_parameter["fp8" if model.kv_cache_dtype.startswith("fp8") else "bf16"].value
    if model.architecture is not None:
        a = model.architecture
        return 2 * a.layers * a.kv_heads * a.head_dim * dtype_bytes
    return c.models[model.source].kv_bytes_per_token(dtype_bytes)


def _nearest_anchor(c: cat.Catalog, params_b: float) -> cat.ThroughputAnchor:
    # On a tie the later anchor wins: a stack's own anchors come after the defaults and override them.
    anchors = list(enumerate(c.throughput_anchors))
    return min(anchors, key=lambda ia: (abs(math.log(ia[1].parameters_billion / params_b)), -ia[0]))[1]


def replica_throughput(settings: Settings, model: ModelConfig, instance: cat.InstanceType) -> tuple[float, str, bool]:
    """Per-replica tok/s, the basis it came from, and whether FP8 runs as compute."""
    c = settings.catalog
    gpu = c.gpu_of(instance)
    fp8_compute = model.precision == "fp8" and gpu.compute_capability >= c.assumption("fp8_compute_min_capability")
    if model.tokens_per_second_per_replica is not None:
        return model.tokens_per_second_per_replica, "stack config (tokensPerSecondPerReplica)", fp8_compute
    params = _parameters_billion(settings, model)
    anchor = _nearest_anchor(c, params)
    anchor_gpu = c.gpus[anchor.gpu]
    # Below the FP8 compute capability vLLM runs FP8 weight-only with no
    # speed-up (FACTS.md), so plan it at 16-bit speed.
    speed_precision = "bf16" if model.precision == "fp8" and not fp8_compute else model.precision
    tp, pp = model.tensor_parallel, model.pipeline_parallel
    efficiency = (c.assumption("tensor_parallel_efficiency_per_doubling") ** math.log2(tp)
                  * c.assumption("pipeline_parallel_efficiency_per_stage") ** (pp - 1))
    bandwidth_ratio = (gpu.memory_bandwidth_gbs * tp * pp * efficiency) / (anchor_gpu.memory_bandwidth_gbs * anchor.gpu_count)
    bytes_ratio = ((anchor.parameters_billion * c.bytes_per_parameter[anchor.precision].value)
                   / (params * c.bytes_per_parameter[speed_precision].value))
    tps = anchor.tokens_per_second * bandwidth_ratio * bytes_ratio
    basis = (f"scaled from {anchor.model} {anchor.precision} on {anchor.gpu_count} x {anchor.gpu} = "
             f"{anchor.tokens_per_second:g} tok/s ({anchor.source}, {anchor.as_of}) by HBM bandwidth "
             f"{gpu.memory_bandwidth_gbs:g}x{tp * pp} GB/s at {efficiency:.0%} parallel efficiency and weight bytes "
             f"({speed_precision})")
    return tps, basis, fp8_compute


def _placement_problem(key: str, m: ModelConfig, instance: cat.InstanceType, tp: int, pp: int,
                       instance_key: str) -> str | None:
    if tp > instance.gpu_count:
        return (f"{key}.tensorParallel: got {tp}; {instance.name} has {instance.gpu_count} GPUs per node, "
                f"so tensorParallel must be at most {instance.gpu_count} ({instance_key})")
    if pp > 1 and tp != instance.gpu_count:
        return (f"{key}.tensorParallel: got {tp}; a model split across nodes ({key}.pipelineParallel {pp}) "
                f"uses every GPU of each node, so tensorParallel must equal {instance.gpu_count} on {instance.name} "
                f"({instance_key})")
    if pp > 1 and not instance.efa:
        return (f"{key}.pipelineParallel: got {pp}; {instance.name} has no EFA, and a model split across "
                f"nodes needs it; use p4d, p4de or p5 ({instance_key})")
    return None


def plan(settings: Settings) -> Plan:
    """Builds the capacity plan or raises PlanError naming every problem."""
    c = settings.catalog
    cfg = settings.config
    required, users, active, rate, demand_basis = required_throughput(settings)
    problems: list[str] = []
    model_plans: list[ModelPlan] = []
    even_share = 1.0 / len(cfg.models)

    pool_index = {p.name: j for j, p in enumerate(cfg.gpu_pools)}
    for i, m in enumerate(cfg.models):
        key = f"{settings.project}:models[{i}]"
        pool = settings.pool(m.pool)
        types_key = f"{settings.project}:gpuPools[{pool_index[pool.name]}].instanceTypes"
        # Sized on the pool's first instance type; a replica may land on any
        # of them, so parallelism and memory must work on every one.
        instance = c.instance(pool.instance_types[0])
        gpu = c.gpu_of(instance)
        tp, pp = m.tensor_parallel, m.pipeline_parallel
        util = m.gpu_memory_utilization or c.assumption("default_gpu_memory_utilization")
        gpus_per_replica = tp * pp
        w = weights_gb(settings, m)
        min_seqs = int(c.assumption("kv_cache_min_sequences"))
        kv = kv_bytes_per_token(settings, m) * m.max_model_len * min_seqs / 1e9
        fits = True
        for j, other_name in enumerate(pool.instance_types):
            other = c.instance(other_name)
            problem = _placement_problem(key, m, other, tp, pp, f"{types_key}[{j}]")
            if problem is None:
                other_gpu = c.gpu_of(other)
                have = other_gpu.memory_gb * gpus_per_replica * util
                if w + kv > have:
                    problem = (
                        f"{key}: model {m.name!r} does not fit {other.name} ({types_key}[{j}]): it needs "
                        f"{w + kv:,.0f} GB (weights {w:,.0f} GB in {m.precision} + KV cache {kv:,.0f} GB for "
                        f"{min_seqs} x {m.max_model_len:,} tokens of maxModelLen) but a replica of TP {tp} x PP {pp} "
                        f"on {other.name} has {have:,.0f} GB ({gpus_per_replica} x {other_gpu.memory_gb:g} GB "
                        f"{other_gpu.name} x {util:g} gpu memory utilization); use more or larger GPUs, a smaller "
                        f"precision or a shorter maxModelLen")
            if problem:
                problems.append(problem)
                fits = False
                break
        if not fits:
            continue
        usable = gpu.memory_gb * gpus_per_replica * util

        tps, basis, fp8_compute = replica_throughput(settings, m, instance)
        demand = required * (m.traffic_share if m.traffic_share is not None else even_share)
        needed = math.ceil(demand / tps - 1e-9)
        replicas = max(m.min_replicas, needed)
        if needed > m.max_replicas:
            problems.append(f"{key}.maxReplicas: got {m.max_replicas}; model {m.name!r} needs {needed} replicas for "
                            f"{demand:,.0f} tok/s at {tps:,.0f} tok/s per replica; raise maxReplicas or lower the scale")
            continue
        if pp > 1:
            nodes = replicas * pp
        else:
            nodes = math.ceil(replicas / (instance.gpu_count // tp))
        model_plans.append(ModelPlan(
            model=m.name, source=m.source, pool=pool.name, instance_type=instance.name, precision=m.precision,
            tensor_parallel=tp, pipeline_parallel=pp, gpus_per_replica=gpus_per_replica,
            demand_tokens_per_second=demand, tokens_per_second_per_replica=tps, throughput_basis=basis,
            replicas=replicas, min_replicas=m.min_replicas, max_replicas=m.max_replicas, nodes=nodes,
            gpus=replicas * gpus_per_replica, capacity_tokens_per_second=replicas * tps, weights_gb=w,
            kv_cache_gb_required=kv, usable_gpu_memory_gb=usable, fp8_compute=fp8_compute,
        ))

    pool_plans: list[PoolPlan] = []
    for i, pool in enumerate(cfg.gpu_pools):
        if problems:
            break
        instance = c.instance(pool.instance_types[0])
        needed = sum(mp.nodes for mp in model_plans if mp.pool == pool.name)
        if needed > pool.max_nodes:
            problems.append(f"{settings.project}:gpuPools[{i}].maxNodes: got {pool.max_nodes}; pool {pool.name!r} needs "
                            f"{needed} x {instance.name} for its models; raise maxNodes or lower the scale")
            continue
        nodes = max(pool.min_nodes, needed)
        on_demand = instance.on_demand_usd_per_hour
        spot = on_demand * (1 - instance.spot_discount)
        # The worst case may run the dearest type the pool allows.
        types = [c.instance(t) for t in pool.instance_types]
        dearest_od = max(t.on_demand_usd_per_hour for t in types)
        dearest_spot = max(t.on_demand_usd_per_hour * (1 - t.spot_discount) for t in types)
        if pool.capacity_type == "on-demand":
            price, worst, basis = on_demand, dearest_od, f"on-demand {on_demand:g} $/h ({instance.as_of})"
        elif pool.capacity_type == "spot":
            price, worst = spot, dearest_spot
            basis = f"spot at {instance.spot_discount:.0%} off on-demand {on_demand:g} $/h"
        else:
            # Expected at spot prices; the worst case falls back to on-demand.
            price, worst = spot, dearest_od
            basis = f"spot at {instance.spot_discount:.0%} off {on_demand:g} $/h, worst case on-demand"
        # Reserved nodes are paid whether used or not; the plan's nodes fill them first.
        reserved, reserved_usd, reserved_basis = reservation_cost(settings, pool)
        paid = max(0, nodes - reserved)
        hourly = paid * price
        if pool.capacity_type == "spot-with-on-demand-fallback" and settings.provisioner(pool) == "auto-scaling-group":
            # An ECS mixed-instances group keeps its on-demand base on on-demand.
            base = min(cfg.ecs.on_demand_base_capacity, paid)
            hourly = base * on_demand + (paid - base) * spot
            price = hourly / paid if paid else price
            basis += f"; {base} on-demand base node(s)"
        pool_plans.append(PoolPlan(
            pool=pool.name, instance_type=instance.name, capacity_type=pool.capacity_type,
            gpus_per_node=instance.gpu_count, nodes=nodes, min_nodes=pool.min_nodes, max_nodes=pool.max_nodes,
            gpus=nodes * instance.gpu_count, max_gpus=pool.max_nodes * max(t.gpu_count for t in types),
            usd_per_node_hour=price, hourly_usd=hourly + reserved_usd,
            max_hourly_usd=max(0, pool.max_nodes - reserved) * worst + reserved_usd, price_basis=basis,
            reserved_nodes=reserved, reserved_hourly_usd=reserved_usd, reserved_basis=reserved_basis,
        ))
    if not problems:
        problems += _limit_problems(settings, pool_plans)
    if problems:
        raise PlanError(problems)

    hours = c.assumption("hours_per_month")
    hourly = sum(p.hourly_usd for p in pool_plans)
    max_hourly = sum(p.max_hourly_usd for p in pool_plans)
    return Plan(
        users=users, active_requests=active, tokens_per_request_per_second=rate,
        required_tokens_per_second=required, demand_basis=demand_basis, models=model_plans, pools=pool_plans,
        gpus_total=sum(p.gpus for p in pool_plans), max_gpus_total=sum(p.max_gpus for p in pool_plans),
        hourly_usd=hourly, monthly_usd=hourly * hours, max_hourly_usd=max_hourly, max_monthly_usd=max_hourly * hours,
    )


def _limit_problems(settings: Settings, pools: list[PoolPlan]) -> list[str]:
    """The stack's own GPU limits and hourly budget against what the plan needs (before any resource exists).

    The policy pack judges the worst case (every pool at maxNodes) against the
    reviewed policy config; these catch a plan that breaks the stack's own
    figures even at its planned size.
    """
    cfg = settings.config
    k = lambda path: f"{settings.project}:{path}"  # noqa: E731
    problems = []
    index = {p.name: i for i, p in enumerate(cfg.gpu_pools)}
    for pp in pools:
        if pp.gpus > cfg.gpu_limits.max_gpus_per_pool:
            problems.append(f"{k('gpuLimits.maxGpusPerPool')}: got {cfg.gpu_limits.max_gpus_per_pool}; pool {pp.pool!r} "
                            f"is planned at {pp.gpus} GPUs ({pp.nodes} x {pp.instance_type}) "
                            f"({k(f'gpuPools[{index[pp.pool]}]')})")
    total = sum(pp.gpus for pp in pools)
    if total > cfg.gpu_limits.max_gpus_total:
        parts = ", ".join(f"{pp.pool} {pp.gpus}" for pp in pools)
        problems.append(f"{k('gpuLimits.maxGpusTotal')}: got {cfg.gpu_limits.max_gpus_total}; the plan needs {total} "
                        f"GPUs ({parts}); raise it or lower the scale")
    hourly = sum(pp.hourly_usd for pp in pools)
    if hourly > cfg.budget.hourly_usd + 1e-9:
        parts = ", ".join(f"{pp.pool} ${pp.hourly_usd:,.2f}" for pp in pools)
        problems.append(f"{k('budget.hourlyUsd')}: got {cfg.budget.hourly_usd:g}; the plan costs ${hourly:,.2f}/hour "
                        f"({parts}); raise it or lower the scale")
    monthly = hourly * settings.catalog.assumption("hours_per_month")
    if monthly > cfg.budget.monthly_usd + 1e-9:
        problems.append(f"{k('budget.monthlyUsd')}: got {cfg.budget.monthly_usd:g}; the plan costs ${monthly:,.2f}/month "
                        f"(${hourly:,.2f}/hour x {settings.catalog.assumption('hours_per_month'):g} hours), so the "
                        f"budget's alerts would fire every month; raise it or lower the scale")
    return problems
