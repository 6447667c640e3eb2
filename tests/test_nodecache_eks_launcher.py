"""The node cache's launcher (components/vllm_workload.py NODE_CACHE_LAUNCHER), run for real.

Upstream (vLLM v0.11.1, vllm/compilation/backends.py):
- CompilerManager.save_to_file writes <VLLM_CACHE_ROOT>/torch_compile_cache/<hash>/rank_<i>_<j>/<prefix>/
  vllm_compile_cache.py with open("w") + write (no temp file and rename); initialize_cache reads it back with
  `ast.literal_eval(f.read())` and no error handling. vllm-project/vllm#24601 (open); the atomic write
  (vllm-project/vllm#35174) came after 0.11.1. On the node cache (shared by up to 4 replicas of the 8B on one
  g5 node, and kept across restarts) a replica killed mid-write leaves a file that crash-loops every later start.
- The cache directories come from os.makedirs (backends.py VllmBackend.__call__, compiler_interface.py
  InductorAdaptor.initialize_cache): mode 0777 & ~umask, so under 022 the other uid of the same gid (the EFA
  engine runs as uid 0 with the serving gid) cannot write them.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pprint
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from components.vllm_workload import NODE_CACHE_LAUNCHER, STATIC_LORA_LAUNCHER, render
from infra import eks_catalog as ec
from tests import serving_presets as presets
from tests.harness import shipped_preview, stack_value
from tests.test_serving import rendered

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
CACHE_FILE = "vllm_compile_cache.py"
# What save_to_file writes: pprint of {(runtime_shape, graph_index, compiler name): handle}.
GOOD = pprint.PrettyPrinter(indent=4).pformat({(None, 0, "inductor_standalone"): ("artifact_shape_None_subgraph_0",
                                                                                  "/x/inductor_cache/ab"),
                                               (8, 1, "inductor_standalone"): ("artifact_shape_8_subgraph_1",
                                                                               "/x/inductor_cache/cd")})


def _read_as_vllm_does(path: Path):
    """backends.py CompilerManager.initialize_cache at v0.11.1: open (text, default encoding), literal_eval."""
    with open(path) as f:
        return ast.literal_eval(f.read())


def _cache_tree(root: Path) -> dict[str, Path]:
    """A compile cache with one good entry, one truncated by a kill mid-write, one emptied by open("w")."""
    dirs = {}
    for key, content in (("good", GOOD), ("truncated", GOOD[:len(GOOD) // 2]), ("empty", "")):
        d = root / "torch_compile_cache" / f"{key}0000000" / "rank_0_0" / "backbone"
        d.mkdir(parents=True)
        (d / CACHE_FILE).write_text(content)
        (d / "computation_graph.py").write_text("# graph\n")
        dirs[key] = d
    # The premise: vLLM's own read crashes on the bad ones, and only on those.
    assert _read_as_vllm_does(dirs["good"] / CACHE_FILE)
    for key in ("truncated", "empty"):
        with pytest.raises(SyntaxError):
            _read_as_vllm_does(dirs[key] / CACHE_FILE)
    return dirs


def _umask_022():
    os.umask(0o022)  # the container runtime's default; the launcher must change it itself


PROBE = textwrap.dedent("""
    import json, os, sys
    os.makedirs(sys.argv[1])
    json.dump({"argv": sys.argv[2:], "umask": os.umask(0)}, open(os.environ["OUT"], "w"))
