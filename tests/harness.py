"""Shared test harness: stack configs, the mock engine, rendered-object validation.

Unit tests of components use `run_component`; whole-stack tests use
`run_stack`, which runs the real program (`infra/` via runpy) under the same
mocks as the offline preview.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Optional

from infra.config import Settings, load_settings
from infra.mockcloud import ProgramRun, Registration, plain, run_callable, run_program
from infra.preview import read_stack

ROOT = Path(__file__).resolve().parent.parent
# Upstream CRD schemas: LLMSERVING_CRDS, else ../shared/crds beside the checkout
# (the team's source of truth), else the copy in tests/crds (a clone on its own,
# e.g. GitHub Actions); test_crd_copy.py keeps the copy identical to shared/.
SHARED_CRDS = ROOT.parent / "shared" / "crds"
VENDORED_CRDS = ROOT / "tests" / "crds"
CRDS = Path(os.environ.get("LLMSERVING_CRDS") or (SHARED_CRDS if SHARED_CRDS.is_dir() else VENDORED_CRDS))


def stack_config(stack: str, changes: Optional[dict[str, Any]] = None,
                 remove: tuple[str, ...] = ()) -> tuple[dict[str, str], list[str]]:
    """The engine-form config of a shipped stack, with keys replaced or removed.

    `changes` maps full keys ("llmserving:network") to new values (Python
    objects; structured values are JSON-encoded like the CLI does).
    """
    files = read_stack(ROOT, stack)
    config = dict(files.config)
    for key in remove:
        config.pop(key, None)
    for key, value in (changes or {}).items():
        config[key] = value if isinstance(value, str) else json.dumps(value)
    return config, list(files.secret_keys)


def stack_value(stack: str, key: str) -> Any:
    """A structured config value of a shipped stack, as a Python object (deep copy)."""
    config, _ = stack_config(stack)
    raw = config[key]
    try:
        return copy.deepcopy(json.loads(raw))
    except json.JSONDecodeError:
        return raw


def settings_for(stack: str, changes: Optional[dict[str, Any]] = None, remove: tuple[str, ...] = ()) -> Settings:
    config, secrets = stack_config(stack, changes, remove)
    return load_settings(config, stack=stack, secret_keys=set(secrets))


# --- whole-stack runs, computed once per test session ------------------------------------------
#
# A stack run is a pure function of its config and the code (test_preview.py proves two runs
# give identical JSON), and the suite asks for the same few configs in many modules. Each result
# is kept as bytes (pickle for a ProgramRun, JSON for a preview document) and every caller gets a
# fresh copy, so a caller may mutate what it gets. Under pytest-xdist the workers also share the
# results through a folder the controller creates for the session (tests/conftest.py calls
# share_runs); a lock per key makes the second worker wait for the first one's result instead
# of computing it again. The folder lives for one session only.
#
# A test that uses `monkeypatch` may have changed the code a run executes (a component, the
# mocks, the engine's monitor): tests/conftest.py marks it (patched_test), and while it runs
# `run_stack` computes afresh and nothing it computes is kept.

_RESULTS: dict[str, bytes] = {}
_SHARED: Optional[Path] = None
_PATCHED = False


def share_runs(folder: Optional[Path]) -> None:
    """Share computed runs through `folder` with the other test processes of this session (None: in-process only)."""
    global _SHARED
    _SHARED = folder


def patched_test(patched: bool) -> None:
    """Whether the test now running may have patched the code under test (it uses `monkeypatch`)."""
    global _PATCHED
    _PATCHED = patched


def _once(kind: str, key: Any, compute: Callable[[], bytes]) -> bytes:
    digest = hashlib.sha256(json.dumps([kind, key], sort_keys=True).encode()).hexdigest()[:32]
    if digest in _RESULTS:
        return _RESULTS[digest]
    path = _SHARED / f"{kind}-{digest}" if _SHARED is not None else None
    if _PATCHED:
        # What an unpatched run kept is still good to read (written whole by os.replace); what a
        # patched test computes is not kept.
        return path.read_bytes() if path is not None and path.exists() else compute()
    if path is None:
        data = compute()
    else:
        with open(f"{path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if path.exists():
                    data = path.read_bytes()
                else:
                    data = compute()
                    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
                    tmp.write_bytes(data)
                    os.replace(tmp, path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    _RESULTS[digest] = data
    return data


def once_per_session(key: str, compute: Callable[[], Any]) -> Any:
    """`compute()` once per test session (shared by the xdist workers), for a fixture whose value
    does not depend on which worker asks (no paths of its own tmp folder in it). The value must
    pickle; every call returns its own copy. `key` names the fixture ("test_preview.dev_run")."""
    return pickle.loads(_once("value", key, lambda: pickle.dumps(compute(), protocol=pickle.HIGHEST_PROTOCOL)))


def _run_config(config: dict[str, str], secrets: list[str], stack: str, first_deploy: bool) -> ProgramRun:
    region = config.get("aws:region", "us-east-1")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return run_program(str(ROOT / "infra"), project="llmserving", stack=stack, config=config,
                           secret_keys=secrets, region=region, first_deploy=first_deploy)
    finally:
        os.chdir(cwd)


def _run_bytes(stack: str, config: dict[str, str], secrets: list[str], first_deploy: bool) -> bytes:
    return _once("run", [stack, config, sorted(secrets), first_deploy],
                 lambda: pickle.dumps(_run_config(config, secrets, stack, first_deploy),
                                      protocol=pickle.HIGHEST_PROTOCOL))


def run_stack(stack: str, changes: Optional[dict[str, Any]] = None, remove: tuple[str, ...] = (), *,
              first_deploy: bool = False) -> ProgramRun:
    """Runs the real program for a stack config under mocks, as the CLI would.

    `first_deploy`: computed outputs unknown, as in a first `pulumi preview` (infra/mockcloud.py).
    Computed once per session for each distinct config; every call returns its own copy.
    A config the program rejects raises on every call (errors are not kept). In a test that
    uses `monkeypatch` it always runs afresh (the patch may change what the program does).
    """
    config, secrets = stack_config(stack, changes, remove)
    if _PATCHED:
        return _run_config(config, secrets, stack, first_deploy)
    return pickle.loads(_run_bytes(stack, config, secrets, first_deploy))


_SHIPPED_RUNS: dict[str, ProgramRun] = {}


def shipped_run(stack: str) -> ProgramRun:
    """`run_stack` of a shipped stack, one object per test process; treat it as read-only."""
    if stack not in _SHIPPED_RUNS:
        config, secrets = stack_config(stack)
        run = pickle.loads(_run_bytes(stack, config, secrets, False))
        if _PATCHED:
            return run
        _SHIPPED_RUNS[stack] = run
    return _SHIPPED_RUNS[stack]


def _shipped_preview_json(stack: str) -> str:
    from infra.preview import preview

    return _once("preview", [stack], lambda: json.dumps(preview(stack)).encode()).decode()


def shipped_preview(stack: str) -> dict:
    """The offline preview document of a shipped stack, computed once per session (a fresh copy each call)."""
    return json.loads(_shipped_preview_json(stack))


def rendered_variant(label: str) -> dict:
    """`infra.scan.render` of a tests/stacks/<label>.yaml variant (the preview without the policy pack),
    computed once per session (a fresh copy each call)."""
    from infra.scan import render, variant_files

    return json.loads(_once("variant", [label], lambda: json.dumps(render(label, variant_files()[label])).encode()))


def only_policy(policy_config: dict[str, Any], policy: str) -> Optional[dict[str, Any]]:
    """A policy config that keeps `policy` exactly as `policy_config` sets it and disables every other
    rule, for a test that reads one rule's verdicts: the SDK skips a disabled rule before it reads a
    resource (pulumi_policy policy.py Analyze/AnalyzeStack), and rules do not see each other's verdicts.
    None when the rule's level cannot be told from the config alone (no level of its own and no "all")."""
    entry = policy_config.get(policy)
    default = policy_config.get("all")
    default = default.get("enforcementLevel") if isinstance(default, dict) else default
    if isinstance(entry, str):
        return {"all": "disabled", policy: entry}
    entry = dict(entry or {})
    level = entry.get("enforcementLevel", default)
    if level is None:
        return None
    return {"all": "disabled", policy: {**entry, "enforcementLevel": level}}


def run_component(build: Callable[[], Any], *, region: str = "us-east-1") -> ProgramRun:
    return run_callable(build, region=region)


def of_type(run: ProgramRun, typ: str) -> list[Registration]:
    return [r for r in run.registrations if r.type == typ]


def inputs(reg: Registration, *, reveal_secrets: bool = False) -> dict:
    """Recorded inputs as plain JSON; secrets masked unless revealed (they hold offline placeholders)."""
    return plain(reg.inputs, reveal_secrets=reveal_secrets)


def one(run: ProgramRun, typ: str, name: Optional[str] = None) -> Registration:
    found = [r for r in of_type(run, typ) if name is None or r.name == name]
    assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
    return found[0]
