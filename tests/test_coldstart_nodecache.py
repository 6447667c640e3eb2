"""Issue 12.3 (last gap) and 12.2 (fallback): the compile/torch caches and the fallback weights live in a
node-level cache that survives pod restarts on the same node, never on pod-scoped emptyDirs.

Upstream:
- kubelet creates a DirectoryOrCreate hostPath as root 0755 and never applies fsGroup to a hostPath (volume
  attributes Managed: false): kubernetes pkg/volume/hostpath/host_path.go (makeDir, GetAttributes), v1.33;
- AL2023 boot order: nodeadm-config before cloud-init, nodeadm-run after cloud-final; nodeadm-run's run phase
  sets up the local disks (setup-local-disks mounts the array at /mnt/k8s-disks/0) and then starts kubelet
  through systemd (kubelet.service is not enabled): awslabs/amazon-eks-ami v20251103
  templates/al2023/runtime/rootfs/etc/systemd/system/nodeadm-{config,run}.service, nodeadm/cmd/nodeadm/init/init.go,
  templates/al2023/provisioners/install-nodeadm.sh; nodeadm reads only NodeConfig parts of a MIME archive
  (nodeadm/internal/configprovider/mime.go);
- Karpenter v1.14.1 keeps a user's MIME parts and appends its NodeConfig (pkg/providers/amifamily/bootstrap/nodeadm.go);
- vLLM v0.11.1 envs.py VLLM_CACHE_ROOT and compilation/compiler_interface.py (Inductor/Triton caches under it
  while compiling); flashinfer-python 0.5.2 flashinfer/jit/env.py FLASHINFER_WORKSPACE_BASE.
"""

from __future__ import annotations

import base64
import email
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from components.ecs_gpu_cluster import user_data as ecs_user_data
from components.gpu_node_group import NODE_CACHE_UNIT, NodeCacheDir, node_cache_boot_script
from components.vllm_workload import COPY_MARKER, copy_script, node_cache_dirs, render
from infra import capacity, serving
from infra import eks_catalog as ec
from infra.policy_config import policy_config
from tests.harness import inputs, of_type, settings_for, shipped_preview, stack_value
from tests.policy_fixtures import C0, Append, PackClient, mutate, rule_message, shipped_config, world

CACHE = ec.NODE_CACHE_HOST_PATH
UID = 10001
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODECLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
COMPILE_ENV = ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE")


def _pod_specs(res: dict) -> list[dict]:
    spec = res["inputs"]["spec"]
    if res["type"] == DEPLOYMENT:
        return [spec["template"]["spec"]]
    t = spec["leaderWorkerTemplate"]
    return [t["leaderTemplate"]["spec"], t["workerTemplate"]["spec"]]


def _host_path_of(pod: dict, container: dict, path: str) -> str | None:
    """Where a container path lands on the node: the hostPath volume mounted above it, or None (pod-scoped)."""
    vols = {v["name"]: v for v in pod["volumes"]}
    for m in sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"])):
        root = m["mountPath"].rstrip("/")
        if path == root or path.startswith(root + "/"):
            hp = vols[m["name"]].get("hostPath")
            return hp["path"] + path[len(root):] if hp else None
    return None


@pytest.fixture(scope="module")
def prod():
    return shipped_preview("prod")["resources"]


