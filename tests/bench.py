"""Benchmark of the offline preview (`make bench`); not part of the timed test suite.

Reports wall time and resource count for each shipped stack and for a
generated worst case: the large tier with 10 models and 2,000 LoRA tenants,
next to the same stack with 10 tenants. Tenants are data, not resources:
the two must have the same resource count and similar times.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3


def worst_case_stack(tenants: int) -> dict:
    """The prod stack scaled to the large tier with 10 models and `tenants` LoRA tenants."""
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    cfg = doc["config"]
    cfg["llmserving:scale"] = {"tier": "large"}
    big = {"name": "p5-large", "instanceTypes": ["p5.48xlarge"], "capacityType": "on-demand",
           "provisioner": "managed-node-group", "minNodes": 2, "maxNodes": 64, "rootVolumeGib": 1000}
    small = {"name": "g5-large", "instanceTypes": ["g5.12xlarge", "g5.24xlarge"],
             "capacityType": "spot-with-on-demand-fallback", "minNodes": 1, "maxNodes": 400, "rootVolumeGib": 300}
    cfg["llmserving:gpuPools"] = [big, small]
    models = [{"name": "llama-3-1-70b", "source": "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8", "precision": "fp8",
               "pool": "p5-large", "tensorParallel": 8, "maxModelLen": 16384, "kvCacheDtype": "fp8",
               "minReplicas": 2, "maxReplicas": 64, "trafficShare": 0.4, "revision": "5" * 40}]
    sources = ["meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3", "Qwen/Qwen2.5-7B-Instruct"]
    for i in range(9):
        models.append({"name": f"small-model-{i}", "source": sources[i % len(sources)], "precision": "bf16",
                       "pool": "g5-large", "maxModelLen": 8192, "minReplicas": 1, "maxReplicas": 200,
                       "revision": "5" * 40,
                       "trafficShare": round(0.6 / 9, 10) if i < 8 else round(0.6 - 8 * round(0.6 / 9, 10), 10)})
    cfg["llmserving:models"] = models
    cfg["llmserving:lora"] = {
        # Thousands of tenants: adapters fetched on first request (a pod holds maxCpuLoras x 2 of them;
        # preloading 2,000 rank-64 adapters would not fit the adapter cache, infra/serving.py).
        "enabled": True, "baseModel": "small-model-0", "maxLoras": 16, "maxLoraRank": 64, "maxCpuLoras": 64,
        "runtimeLoading": True,
        "tenants": [{"id": f"tenant-{i:04d}", "adapters": [f"tenant-{i:04d}-chat"]} for i in range(tenants)],
    }
    cfg["llmserving:gpuLimits"] = {"maxGpusTotal": 4096, "maxGpusPerPool": 2048,
                                   "allowedFamilies": ["p5", "g5", "g6e"]}
    cfg["llmserving:budget"] = {"hourlyUsd": 20000, "monthlyUsd": 15_000_000,
                                "alertThresholdsPercent": [50, 80, 100], "notifyEmails": ["finops@example.com"]}
    return doc


def time_preview(stack: str, stack_file: Path | None = None) -> tuple[float, int, int]:
    """Median wall seconds over RUNS, resource count, exit code."""
    times, count, code = [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "preview.json"
        cmd = [sys.executable, "-m", "infra.preview", "--stack", stack, "--json", str(out), "--quiet"]
        if stack_file:
            # A generated stack has no policies/config/<stack>.json: generate its own (as a new stack would).
            from infra import policy_config

            cfg = Path(tmp) / "policy-config.json"
            cfg.write_text(json.dumps(policy_config.policy_config(policy_config.settings_of(stack, ROOT, stack_file))))
            cmd += ["--stack-file", str(stack_file), "--policy-config", str(cfg)]
        for _ in range(RUNS):
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            code = proc.returncode
            if code not in (0, 1):
                sys.stderr.write(proc.stdout + proc.stderr)
                raise SystemExit(f"preview of {stack} failed with exit {code}")
            count = len(json.loads(out.read_text())["resources"])
    return statistics.median(times), count, code


def main() -> None:
    rows = []
    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        stack = path.name[len("Pulumi."):-len(".yaml")]
        rows.append((f"{stack} (shipped)", *time_preview(stack)))
    with tempfile.TemporaryDirectory() as tmp:
        for tenants in (10, 2000):
            f = Path(tmp) / f"Pulumi.large-{tenants}.yaml"
            f.write_text(yaml.safe_dump(worst_case_stack(tenants), sort_keys=False))
            rows.append((f"large, 10 models, {tenants} tenants", *time_preview("bench-large", f)))
    print(f"offline preview, median of {RUNS} runs (program under mocks + policy pack over gRPC)")
    print(f"{'stack':40} {'seconds':>8} {'resources':>10} {'exit':>5}")
    for name, seconds, count, code in rows:
        print(f"{name:40} {seconds:8.2f} {count:10d} {code:5d}")
    small, large = rows[-2], rows[-1]
    if small[2] != large[2]:
        raise SystemExit(f"tenants became resources: {small[2]} resources with 10 tenants, {large[2]} with 2,000")
    print(f"2,000 vs 10 tenants: same resource count ({large[2]}), time x{large[1] / small[1]:.2f}")


if __name__ == "__main__":
    main()
