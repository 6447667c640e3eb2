"""The model mirror job's script, run as the Job runs it (`python3 -c <script>`), against a fake Hub
(HTTP on loopback, with a separate "CDN" host for LFS redirects) and a moto S3 server on loopback.

Checks what the issue asks of the mirror: a pinned revision is copied to s3://<bucket>/<source>/<rev>/
with only the files vLLM loads, every byte verified against the Hub's sizes and checksums, a second
run skips the complete copy, a pin the Hub resolves elsewhere fails, a corrupted download fails and
leaves no object, the token never leaves the Hub host, and old revisions are pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components import mirror_script

import boto3  # noqa: E402  (requirements-dev.txt)
from moto import server as moto_server  # noqa: E402  (requirements-dev.txt: never skipped)

REPO = "acme-org/tiny-llm"
REV1 = "1" * 40
REV2 = "2" * 40
BUCKET = "mirror-test"
TOKEN = "hf_test_token"


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _revision_files(tag: bytes) -> dict[str, bytes]:
    shard1, shard2 = b"A" * (3 * 2 ** 20 + 17) + tag, b"B" * 1000 + tag
    index = {"metadata": {"total_size": len(shard1) + len(shard2)},
             "weight_map": {"layer.0": "model-00001-of-00002.safetensors", "layer.1": "model-00002-of-00002.safetensors"}}
    return {
        "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
        "tokenizer.json": b'{"tok": 1}',
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": shard1,
        "model-00002-of-00002.safetensors": shard2,
        # Never mirrored: duplicates of the weights and files vLLM does not read.
        "original/consolidated.00.pth": b"X" * 4096,
        "consolidated.safetensors": b"Y" * 4096,
        "README.md": b"# tiny",
    }


class FakeHub:
    """Hub API + resolve endpoint; LFS files (weights) redirect to a second host (the CDN)."""

    def __init__(self):
        self.commits = {REV1: _revision_files(b"1"), REV2: _revision_files(b"2")}
        self.main = REV1
        self.requests: list[tuple[str, str, str | None]] = []  # (host, path, authorization)
        self.corrupt: set[str] = set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                host = "cdn" if self.server is hub.cdn else "hub"
                hub.requests.append((host, self.path, self.headers.get("Authorization")))
                path = self.path.split("?")[0]
                if host == "cdn":
                    commit, name = path[len("/cdn/"):].split("/", 1)
                    return self._send(hub._content(commit, name))
                if path.startswith(f"/api/models/{REPO}/revision/"):
                    rev = path.rsplit("/", 1)[1]
                    commit = hub.main if rev == "main" else rev
                    if commit not in hub.commits:
                        return self._send(b'{"error": "Revision Not Found"}', 404)
                    return self._send(json.dumps(hub.info(commit)).encode())
                prefix = f"/{REPO}/resolve/"
                if path.startswith(prefix):
                    commit, name = path[len(prefix):].split("/", 1)
                    if name.endswith(".safetensors"):
                        self.send_response(302)
                        self.send_header("Location", f"http://127.0.0.1:{hub.cdn.server_port}/cdn/{commit}/{name}")
                        self.end_headers()
                        return
                    return self._send(hub._content(commit, name))
                self._send(b"not found", 404)

            def _send(self, body: bytes, code: int = 200):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.hub = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        for s in (self.hub, self.cdn):
            # A short poll: shutdown() waits up to one interval (0.5 s by default) per server.
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _content(self, commit: str, name: str) -> bytes:
        data = self.commits[commit][name]
        return data[:-1] + b"!" if name in self.corrupt else data

    def info(self, commit: str) -> dict:
        siblings = []
        for name, data in self.commits[commit].items():
            s = {"rfilename": name, "size": len(data), "blobId": _git_sha1(data)}
            if name.endswith((".safetensors", ".pth")):
                s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            siblings.append(s)
        return {"id": REPO, "sha": commit, "siblings": siblings}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.hub.server_port}"

    def close(self):
        for s in (self.hub, self.cdn):
            s.shutdown()
            s.server_close()


@pytest.fixture(scope="module")
def s3_endpoint():
    """One moto S3 server for the module (stopping one waits for its 0.5 s poll); each test resets it."""
    s3_server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3_server.start()
    host, port = s3_server.get_host_and_port()
    yield f"http://{host}:{port}"
    s3_server.stop()


@pytest.fixture
def cloud(s3_endpoint):
    endpoint = s3_endpoint
    # moto keeps its backends per process: start every test from an empty account.
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).read()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint}
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    hub = FakeHub()
    yield hub, s3, env
    hub.close()


def job_command() -> list[str]:
    """The mirror container's command exactly as the Job renders it (python3 -c <script>)."""
    from components.vllm_workload import mirror_container

    c = mirror_container(image="vllm/vllm-openai:v0.11.1", source=REPO, revision=REV1, bucket=BUCKET,
                         prefix=f"{REPO}/{REV1}/", load_format="runai_streamer", region="us-east-1",
                         hf_token_secret="hf-token", concurrency=4, part_mib=5, keep_revisions=2,
                         run_as_user=1000)
    assert c["command"][:2] == ["python3", "-c"]
    assert c["command"][2] == Path(mirror_script.__file__).read_text()
    return c["command"], {e["name"]: e.get("value") for e in c["env"]}