def _workloads(resources):
    return {r["inputs"]["metadata"]["name"]: r for r in resources if r["type"] in (DEPLOYMENT, LWS)
            and r["inputs"]["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "engine"}


def test_engine_pods_mount_the_node_cache_and_the_compile_caches_land_in_it(prod):
    engines = _workloads(prod)
    assert set(engines) == {m["name"] for m in stack_value("prod", "llmserving:models")}
    for name, res in engines.items():
        for pod in _pod_specs(res):
            (vol,) = [v for v in pod["volumes"] if "hostPath" in v]
            # The directory the node created for the serving uid; Directory fails visibly where it is missing.
            assert vol["hostPath"] == {"path": CACHE, "type": "Directory"}
            c = pod["containers"][0]
            env = {e["name"]: e.get("value") for e in c["env"]}
            for key in COMPILE_ENV:
                on_node = _host_path_of(pod, c, env[key])
                assert on_node is not None and on_node.startswith(f"{CACHE}/{name}/"), (name, key, env[key])
            # HOME, the XDG caches, HF_HOME and numba stay pod-scoped (emptyDir scratch).
            for key in ("HOME", "XDG_CACHE_HOME", "HF_HOME", "NUMBA_CACHE_DIR"):
                assert _host_path_of(pod, c, env[key]) is None, (name, key)


def _gib(q: str) -> int:
    return int(q[:-2]) if q.endswith("Gi") else -(-int(q[:-2]) // 1024)  # Mi rounded up, as the component does


def _disk_gib(pod: dict) -> int:
    return sum(_gib(v["emptyDir"]["sizeLimit"]) for v in pod["volumes"]
               if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory")


def test_the_request_covers_what_stays_on_emptydirs_only(prod):
    for name, res in _workloads(prod).items():
        pod = _pod_specs(res)[0]
        c = pod["containers"][0]
        assert _gib(c["resources"]["requests"]["ephemeral-storage"]) == _disk_gib(pod), name


def _fallback_args(model_name: str):
    """Prod with one model on the fallback path (load_format safetensors), as infra/serving.py builds it."""
    models = [dict(m, loadFormat="safetensors") if m["name"] == model_name else m
              for m in stack_value("prod", "llmserving:models")]
    s = settings_for("prod", {"llmserving:models": models})
    m = next(x for x in s.config.models if x.name == model_name)
    tol = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    sched = {p.name: {"node_selector": {"llmserving.io/pool": p.name}, "tolerations": tol, "efa": True}
             for p in s.config.gpu_pools}
    return serving.workload_args(s, capacity.plan(s), m, sched, hf_token_secret="hf-token", api_key_secret=None,
                                 mirror_bucket="mirror-bucket")


def test_fallback_weights_go_to_the_node_cache_per_model_and_revision():
    args = _fallback_args("llama-3-1-8b")
    objs = {o["kind"]: o for o in render(args)}
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    (copy,) = [c for c in pod["initContainers"] if c["name"] == "model-copy"]
    vllm = pod["containers"][0]
    weights = vllm["args"][0]
    rev = args.weights.revision
    assert _host_path_of(pod, vllm, weights) == f"{CACHE}/llama-3-1-8b/weights/{rev}"
    assert _host_path_of(pod, copy, weights) == f"{CACHE}/llama-3-1-8b/weights/{rev}"
    assert f"s3://mirror-bucket/{args.weights.prefix}" in copy["args"][0]
    # No model-sized emptyDir, and the request does not count the node cache.
    assert "model-cache" not in {v["name"] for v in pod["volumes"]}
    assert _gib(vllm["resources"]["requests"]["ephemeral-storage"]) == _disk_gib(pod)
    assert args.ops.cache_gib > 0 and _disk_gib(pod) < args.ops.cache_gib  # the checkpoint is not on an emptyDir


def test_a_second_pod_of_a_model_reuses_its_directory_and_two_models_never_share_one():
    a1 = {o["kind"]: o for o in render(_fallback_args("llama-3-1-8b"))}["Deployment"]
    a2 = {o["kind"]: o for o in render(_fallback_args("llama-3-1-8b"))}["Deployment"]
    # Deterministic: the same model renders the same node paths (a restarted or second pod on the node finds them).
    assert a1["spec"]["template"]["spec"]["containers"][0]["env"] == a2["spec"]["template"]["spec"]["containers"][0]["env"]
    d8 = node_cache_dirs("/c", "llama-3-1-8b", "r1")
    d70 = node_cache_dirs("/c", "llama-3-1-70b", "r1")
    for x in d8.values():
        for y in d70.values():
            assert not (x == y or x.startswith(y + "/") or y.startswith(x + "/")), (x, y)
    # Revisions of one model do not share weights.
    assert node_cache_dirs("/c", "m", "a")["weights"] != node_cache_dirs("/c", "m", "b")["weights"]
    assert node_cache_dirs("/c", "m/../x", "r")["model"] == "/c/m_.._x"


# --- the fallback copy: a restart on the same node copies nothing ---------------------------------------------

FAKE_AWS = """#!/bin/bash
# Records each call; `s3 sync SRC DEST` / `s3 cp SRC DEST` materialise files from $FAKE_S3 (fails if $FAIL_SYNC).
echo "$*" >> "$CALLS"
args=("$@")
src="" dest=""
for a in "${args[@]}"; do case "$a" in s3://*) src="${a#s3://}";; /*) dest="$a";; esac; done
if [ "$2" = sync ]; then
  [ -n "${FAIL_SYNC:-}" ] && { cp "$FAKE_S3/$src/shard-1.safetensors" "$dest/"; exit 1; }
  mkdir -p "$dest" && cp -r "$FAKE_S3/$src/." "$dest/" && rm -f "$dest/.llmserving-mirror"
else
  cp "$FAKE_S3/$src" "$dest"
fi
"""


@pytest.fixture()
def fake_s3(tmp_path):
    root = tmp_path / "s3" / "mirror" / "org" / "m" / "rev1"
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "shard-1.safetensors").write_bytes(b"w" * 1024)
    (root / COPY_MARKER).write_text('{"complete": true}')
    bindir = tmp_path / "bin"
    bindir.mkdir()
    aws = bindir / "aws"
    aws.write_text(FAKE_AWS)
    aws.chmod(aws.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_S3": str(tmp_path / "s3"),
           "CALLS": str(tmp_path / "calls")}
    return tmp_path, env


def _run_copy(script: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)


def test_copy_skips_a_complete_copy_so_a_restart_on_the_node_copies_nothing(fake_s3):
    tmp, env = fake_s3
    dest = str(tmp / "node" / "m" / "weights" / "rev1")
    script = copy_script("s3://mirror/org/m/rev1/", dest)
    first = _run_copy(script, env)
    assert first.returncode == 0, first.stderr
    assert sorted(os.listdir(dest)) == sorted(["config.json", "shard-1.safetensors", COPY_MARKER])
    calls = (tmp / "calls").read_text().splitlines()
    # The marker comes last: only after every other file arrived.
    assert [c.split()[1] for c in calls] == ["sync", "cp"] and calls[1].endswith(f"{dest}/{COPY_MARKER}")
    # The restart (or a second pod of the model on this node): no request at all.
    (tmp / "calls").write_text("")
    again = _run_copy(script, env)
    assert again.returncode == 0 and "nothing to copy" in again.stdout
    assert (tmp / "calls").read_text() == ""


def test_an_interrupted_copy_has_no_marker_and_resumes(fake_s3):
    tmp, env = fake_s3
    dest = str(tmp / "node" / "m" / "weights" / "rev1")
    script = copy_script("s3://mirror/org/m/rev1/", dest)
    broken = _run_copy(script, {**env, "FAIL_SYNC": "1"})
    assert broken.returncode != 0 and not Path(dest, COPY_MARKER).exists()
    resumed = _run_copy(script, env)
    assert resumed.returncode == 0 and Path(dest, COPY_MARKER).exists()
    assert "sync" in (tmp / "calls").read_text().splitlines()[-2]


# --- the node creates the cache root for the serving uid, after the array mount, before kubelet ---------------

def _mime_parts(text: str) -> dict[str, str]:
    msg = email.message_from_string(text)
    assert msg.is_multipart()
    return {p.get_content_type(): p.get_payload() for p in msg.walk() if not p.is_multipart()}


def _unit_of(script: str, tmp: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Runs the boot script with /etc/systemd/system redirected and systemctl recorded: (unit, systemctl calls)."""
    units = tmp / "units"
    units.mkdir()
    bindir = tmp / "sbin"
    bindir.mkdir()
    (bindir / "systemctl").write_text(f'#!/bin/bash\necho "$*" >> {tmp}/systemctl\n')
    (bindir / "systemctl").chmod(0o755)
    body = script.replace("/etc/systemd/system", str(units))
    r = subprocess.run(["bash", "-c", body], env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    unit: dict[str, list[str]] = {}
    for line in (units / NODE_CACHE_UNIT).read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            unit.setdefault(k, []).append(v)
    return unit, (tmp / "systemctl").read_text().splitlines()


def _assert_boot_unit(script: str, tmp: Path) -> None:
    unit, calls = _unit_of(script, tmp)
    # Enabled only: kubelet's start (by nodeadm-run, after setup-local-disks mounted the array) pulls it in and
    # waits for it. Started now (cloud-final, before the array exists) it would create the directory under the
    # mount point, and an active oneshot would not run again at kubelet's start.
    assert calls == ["daemon-reload", f"enable {NODE_CACHE_UNIT}"]
    assert unit["WantedBy"] == ["kubelet.service"] and unit["Before"] == ["kubelet.service"]
    assert "After" not in unit  # After=nodeadm-run would deadlock: nodeadm-run waits for kubelet
    assert unit["RequiresMountsFor"] == [CACHE] and unit["Type"] == ["oneshot"]
    assert unit["ExecStart"] == [f"/usr/bin/mkdir -p {CACHE}", f"/usr/bin/chown {UID}:{UID} {CACHE}",
                                 f"/usr/bin/chmod 2775 {CACHE}"]


def test_managed_node_group_user_data_creates_the_cache_for_the_serving_uid(prod, tmp_path):
    groups = [r for r in prod if r["type"] == NODE_GROUP and r["inputs"]["nodeGroupName"] != "system"]
    assert groups
    for ng in groups:
        [lt] = [r for r in prod if r["type"] == LT and r["urn"] in ng["dependencies"]]
        parts = _mime_parts(base64.b64decode(lt["inputs"]["userData"]).decode())
        assert set(parts) >= {"application/node.eks.aws", "text/x-shellscript"}
        sub = tmp_path / ng["inputs"]["nodeGroupName"]
        sub.mkdir()
        _assert_boot_unit(parts["text/x-shellscript"], sub)


def test_karpenter_node_class_user_data_creates_the_cache_for_the_serving_uid(tmp_path):
    run = shipped_preview("dev")["resources"]
    classes = [r for r in run if r["type"] == NODECLASS]
    assert classes
    for nc in classes:
        ud = nc["inputs"]["spec"]["userData"]
        # Karpenter v1.14.1 parses user data as a MIME archive when it starts with MIME-Version (parseUserData).
        assert ud.startswith("MIME-Version:")
        parts = _mime_parts(ud)
        assert list(parts) == ["text/x-shellscript"]  # Karpenter appends the NodeConfig (RAID0) itself
        sub = tmp_path / nc["inputs"]["metadata"]["name"]
        sub.mkdir()
        _assert_boot_unit(parts["text/x-shellscript"], sub)


def test_the_boot_script_refuses_root_and_odd_paths():
    from components.gpu_node_group import node_cache_problems

    assert node_cache_problems(NodeCacheDir(CACHE, UID, UID)) == []
    assert node_cache_problems(NodeCacheDir("/", UID, UID)) and node_cache_problems(NodeCacheDir(CACHE, 0, UID))
    assert node_cache_problems(NodeCacheDir("/mnt/x; rm -rf /", UID, UID))
    assert "--now" not in node_cache_boot_script(NodeCacheDir(CACHE, UID, UID))


def test_ecs_instances_create_the_cache_after_the_array_with_or_without_instance_store():
    with_nvme = base64.b64decode(ecs_user_data("c", 120, nvme=("/mnt/k8s-disks/0", CACHE, UID, "a"),
                                               cache=(CACHE, UID))).decode()
    assert with_nvme.index('mount -o defaults,noatime "$dev" /mnt/k8s-disks/0') < with_nvme.index(
        f"install -d -m 0755 -o {UID} -g {UID} {CACHE}")
    without = base64.b64decode(ecs_user_data("c", 120, cache=(CACHE, UID))).decode()
    assert f"install -d -m 0755 -o {UID} -g {UID} {CACHE}" in without and "mdadm" not in without


def test_ecs_tasks_bind_mount_the_node_cache_for_their_compile_caches():
    from tests.harness import run_stack
    from tests.test_ecs_stacks import TIERS

    run = run_stack(*TIERS["small-p4d"])
    tds = [inputs(r) for r in of_type(run, "aws:ecs/taskDefinition:TaskDefinition")
           if not inputs(r)["family"].endswith("-mirror")]
    lts = [inputs(r) for r in of_type(run, LT)]
    assert tds and lts
    for td in tds:
        assert {"name": "node-cache", "hostPath": CACHE} in td["volumes"]
        vllm = next(c for c in json.loads(td["containerDefinitions"]) if c["name"] == "vllm")
        env = {e["name"]: e["value"] for e in vllm["environment"]}
        mount = next(m for m in vllm["mountPoints"] if m["sourceVolume"] == "node-cache")
        for key in COMPILE_ENV:
            assert env[key].startswith(mount["containerPath"] + "/llama-3-1-8b/"), key
        assert vllm["user"] == f"{UID}:{UID}"
    for lt in lts:
        script = base64.b64decode(lt["userData"]).decode()
        # The pool has instance store: the array is assembled, then the cache created in it for the task uid.
        assert script.index("mdadm --create") < script.index(f"install -d -m 0755 -o {UID} -g {UID} {CACHE}")


# --- the policy exception is narrow ------------------------------------------------------------------------------

D = "llama-3-1-8b"
POD = ("spec", "template", "spec")
NODE_CACHE_VOLUME = {"name": "node-cache", "hostPath": {"path": CACHE, "type": "Directory"}}


@pytest.fixture(scope="module")
def pack():
    client = PackClient()
    yield client
    client.close()


def _cache_world():
    """The prod world with the 8B engine mounting the node cache as infra/serving.py renders it."""
    regs, stack = world("prod")
    regs = mutate(regs, D, POD + ("volumes",), Append(NODE_CACHE_VOLUME))
    regs = mutate(regs, D, C0 + ("volumeMounts",), Append({"name": "node-cache", "mountPath": "/var/cache/llmserving"}))
    return regs, stack


def _host_path(pack, regs, config) -> list[str]:
    return sorted(rule_message(v) for v in pack.judge(regs, config, "prod", only={D}, stack_policies=False)
                  if v.policy == "pss-host-path")


def test_policy_config_names_the_stack_node_cache_path():
    assert policy_config(settings_for("prod"))["pss-host-path"] == {"servingNodeCachePath": CACHE}
    assert shipped_config("prod")["pss-host-path"] == {"servingNodeCachePath": CACHE}
    from tests.test_ecs_stacks import TIERS

    assert policy_config(settings_for(*TIERS["small-p4d"]))["pss-host-path"] == {"servingNodeCachePath": ""}


MSG = "Deployment llmserving/llama-3-1-8b mounts hostPath "
BASE = "(PSS baseline; AVD-KSV-0023)"


@pytest.mark.parametrize("path, value, expected", [
    # Another path: a parent, a child, a sibling.
    (POD + ("volumes", 1, "hostPath", "path"), "/mnt/k8s-disks/0",
     f"{MSG}/mnt/k8s-disks/0 (volume 'node-cache'): node files in a pod {BASE}"),
    (POD + ("volumes", 1, "hostPath", "path"), CACHE + "/llama-3-1-8b",
     f"{MSG}{CACHE}/llama-3-1-8b (volume 'node-cache'): node files in a pod {BASE}"),
    (POD + ("volumes", 1, "hostPath", "path"), "/var/lib/kubelet",
     f"{MSG}/var/lib/kubelet (volume 'node-cache'): node files in a pod {BASE}"),
    # Another type: kubelet would create a missing directory as root.
    (POD + ("volumes", 1, "hostPath", "type"), "DirectoryOrCreate",
     f"{MSG}{CACHE} (volume 'node-cache') with type DirectoryOrCreate: the node cache is mounted with type "
     f"Directory only (the node creates it for the serving uid; a missing one must fail the mount, not be created "
     f"as root) {BASE}"),
    (POD + ("volumes", 1, "hostPath", "type"), "",
     f"{MSG}{CACHE} (volume 'node-cache') with type unset: the node cache is mounted with type Directory only (the "
     f"node creates it for the serving uid; a missing one must fail the mount, not be created as root) {BASE}"),
    # Another workload: the Deployment's pod template runs something other than a vLLM server.
    (("spec", "template"), {"metadata": {"labels": {"app.kubernetes.io/name": "web"}}, "spec": {
        "containers": [{"name": "web", "image": "nginx:1.27",
                        "volumeMounts": [{"name": "node-cache", "mountPath": "/var/cache/llmserving"}]}],
        "volumes": [NODE_CACHE_VOLUME]}},
     f"{MSG}{CACHE} (volume 'node-cache'): only serving workloads (vllm serve) may mount the node cache {BASE}"),
], ids=["parent", "child", "sibling", "directory-or-create", "type-unset", "not-serving"])
def test_the_node_cache_exception_passes_and_one_mutation_fails(pack, path, value, expected):
    regs, stack = _cache_world()
    config = shipped_config(stack)
    assert _host_path(pack, regs, config) == []
    assert _host_path(pack, mutate(regs, D, path, value), config) == [expected]


def test_without_the_configured_path_the_node_cache_is_an_ordinary_hostpath(pack):
    regs, stack = _cache_world()
    config = shipped_config(stack)
    config["pss-host-path"] = {"servingNodeCachePath": ""}
    assert _host_path(pack, regs, config) == [f"{MSG}{CACHE} (volume 'node-cache'): node files in a pod {BASE}"]


def test_the_estimate_states_a_restart_on_the_node_without_the_fallback_copy():
    from infra import startup

    args = _fallback_args("llama-3-1-8b")
    models = [dict(m, loadFormat="safetensors") if m["name"] == "llama-3-1-8b" else m
              for m in stack_value("prod", "llmserving:models")]
    s = settings_for("prod", {"llmserving:models": models})
    e = startup.estimate(s, capacity.plan(s), next(m for m in s.config.models if m.name == "llama-3-1-8b"))
    assert e.copy_seconds > 0 and args.ops.download_seconds == e.copy_seconds  # a first start on a node copies
    assert e.ready_after_restart_on_node_seconds == e.adapter_sync_seconds + e.load_seconds
    assert e.as_dict()["ready_after_restart_on_node_seconds"] < e.ready_after_node_cached_image_seconds
