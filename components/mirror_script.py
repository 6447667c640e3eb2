"""Copies one pinned Hugging Face Hub revision of a model into the stack's mirror bucket.

Run by the mirror Job (EKS) or the run-once mirror task (ECS) as
`python3 -c <this file>` in the pinned vLLM image, which carries python3 and
boto3 (vllm-project/vllm docker/Dockerfile at v0.11.1 installs
`runai-model-streamer[s3,gcs]`, whose S3 package requires boto3:
run-ai/runai-model-streamer py/runai_model_streamer_s3/setup.py at 0.15.0).
The Hub is read over its HTTP API with the standard library only. Settings
come from the environment:

  MIRROR_SOURCE     Hub repository id, e.g. meta-llama/Llama-3.1-8B-Instruct
  MIRROR_REVISION   40-hex commit SHA (a pin), or a branch name outside prod
  MIRROR_BUCKET     the stack's mirror bucket
  MIRROR_PREFIX     <source>/<revision>/ (what vLLM streams from)
  MIRROR_FORMAT     safetensors (default) or pt: which weight files vLLM loads
  MIRROR_CONCURRENCY, MIRROR_PART_MIB, MIRROR_KEEP_REVISIONS  tuning
  HF_TOKEN          Hub token (gated models), HF_ENDPOINT (default https://huggingface.co)
  AWS_REGION        (Pod Identity and ECS task roles give credentials, not a region)

What it copies: the model's config and tokenizer files and exactly the weight
files the checkpoint index references (never `original/*` or `consolidated*`
duplicates: vLLM's Run:ai loader streams EVERY *.safetensors under the
prefix, vllm/transformers_utils/runai_utils.py list_safetensors at v0.11.1).

Idempotent and verified: the file list, sizes and checksums come from the Hub
API at the resolved commit (`GET /api/models/<repo>/revision/<rev>?blobs=true`:
size, LFS sha256 and the git blob id of each file; huggingface_hub
hf_api.py model_info(files_metadata=True)). Every byte is hashed while it
streams to S3; a multipart upload is completed only when size and checksum
match the Hub's, else aborted. Each object carries its checksum as metadata,
so a later run skips a file whose S3 object already matches (HEAD only) and
a complete copy costs one HEAD per file. A marker object written last
(MARKER) records the commit, the files and when the copy completed. A
revision pin that the Hub resolves to another commit is an error. Files are
fetched at the resolved commit, never at a moving branch.

Old revisions: after a complete copy, revisions of the same source beyond the
newest MIRROR_KEEP_REVISIONS (by completion time; the current one always
stays) are deleted; the bucket's lifecycle expires the noncurrent versions.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

MARKER = ".llmserving-mirror"
# Config, generation config, tokenizer (fast tokenizer JSON, sentencepiece, tiktoken, BPE) and the weight index.
METADATA = ("*.json", "tokenizer.model", "*.tiktoken", "merges.txt", "vocab.txt")
# Duplicate native checkpoints shipped beside the Hugging Face one (Llama's original/, Mistral's consolidated*).
SKIP = ("original/*", "consolidated*")
WEIGHTS = {
    "safetensors": ("model.safetensors.index.json", "model.safetensors"),
    "pt": ("pytorch_model.bin.index.json", "pytorch_model.bin"),
}


class MirrorError(Exception):
    pass


def log(msg: str) -> None:
    print(f"model-mirror: {msg}", file=sys.stderr, flush=True)


# --- the Hub -------------------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        return None


class Hub:
    def __init__(self, endpoint: str, token: str | None):
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self._opener = urllib.request.build_opener(_NoRedirect)

    def _open(self, url: str, hops: int = 5):
        """GET following redirects by hand: the token goes to the Hub's own host only, never to the CDN
        a file redirects to (LFS/Xet downloads answer 302 with a presigned URL)."""
        host = urllib.parse.urlsplit(self.endpoint).netloc
        for _ in range(hops):
            headers = {"User-Agent": "llmserving-model-mirror"}
            if self.token and urllib.parse.urlsplit(url).netloc == host:
                headers["Authorization"] = f"Bearer {self.token}"
            try:
                return self._opener.open(urllib.request.Request(url, headers=headers), timeout=60)
            except urllib.error.HTTPError as e:
                if e.code in (301, 302, 303, 307, 308) and e.headers.get("Location"):
                    url = urllib.parse.urljoin(url, e.headers["Location"])
                    continue
                body = e.read(500).decode(errors="replace")
                raise MirrorError(f"GET {url.split('?')[0]}: HTTP {e.code} {body}") from None
        raise MirrorError(f"GET {url}: too many redirects")

    def revision(self, repo: str, revision: str) -> dict:
        url = (f"{self.endpoint}/api/models/{repo}/revision/{urllib.parse.quote(revision, safe='')}"
               f"?blobs=true")
        with self._open(url) as r:
            return json.load(r)

    def file(self, repo: str, commit: str, path: str):
        return self._open(f"{self.endpoint}/{repo}/resolve/{commit}/{urllib.parse.quote(path)}")


# --- what to copy ----------------------------------------------------------------------------------------

def _matches(path: str, patterns) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


def select_files(siblings: dict[str, dict], index: dict | None, fmt: str) -> list[str]:
    """Metadata files plus exactly the weight files vLLM loads."""
    index_name, single = WEIGHTS[fmt]
    metadata = [p for p in siblings if _matches(p, METADATA) and not _matches(p, SKIP)]
    if index is not None:
        weights = sorted(set(index.get("weight_map", {}).values()))
    elif single in siblings:
        weights = [single]
    else:
        raise MirrorError(f"no {index_name} and no {single} in the repository: vLLM's {fmt} loader has nothing "
                          f"to load (files: {', '.join(sorted(siblings)[:20])})")
    missing = [w for w in weights if w not in siblings]
    if missing:
        raise MirrorError(f"{index_name} references {missing}, which the revision does not have")
    return sorted(set(metadata) | set(weights))


def expected(sibling: dict) -> tuple[int, str, str]:
    """(size, checksum kind, checksum) the Hub gives for a file: LFS sha256, else the git blob sha1."""
    lfs = sibling.get("lfs")
    if lfs and lfs.get("sha256"):
        return int(lfs.get("size", sibling.get("size", 0))), "sha256", lfs["sha256"]
    if sibling.get("blobId") and sibling.get("size") is not None:
        return int(sibling["size"]), "git-sha1", sibling["blobId"]
    raise MirrorError(f"{sibling.get('rfilename')}: the Hub gave no size and checksum (ask with ?blobs=true)")


class _Digest:
    def __init__(self, kind: str, size: int):
        self.kind = kind
        self.h = hashlib.sha256() if kind == "sha256" else hashlib.sha1(b"blob %d\0" % size)

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def hexdigest(self) -> str:
        return self.h.hexdigest()


# --- S3 ---------------------------------------------------------------------------------------------------

def _matching(s3, bucket: str, key: str, size: int, kind: str, digest: str) -> bool:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    meta = head.get("Metadata") or {}
    return head.get("ContentLength") == size and meta.get(kind) == digest


def copy_file(hub: Hub, s3, *, repo: str, commit: str, path: str, bucket: str, key: str, size: int, kind: str,
              digest: str, part_bytes: int) -> str:
    """Streams one file from the Hub into S3; returns 'skipped' or 'copied'."""
    if _matching(s3, bucket, key, size, kind, digest):
        return "skipped"
    meta = {kind: digest, "hub-repo": repo, "hub-commit": commit}
    d = _Digest(kind, size)
    got = 0
    with hub.file(repo, commit, path) as r:
        if size <= part_bytes:
            body = r.read()
            got = len(body)
            d.update(body)
            _verify(path, size, kind, digest, got, d)
            s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=meta)
            return "copied"
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=meta)["UploadId"]
        try:
            parts = []
            while True:
                chunk = _read_exactly(r, part_bytes)
                if not chunk:
                    break
                got += len(chunk)
                d.update(chunk)
                n = len(parts) + 1
                etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=chunk)["ETag"]
                parts.append({"PartNumber": n, "ETag": etag})
            _verify(path, size, kind, digest, got, d)
        except BaseException:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
            raise
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    return "copied"


def _read_exactly(r, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = r.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _verify(path: str, size: int, kind: str, digest: str, got: int, d: _Digest) -> None:
    if got != size:
        raise MirrorError(f"{path}: got {got} bytes from the Hub, expected {size}")
    if d.hexdigest() != digest:
        raise MirrorError(f"{path}: {kind} {d.hexdigest()} does not match the Hub's {digest}")


def prune(s3, bucket: str, source: str, current_prefix: str, keep: int) -> list[str]:
    """Deletes the objects of revisions beyond the newest `keep` complete ones (never the current one)."""
    root = f"{source}/"
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root, Delimiter="/"):
        for cp in page.get("CommonPrefixes") or []:
            prefix = cp["Prefix"]
            if prefix == current_prefix:
                continue
            try:
                marker = json.load(s3.get_object(Bucket=bucket, Key=prefix + MARKER)["Body"])
                found.append((float(marker.get("completed_at", 0)), prefix))
            except s3.exceptions.NoSuchKey:
                found.append((0.0, prefix))  # an incomplete copy: oldest
    found.sort(reverse=True)
    removed = []
    for _, prefix in found[max(keep - 1, 0):]:
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for o in page.get("Contents") or []]
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
        removed.append(prefix)
    return removed


# --- the run ----------------------------------------------------------------------------------------------

def run(env: dict, s3=None, hub: Hub | None = None) -> dict:
    source, revision = env["MIRROR_SOURCE"], env["MIRROR_REVISION"]
    bucket, prefix = env["MIRROR_BUCKET"], env["MIRROR_PREFIX"]
    fmt = env.get("MIRROR_FORMAT", "safetensors")
    if fmt not in WEIGHTS:
        raise MirrorError(f"MIRROR_FORMAT: got {fmt!r}; allowed: {', '.join(WEIGHTS)}")
    if not prefix.endswith("/"):
        raise MirrorError(f"MIRROR_PREFIX: got {prefix!r}; must end with '/'")
    part_bytes = int(env.get("MIRROR_PART_MIB", "64")) * 2 ** 20
    concurrency = int(env.get("MIRROR_CONCURRENCY", "8"))
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    hub = hub or Hub(env.get("HF_ENDPOINT") or "https://huggingface.co", env.get("HF_TOKEN") or None)

    info = hub.revision(source, revision)
    commit = info.get("sha") or ""
    pinned = len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)
    if pinned and commit != revision:
        raise MirrorError(f"{source}: the Hub resolved revision {revision} to {commit!r}; the pin is not a commit "
                          f"of this repository")
    siblings = {s["rfilename"]: s for s in info.get("siblings") or []}
    index_name = WEIGHTS[fmt][0]
    index = None
    if index_name in siblings:
        with hub.file(source, commit, index_name) as r:
            index = json.load(r)
    files = select_files(siblings, index, fmt)
    plan = {p: expected(siblings[p]) for p in files}

    def one(p: str) -> str:
        size, kind, digest = plan[p]
        return copy_file(hub, s3, repo=source, commit=commit, path=p, bucket=bucket, key=prefix + p, size=size,
                         kind=kind, digest=digest, part_bytes=part_bytes)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        results = dict(zip(files, pool.map(one, files)))
    copied = sorted(p for p, r in results.items() if r == "copied")
    marker = {"source": source, "revision": revision, "commit": commit, "format": fmt,
              "files": {p: {"size": s, k: d} for p, (s, k, d) in plan.items()}}
    try:
        old = json.load(s3.get_object(Bucket=bucket, Key=prefix + MARKER)["Body"])
    except s3.exceptions.NoSuchKey:
        old = None
    if copied or old is None or {k: v for k, v in old.items() if k != "completed_at"} != marker:
        marker["completed_at"] = time.time()
        s3.put_object(Bucket=bucket, Key=prefix + MARKER, Body=json.dumps(marker, sort_keys=True).encode(),
                      ContentType="application/json")
    removed = prune(s3, bucket, source, prefix, int(env.get("MIRROR_KEEP_REVISIONS", "2")))
    total = sum(s for s, _, _ in plan.values())
    log(f"{source}@{commit} -> s3://{bucket}/{prefix}: {len(copied)} copied, {len(files) - len(copied)} already "
        f"complete ({total / 1e9:,.1f} GB verified)" + (f"; removed old revisions {removed}" if removed else ""))
    return {"commit": commit, "copied": copied, "skipped": sorted(set(files) - set(copied)), "removed": removed}


def main() -> int:
    try:
        run(dict(os.environ))
    except MirrorError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