""")


def test_the_launcher_drops_unparseable_compile_caches_sets_umask_002_and_execs(tmp_path):
    root = tmp_path / "vllm"
    dirs = _cache_tree(root)
    out, made = tmp_path / "out.json", tmp_path / "made" / "rank_1_0"
    env = {**os.environ, "VLLM_CACHE_ROOT": str(root), "OUT": str(out)}
    done = subprocess.run([sys.executable, "-c", NODE_CACHE_LAUNCHER, sys.executable, "-c", PROBE, str(made), "a", "b"],
                          env=env, capture_output=True, text=True, timeout=60, preexec_fn=_umask_022)
    assert done.returncode == 0, done.stderr
    # The exec happened, with the rest of argv.
    assert json.loads(out.read_text())["argv"] == ["a", "b"]
    # The good cache stays whole; the directories of the bad files are gone (vLLM compiles into them again).
    assert _read_as_vllm_does(dirs["good"] / CACHE_FILE) and (dirs["good"] / "computation_graph.py").exists()
    assert not dirs["truncated"].exists() and not dirs["empty"].exists()
    for key in ("truncated", "empty"):
        assert f"removing compile cache {dirs[key]}: {dirs[key] / CACHE_FILE} does not parse (SyntaxError" in done.stderr
    assert "good0000000" not in done.stderr
    # umask 002 for what the engine creates: a directory is group-writable (setgid root: the serving gid), so a
    # pod of the model running as the other uid of that gid can write into it.
    assert json.loads(out.read_text())["umask"] == 0o002
    assert stat.S_IMODE(made.stat().st_mode) & stat.S_IWGRP


def test_without_a_cache_the_launcher_only_sets_umask_and_execs(tmp_path):
    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if k != "VLLM_CACHE_ROOT"}
    done = subprocess.run([sys.executable, "-c", NODE_CACHE_LAUNCHER, sys.executable, "-c", PROBE,
                           str(tmp_path / "d"), "x"], env={**env, "OUT": str(out)}, capture_output=True, text=True,
                          timeout=60, preexec_fn=_umask_022)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert json.loads(out.read_text()) == {"argv": ["x"], "umask": 0o002}


# --- the rendered pods start through it ------------------------------------------------------------------------

def _stub(bin_dir: Path, name: str, body: str) -> None:
    p = bin_dir / name
    p.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    p.chmod(0o755)


RECORD = """
    import json, os, sys
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps({"prog": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "umask": os.umask(0)}) + "\\n")
"""


def _fake_image(tmp_path: Path) -> tuple[dict, Path]:
    """PATH with python3 (this interpreter), and vllm/ray stubs that record their argv and umask; a `ray` module
    whose cluster has every node of the group alive (the leader's wait)."""
    bin_dir, mods = tmp_path / "bin", tmp_path / "mods"
    bin_dir.mkdir()
    (mods / "ray").mkdir(parents=True)
    (mods / "ray" / "__init__.py").write_text(
        "import os\ndef init(**kw): pass\ndef nodes(): return [{'Alive': True}] * int(os.environ['LWS_GROUP_SIZE'])\n")
    (bin_dir / "python3").symlink_to(sys.executable)
    _stub(bin_dir, "vllm", RECORD)
    _stub(bin_dir, "ray", RECORD)
    out = tmp_path / "record.jsonl"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(mods), "OUT": str(out),
           "LWS_GROUP_SIZE": "2", "LWS_LEADER_ADDRESS": "leader.test"}
    return env, out


def _run_container(c: dict, env: dict, out: Path, cache_root: Path) -> list[dict]:
    """The container's command line as the runtime runs it (command + args), VLLM_CACHE_ROOT on a temp tree."""
    env = {**env, "VLLM_CACHE_ROOT": str(cache_root)}
    done = subprocess.run([*c["command"], *c["args"]], env=env, capture_output=True, text=True, timeout=60,
                          preexec_fn=_umask_022)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_every_engine_container_starts_behind_the_launcher_when_it_uses_the_node_cache():
    for stack in ("prod", "dev"):
        models = {m["name"] for m in stack_value(stack, "llmserving:models")}
        for r in shipped_preview(stack)["resources"]:
            if r["type"] not in (DEPLOYMENT, LWS) or r["inputs"]["metadata"]["name"] not in models:
                continue
            spec = r["inputs"]["spec"]
            pods = ([spec["template"]["spec"]] if r["type"] == DEPLOYMENT else
                    [spec["leaderWorkerTemplate"][t]["spec"] for t in ("leaderTemplate", "workerTemplate")])
            for pod in pods:
                assert any(v.get("hostPath", {}).get("path") == ec.NODE_CACHE_HOST_PATH for v in pod["volumes"])
                c = pod["containers"][0]
                assert c["command"][:3] == ["python3", "-c", NODE_CACHE_LAUNCHER], (stack, r["name"])