def run_job(hub: FakeHub, cloud_env: dict, revision: str, **extra) -> subprocess.CompletedProcess:
    command, rendered_env = job_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HF_"))}
    env.update(cloud_env)
    env.update({k: v for k, v in rendered_env.items() if v is not None})
    env.update({"MIRROR_REVISION": revision, "MIRROR_PREFIX": f"{REPO}/{revision}/", "HF_ENDPOINT": hub.endpoint,
                "HF_TOKEN": TOKEN, **extra})
    return subprocess.run([sys.executable, "-c", command[2]], env=env, capture_output=True, text=True, timeout=60)


def keys(s3, prefix: str = "") -> dict[str, int]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents") or []})
    return out


def test_copies_the_pinned_revision_with_only_what_vllm_loads(cloud):
    hub, s3, env = cloud
    hub.main = REV2  # the branch moved on: the pin must still copy REV1
    p = run_job(hub, env, REV1)
    assert p.returncode == 0, p.stderr
    want = {f"{REPO}/{REV1}/{n}" for n in ("config.json", "tokenizer.json", "model.safetensors.index.json",
                                              "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                              mirror_script.MARKER)}
    assert set(keys(s3)) == want
    for name, data in hub.commits[REV1].items():
        key = f"{REPO}/{REV1}/{name}"
        if key in want:
            assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    # Only the pinned commit was asked for, and files at that commit.
    hub_paths = [path for host, path, _ in hub.requests if host == "hub"]
    assert all(REV2 not in path and "/main" not in path for path in hub_paths), hub_paths
    # The token went to the Hub only, never to the CDN host a weight file redirects to.
    assert all(auth == f"Bearer {TOKEN}" for host, _, auth in hub.requests if host == "hub")
    assert [auth for host, _, auth in hub.requests if host == "cdn"] == [None, None]
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{REPO}/{REV1}/{mirror_script.MARKER}")["Body"].read())
    assert marker["commit"] == REV1 and set(marker["files"]) == {k.rsplit("/", 1)[1] for k in want} - {mirror_script.MARKER}


def test_a_complete_copy_is_skipped_and_verified_by_head_only(cloud):
    hub, s3, env = cloud
    assert run_job(hub, env, REV1).returncode == 0
    marker_before = s3.head_object(Bucket=BUCKET, Key=f"{REPO}/{REV1}/{mirror_script.MARKER}")["LastModified"]
    hub.requests.clear()
    p = run_job(hub, env, REV1)
    assert p.returncode == 0, p.stderr
    assert "0 copied, 5 already complete" in p.stderr
    # No file was downloaded again: only the revision listing and the index.
    downloads = [path for host, path, _ in hub.requests if "/resolve/" in path or host == "cdn"]
    assert downloads == [f"/{REPO}/resolve/{REV1}/model.safetensors.index.json"]
    assert s3.head_object(Bucket=BUCKET, Key=f"{REPO}/{REV1}/{mirror_script.MARKER}")["LastModified"] == marker_before


def test_an_object_that_does_not_match_the_hub_is_copied_again(cloud):
    hub, s3, env = cloud
    assert run_job(hub, env, REV1).returncode == 0
    key = f"{REPO}/{REV1}/model-00002-of-00002.safetensors"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"truncated")  # e.g. an interrupted or tampered copy
    p = run_job(hub, env, REV1)
    assert p.returncode == 0, p.stderr
    assert "1 copied" in p.stderr
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == hub.commits[REV1]["model-00002-of-00002.safetensors"]


@pytest.mark.parametrize("name", ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                  "config.json"])
def test_a_download_that_fails_its_checksum_fails_the_job_and_leaves_no_object(cloud, name):
    # The multipart path (shard 1 is bigger than a part), the single-put path and a git-blob (non-LFS) file.
    hub, s3, env = cloud
    hub.corrupt.add(name)
    p = run_job(hub, env, REV1)
    assert p.returncode == 1
    assert f"{name}: " in p.stderr and "does not match the Hub's" in p.stderr
    assert f"{REPO}/{REV1}/{name}" not in keys(s3)
    assert f"{REPO}/{REV1}/{mirror_script.MARKER}" not in keys(s3)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads") in (None, [])


def test_a_pin_the_hub_does_not_have_fails_clearly(cloud):
    hub, s3, env = cloud
    p = run_job(hub, env, "3" * 40)
    assert p.returncode == 1
    assert "HTTP 404" in p.stderr and "Revision Not Found" in p.stderr
    assert keys(s3) == {}


def test_old_revisions_beyond_the_kept_count_are_deleted(cloud):
    hub, s3, env = cloud
    assert run_job(hub, env, REV1).returncode == 0
    assert run_job(hub, env, REV2, MIRROR_KEEP_REVISIONS="2").returncode == 0
    assert {k.split("/")[2] for k in keys(s3)} == {REV1, REV2}  # the previous revision stays for a rollback
    p = run_job(hub, env, REV2, MIRROR_KEEP_REVISIONS="1")
    assert p.returncode == 0, p.stderr
    assert {k.split("/")[2] for k in keys(s3)} == {REV2}


def test_file_selection_follows_the_index_and_refuses_a_missing_shard():
    siblings = {n: {} for n in ("config.json", "model.safetensors.index.json", "a.safetensors",
                                "original/params.json", "consolidated.safetensors")}
    files = mirror_script.select_files(siblings, {"weight_map": {"x": "a.safetensors"}}, "safetensors")
    assert files == ["a.safetensors", "config.json", "model.safetensors.index.json"]
    with pytest.raises(mirror_script.MirrorError, match="references"):
        mirror_script.select_files(siblings, {"weight_map": {"x": "b.safetensors"}}, "safetensors")
    with pytest.raises(mirror_script.MirrorError, match="nothing"):
        mirror_script.select_files({"config.json": {}}, None, "safetensors")
