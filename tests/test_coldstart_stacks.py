"""Issue 12 "Must show", on the offline previews of prod and of a 405B stack: the mirror bucket, the
mirror jobs, streaming flags valid for the pinned vLLM, the start-up estimate per model with its basis,
and no serving container that can reach the Hugging Face Hub."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from tests import serving_presets as presets
from tests.harness import ROOT, shipped_preview
from tests.test_vllm_server_args import assert_real_flags

HUB_MARKERS = ("huggingface.co", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "snapshot_download", "hf_hub_download",
               "huggingface-cli", "hf download", "HF_ENDPOINT")
WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet",
             "kubernetes:batch/v1:Job")


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """prod as shipped, and prod with the 405B preset (TP 8 x PP 2 on p5, LeaderWorkerSet)."""
    from infra.preview import preview

    stack, changes = presets.LLAMA_405B
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    doc["config"].update(changes)
    path = tmp_path_factory.mktemp("stack") / "Pulumi.prod-405b.yaml"
    path.write_text(yaml.safe_dump(doc))
    return {"prod": shipped_preview("prod"), "405b": preview("prod", stack_file=path)}


def pod_specs(r: dict):
    spec = (r["inputs"] or {}).get("spec") or {}
    if r["type"] == "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet":
        t = spec["leaderWorkerTemplate"]
        yield "leader", t["leaderTemplate"]["spec"]
        yield "worker", t["workerTemplate"]["spec"]
    else:
        yield "pod", spec["template"]["spec"]


def containers(doc: dict):
    """(resource, container, is_mirror) for every container of every workload and ECS task definition."""
    for r in doc["resources"]:
        if r["type"] in WORKLOADS:
            mirror = r["type"] == "kubernetes:batch/v1:Job"
            for _, spec in pod_specs(r):
                for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                    yield r, c, mirror
        elif r["type"] == "aws:ecs/taskDefinition:TaskDefinition":
            for c in json.loads(r["inputs"]["containerDefinitions"]):
                yield r, c, r["name"].endswith("-mirror-task")


@pytest.mark.parametrize("case", ["prod", "405b"])
def test_no_serving_container_references_the_hub(docs, case):
    doc = docs[case]
    serving = [(r, c) for r, c, mirror in containers(doc) if not mirror]
    assert serving
    for r, c in serving:
        text = json.dumps(c)
        assert not [m for m in HUB_MARKERS if m in text], f"{r['name']} container {c['name']} can reach the Hub"
    for r, c in serving:
        if c["name"] in ("vllm", "ray-worker"):
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            assert env["HF_HUB_OFFLINE"] == "1", f"{r['name']}: vLLM may fall back to the Hub"
    # The Hub token exists in the mirror jobs alone.
    mirror = [c for r, c, m in containers(doc) if m and "HF_TOKEN" in json.dumps(c)]
    assert mirror and all(c["name"] == "mirror" for c in mirror)


@pytest.mark.parametrize("case,models", [("prod", {"llama-3-1-70b", "llama-3-1-8b"}), ("405b", {"llama-3-1-405b"})])
def test_preview_shows_mirror_jobs_streaming_flags_and_the_startup_estimate(docs, case, models):
    doc = docs[case]
    by_type = {}
    for r in doc["resources"]:
        by_type.setdefault(r["type"], []).append(r)
    mirror = doc["outputs"]["modelMirror"]
    (bucket,) = [r for r in by_type["aws:s3/bucket:Bucket"] if r["inputs"]["bucket"] == mirror["bucket"]]
    assert bucket["protect"]
    jobs = {r["inputs"]["metadata"]["labels"]["llmserving.io/model"]: r for r in by_type["kubernetes:batch/v1:Job"]}
    assert set(jobs) == models == set(doc["outputs"]["startup"])
    for name, job in jobs.items():
        (copy,) = job["inputs"]["spec"]["template"]["spec"]["initContainers"]
        env = {e["name"]: e.get("value") for e in copy["env"]}
        assert f"s3://{mirror['bucket']}/{env['MIRROR_PREFIX']}" == mirror["prefixes"][name]
        assert len(env["MIRROR_REVISION"]) == 40  # pinned: prod requires it
    seen = set()
    for r in doc["resources"]:
        name = ((r["inputs"] or {}).get("metadata") or {}).get("name")
        if r["type"] not in WORKLOADS[:2] or name not in models:
            continue
        for role, spec in pod_specs(r):
            if role == "worker":
                continue
            c = spec["containers"][0]
            # `vllm serve ARGS`, the static-LoRA launcher (python3 -c LAUNCHER vllm serve) or, multi-node,
            # a shell line ending in `exec vllm serve ...`.
            argv = (c["args"] if c["command"][-2:] == ["vllm", "serve"]
                    else shlex.split(c["args"][0].split("exec vllm serve ", 1)[1]))
            assert_real_flags(argv)
            assert argv[0] == mirror["prefixes"][name]
            assert argv[argv.index("--load-format") + 1] == "runai_streamer"
            seen.add(name)
    assert seen == models
    for name, est in doc["outputs"]["startup"].items():
        assert est["basis"] and "s3_stream_mb_per_second" in est["basis"][0]
        assert est["ready_after_node_cached_image_seconds"] <= est["goal_seconds"], (name, est)
    # The goals, after the node is up (image on the node): 8B < 2 min, 70B FP8 < 6, 405B < 20.
    goals = {"llama-3-1-8b": 120, "llama-3-1-70b": 360, "llama-3-1-405b": 1200}
    assert {n: e["goal_seconds"] for n, e in doc["outputs"]["startup"].items()} == {n: goals[n] for n in models}
    assert [v for v in doc["policy"]["violations"] if v["level"] == "mandatory"] == []
    assert [f for f in doc["readiness"]["findings"] if f["level"] == "mandatory"] == []


def test_the_preview_prints_the_startup_table(docs):
    from io import StringIO

    from rich.console import Console

    from infra.preview import render

    out = StringIO()
    render(docs["405b"], Console(file=out, width=200))
    text = out.getvalue()
    assert "Start-up estimate (node launch -> Ready)" in text and "llama-3-1-405b" in text
    assert "streamed from the S3 mirror" in text