def test_the_deployment_command_cleans_the_cache_then_serves(tmp_path):
    _, objs = rendered(presets.MULTI_MODEL_8B, "llama-3-1-8b")
    c = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env, out = _fake_image(tmp_path)
    dirs = _cache_tree(tmp_path / "cache")
    [rec] = _run_container(c, env, out, tmp_path / "cache")
    assert rec == {"prog": "vllm", "argv": ["serve", *c["args"]], "umask": 0o002}
    assert not dirs["truncated"].exists() and dirs["good"].exists()


def test_the_static_lora_deployment_cleans_the_cache_then_filters_adapters_then_serves(tmp_path):
    _, objs = rendered(presets.LORA, "llama-3-1-8b")
    c = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    # Both launchers, this one first (the image checks follow the chain to `vllm serve`).
    assert c["command"] == ["python3", "-c", NODE_CACHE_LAUNCHER, "python3", "-c", STATIC_LORA_LAUNCHER, "vllm", "serve"]
    env, out = _fake_image(tmp_path)
    dirs = _cache_tree(tmp_path / "cache")
    [rec] = _run_container(c, env, out, tmp_path / "cache")
    assert rec["prog"] == "vllm" and rec["argv"][0] == "serve" and rec["umask"] == 0o002
    assert "--lora-modules" not in rec["argv"]  # nothing synced here: the filter ran too
    assert not dirs["truncated"].exists() and dirs["good"].exists()


def test_the_leaderworkerset_leader_and_worker_clean_the_cache_and_ray_inherits_the_umask(tmp_path):
    """Multi-node: the engine's workers are Ray actors started by the raylet `ray start` launched, so the whole
    shell line runs behind the launcher (umask inherited by everything it starts)."""
    _, objs = rendered(presets.LLAMA_405B)
    t = objs["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
    for role, want in (("leaderTemplate", ["ray", "vllm"]), ("workerTemplate", ["ray"])):
        c = t[role]["spec"]["containers"][0]
        assert c["command"] == ["python3", "-c", NODE_CACHE_LAUNCHER, "/bin/bash", "-c"], role
        run_dir = tmp_path / role
        run_dir.mkdir()
        env, out = _fake_image(run_dir)
        dirs = _cache_tree(run_dir / "cache")
        recs = _run_container(c, env, out, run_dir / "cache")
        assert [r["prog"] for r in recs] == want, role
        assert all(r["umask"] == 0o002 for r in recs), role
        assert recs[0]["argv"][0] == "start"
        if role == "leaderTemplate":
            assert recs[-1]["argv"][0] == "serve"
        assert not dirs["truncated"].exists() and dirs["good"].exists(), role


def test_without_a_node_cache_the_engine_starts_as_before():
    args, _ = rendered(presets.MULTI_MODEL_8B, "llama-3-1-8b")
    # The pod-scoped caches start empty with every pod: nothing to clean, no launcher.
    args = dataclasses.replace(args, node_cache=None, server=dataclasses.replace(
        args.server, model=args.weights.uri))
    dep = next(o for o in render(args) if o["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["vllm", "serve"]


def test_the_ecs_task_cleans_the_instance_cache_then_serves(tmp_path):
    """ECS tasks bind-mount the instance's node cache for the same compile caches: the same launcher runs first
    (entryPoint), then vLLM with the task's command."""
    from tests.test_ecs_stacks import _lora_run, _task

    _, containers = _task(_lora_run(2), "llama-3-1-8b")
    vllm = next(c for c in containers if c["name"] == "vllm")
    assert vllm["entryPoint"][:3] == ["python3", "-c", NODE_CACHE_LAUNCHER]
    env, out = _fake_image(tmp_path)
    dirs = _cache_tree(tmp_path / "cache")
    [rec] = _run_container({"command": vllm["entryPoint"], "args": vllm["command"]}, env, out, tmp_path / "cache")
    assert rec["prog"] == "vllm" and rec["argv"][0] == "serve" and rec["umask"] == 0o002
    assert not dirs["truncated"].exists() and dirs["good"].exists()
