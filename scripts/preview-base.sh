#!/usr/bin/env bash
# Writes the offline-preview document (BASE.json) of another git ref, to diff against:
#
#   scripts/preview-base.sh REF OUT_DIR STACK...
#   e.g. scripts/preview-base.sh origin/main out dev prod
#        -> out/base-dev.json, out/base-prod.json
#   then python -m infra.preview --stack dev --diff out/base-dev.json --markdown out/dev.md
#
# It checks REF out into a temporary `git worktree` (detached, removed again on
# exit), and runs `python -m infra.preview --json` there with the current
# virtualenv's python (PYTHON, default .venv/bin/python). The temporary tree comes
# first on sys.path, so the base's own infra/, components/ and policies/ run, not
# this checkout's (the editable install is only a fallback).
#
# A stack that does not exist at REF gets an empty base document (everything is
# "to create"). A base whose preview fails (exit 2/3) is an error: its message is
# shown and this script exits 3; a base with policy violations (exit 1) is fine.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 REF OUT_DIR STACK..." >&2
  exit 64
fi
ref=$1 out=$2
shift 2
root=$(git rev-parse --show-toplevel)
python=${PYTHON:-$root/.venv/bin/python}
[[ -x $python ]] || { echo "error: $python not found (run make test once, or set PYTHON)" >&2; exit 3; }
sha=$(git -C "$root" rev-parse --verify "$ref^{commit}") || { echo "error: unknown git ref $ref" >&2; exit 3; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/preview-base.XXXXXX")
cleanup() {
  git -C "$root" worktree remove --force "$tmp/tree" >/dev/null 2>&1 || true
  rm -rf "$tmp"
  git -C "$root" worktree prune >/dev/null 2>&1 || true
}
trap cleanup EXIT

git -C "$root" worktree add --quiet --detach "$tmp/tree" "$sha"

status=0
for stack in "$@"; do
  target="$out/base-$stack.json"
  if [[ ! -f "$tmp/tree/Pulumi.$stack.yaml" ]]; then
    echo "base $ref: no Pulumi.$stack.yaml; writing an empty base for $stack" >&2
    printf '{"project": null, "stack": "%s", "resources": [], "capacity": {}, "cost": {}, "policy": {"violations": []}}\n' \
      "$stack" >"$target"
    continue
  fi
  rc=0
  (cd "$tmp/tree" && PYTHONPATH="$tmp/tree${PYTHONPATH:+:$PYTHONPATH}" \
     "$python" -m infra.preview --stack "$stack" --json "$target" --quiet) >"$tmp/$stack.log" 2>&1 || rc=$?
  if [[ $rc -gt 1 || ! -f $target ]]; then
    echo "error: the offline preview of $stack at $ref ($sha) failed (exit $rc):" >&2
    cat "$tmp/$stack.log" >&2
    rm -f "$target"
    status=3
  else
    echo "base $ref ($sha) $stack -> $target" >&2
  fi
done
exit $status
