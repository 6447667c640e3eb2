"""What the policy pack could not judge on a first deploy, and what it skipped without saying so.

A real first `pulumi preview` sees every provider-computed output (ids, ARNs,
endpoints) as unknown (infra/mockcloud.py, first-deploy mode), and so every
input built from one. A rule that needs such a value cannot judge it. The
contract with the pack: such a rule reports an advisory violation whose
message starts with "could not judge: " (followed by the rule's subject and
the unknown input's path); the pulumi_policy SDK itself reports "can't run
policy ... during preview" when a rule touches an unknown through its proxy
(pulumi_policy/policy.py, UnknownValueError). Both are collected here as
`unjudged`.

Two checks find what a rule skipped silently:

- verdicts: the mandatory violations of a run with known values and of a
  first-deploy run are compared per (policy, resource). A violation that
  disappears without an "unjudged" entry for it was silently skipped; one that
  appears only with unknowns is a false violation.
- reads: every mandatory rule runs once more here, in process, over the
  first-deploy inputs, with each input wrapped so that reading an unknown
  value is recorded. A rule that read an unknown input of a resource and
  reported neither a violation nor "could not judge" skipped it silently. A
  stack rule reading a top-level reference input (an ARN or id, not a JSON
  document) that carries property dependencies, and that looked those
  dependencies up, is excused: the engine sends them (AnalyzeStack
  `propertyDependencies`), so the rule followed the reference without its
  value. The probe proves it: run again with those dependencies withheld,
  the rule must say something about the resource (a violation or "could not
  judge"); if it is still silent, its silence never came from the reference.
  Resource rules get no dependencies (pulumi_policy's ResourceValidationArgs
  has none), so they are never excused.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

UNJUDGED_PREFIX = "could not judge: "

# Reads of an unknown input that judge only whether the input is set: an unknown value is a value the
# engine will fill in, so the rule's verdict stands (reviewed one by one; policy name -> input path -> why).
PRESENCE_ONLY: dict[str, dict[str, str]] = {
    "eks-secrets-encryption": {
        "encryptionConfigKeyArn": "the rule asks whether secrets encryption names a KMS key (policies/rules/security.py "
                                  "_secrets_encryption: `is not None`); the ARN of the stack's own key is unknown until "
                                  "the key exists, and it is set",
    },
}
# pulumi_policy 1.x policy.py: the advisory diagnostic of a rule that raised UnknownValueError.
SDK_UNJUDGED = "can't run policy '"
MANDATORY = "mandatory"


def is_unjudged(message: str) -> bool:
    return message.startswith(UNJUDGED_PREFIX) or message.startswith(SDK_UNJUDGED)


def split_violations(violations: list[dict]) -> tuple[list[dict], list[dict]]:
    """(verdicts, unjudged) of the pack's violations (as dicts)."""
    verdicts, unjudged = [], []
    for v in violations:
        if is_unjudged(v["message"]):
            unjudged.append({"policy": v["policy"], "urn": v["urn"], "message": v["message"]})
        else:
            verdicts.append(v)
    return verdicts, unjudged


@dataclass(frozen=True)
class Skip:
    policy: str
    urn: Optional[str]
    message: str
    kind: str  # "verdict" (a known-run violation vanished) | "read" (the rule read an unknown and said nothing)

    def as_dict(self) -> dict:
        return {"policy": self.policy, "urn": self.urn, "kind": self.kind, "message": self.message}


def compare_verdicts(known: list[dict], first: list[dict], unjudged: list[dict]) -> tuple[list[Skip], list[dict]]:
    """(silently skipped, false violations): mandatory verdicts of the known run missing from the first-deploy
    run without an unjudged entry for the same policy and resource, and those only the first-deploy run has."""
    def keys(vs: list[dict]) -> dict[tuple, dict]:
        return {(v["policy"], v["urn"]): v for v in vs if v["level"] == MANDATORY and not is_unjudged(v["message"])}

    k, f = keys(known), keys(first)
    said = {(u["policy"], u["urn"]) for u in unjudged} | {(u["policy"], None) for u in unjudged}
    skipped = [Skip(p, urn, f"mandatory violation with known values: {k[(p, urn)]['message']}; with the unknowns of "
                            f"a first deploy the rule reports nothing and does not say it could not judge", "verdict")
               for (p, urn) in sorted(set(k) - set(f), key=str) if (p, urn) not in said]
    false = [{"policy": p, "urn": urn, "message": f[(p, urn)]["message"]}
             for (p, urn) in sorted(set(f) - set(k), key=str)]
    return skipped, false


# --- the read probe --------------------------------------------------------------------------------------------

class _Reads:
    def __init__(self) -> None:
        self.unknown: set[str] = set()
        # Top-level inputs whose property dependencies the rule looked up (None: it iterated all of them).
        self.followed: set[Optional[str]] = set()


class _Deps(dict):
    """A resource's property dependencies (input -> URNs) that records which inputs a rule looked up: only
    a rule that consulted the dependencies of an input can have followed a reference in it."""

    def __init__(self, data: dict, reads: _Reads):
        super().__init__(data)
        self._reads = reads

    def get(self, key: Any, default: Any = None) -> Any:
        self._reads.followed.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self._reads.followed.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        self._reads.followed.add(key)
        return super().__contains__(key)

    def _all(self) -> None:
        self._reads.followed.add(None)

    def items(self):  # type: ignore[override]
        self._all()
        return super().items()

    def keys(self):  # type: ignore[override]
        self._all()
        return super().keys()

    def values(self):  # type: ignore[override]
        self._all()
        return super().values()

    def __iter__(self):
        self._all()
        return super().__iter__()


def _wrap(value: Any, path: str, reads: _Reads, unknown: Any) -> Any:
    if value is unknown:
        reads.unknown.add(path or "(whole input)")
        return value
    if isinstance(value, dict) and not isinstance(value, _Dict):
        return _Dict(value, path, reads, unknown)
    if isinstance(value, list) and not isinstance(value, _List):
        return _List(value, path, reads, unknown)
    return value


class _Dict(dict):
    """A plain dict that records reads of unknown values below it."""

    def __init__(self, data: dict, path: str, reads: _Reads, unknown: Any):
        super().__init__(data)
        self._path, self._reads, self._unknown = path, reads, unknown

    def _at(self, key: Any) -> str:
        return f"{self._path}.{key}" if self._path else str(key)

    def __getitem__(self, key: Any) -> Any:
        return _wrap(super().__getitem__(key), self._at(key), self._reads, self._unknown)

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if super().__contains__(key) else default

    def items(self):  # type: ignore[override]
        return [(k, self[k]) for k in super().keys()]

    def values(self):  # type: ignore[override]
        return [self[k] for k in super().keys()]


class _List(list):
    def __init__(self, data: list, path: str, reads: _Reads, unknown: Any):
        super().__init__(data)
        self._path, self._reads, self._unknown = path, reads, unknown

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return _wrap(super().__getitem__(i), f"{self._path}[{i}]", self._reads, self._unknown)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def _pack_modules(pack_dir: Path) -> Any:
    """The pack's rule modules, imported in this process (the same code the pack process runs): the
    `rules` modules policies/__main__.py imports, each one's POLICIES."""
    import ast
    import importlib

    if str(pack_dir) not in sys.path:
        sys.path.insert(0, str(pack_dir))
    tree = ast.parse((pack_dir / "__main__.py").read_text())
    names = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "rules"
             for a in node.names]
    common = importlib.import_module("rules.common")
    policies = [p for n in names for p in getattr(importlib.import_module(f"rules.{n}"), "POLICIES", [])]
    return common, policies


def _inner(policy: Any) -> Optional[Callable]:
    """The rule function a policy constructor of rules/common.py wrapped (its `validate` closure cell)."""
    fn = None
    for attr in ("_ResourceValidationPolicy__validate", "_StackValidationPolicy__validate"):
        fn = getattr(policy, attr, None) or fn
    if fn is None or not hasattr(fn, "__code__"):
        return None
    names = fn.__code__.co_freevars
    cells = dict(zip(names, fn.__closure__ or ()))
    cell = cells.get("validate")
    return cell.cell_contents if cell is not None else None


def probe_reads(pack_dir: Path, registrations: Iterable[Any], effective: dict[str, dict],
                policies: Optional[list] = None) -> list[Skip]:
    """Mandatory rules that read an unknown input of a resource and reported nothing about it.

    `effective`: the pack's effective config (infra/analyzer.py run_policy_pack); `policies`: the
    pack's policies (default: every module of the pack in `pack_dir`)."""
    from pulumi_policy.deserialize import deserialize_properties

    common, pack_policies = _pack_modules(pack_dir)
    policies = pack_policies if policies is None else policies
    unknown = common.UNKNOWN
    regs = sorted(registrations, key=lambda r: r.urn)
    plain_props = {r.urn: common.plain(deserialize_properties(r.inputs)) for r in regs}

    def res_list(with_deps: bool, without: Optional[tuple[str, set[str]]] = None) -> tuple[list[Any], dict[str, _Reads]]:
        # Only a stack policy sees property dependencies (pulumi_policy 1.x: PolicyResource has
        # property_dependencies, ResourceValidationArgs has none; the pack's res_of passes none).
        # `without`: (urn, inputs) whose dependencies are withheld from that resource.
        reads = {r.urn: _Reads() for r in regs}

        def deps(r: Any) -> dict:
            if not with_deps:
                return {}
            if without and r.urn == without[0]:
                return {k: v for k, v in r.property_dependencies.items() if k not in without[1]}
            return dict(r.property_dependencies)
        out = [common.Res(r.type, r.name, r.urn, _Dict(plain_props[r.urn], "", reads[r.urn], unknown), r.protect,
                          _Deps(deps(r), reads[r.urn])) for r in regs]
        return out, reads

    # Rules get what the pack's policy constructors hand them: a Report (call it for a violation,
    # `unjudged` for an unknown input), when the pack has one.
    wrap = getattr(common, "Report", None) or (lambda f: f)

    def run(policy: Any, fn: Callable, config: dict,
            without: Optional[tuple[str, set[str]]] = None) -> Optional[tuple[list, dict, set]]:
        """(candidates, reads, reported URNs) of one rule run; None when the rule crashed (the pack run
        reports a crash; this probe only looks for silence)."""
        reported: set[Optional[str]] = set()
        scope = getattr(policy, "scope_types", None)
        is_stack = type(policy).__name__ == "StackValidationPolicy"
        resources, reads = res_list(is_stack, without)
        if is_stack:
            def report(message: str, urn: Optional[str] = None) -> None:
                reported.add(urn)
            try:
                fn(resources, config, wrap(report))
            except Exception:  # noqa: BLE001
                return None
            return [r for r in resources if not scope or r.type in scope], reads, reported
        candidates = []
        for r in resources:
            if scope is not None and r.type not in scope:
                continue
            candidates.append(r)

            def report(message: str, urn: Optional[str] = None, _r: Any = r) -> None:
                reported.add(urn or _r.urn)
            try:
                fn(r, config, wrap(report))
            except Exception:  # noqa: BLE001
                continue
        return candidates, reads, reported

    skips: list[Skip] = []
    for policy in policies:
        cfg = effective.get(policy.name) or {}
        if cfg.get("enforcementLevel", MANDATORY) != MANDATORY:
            continue
        fn = _inner(policy)
        if fn is None:
            continue
        config = {k: v for k, v in cfg.items() if k != "enforcementLevel"}
        ran = run(policy, fn, config)
        if ran is None:
            continue
        candidates, reads, reported = ran
        for r in candidates:
            if r.urn in reported or None in reported:
                continue
            unknown_paths = [p for p in sorted(reads[r.urn].unknown) if p not in PRESENCE_ONLY.get(policy.name, {})]
            followed = [p for p in unknown_paths if _followable(p, r, reads[r.urn].followed)]
            silent = [p for p in unknown_paths if p not in followed]
            if silent:
                skips.append(Skip(policy.name, r.urn,
                                  f"read unknown input(s) {', '.join(silent)} of {r.type} {r.name} and reported neither a "
                                  f"violation nor \"{UNJUDGED_PREFIX}...\"", "read"))
                continue
            if not followed:
                continue
            # Proof that the verdict came from following the reference: withheld the dependencies of those
            # inputs, the rule must say something about the resource (a violation or "could not judge").
            again = run(policy, fn, config, without=(r.urn, {_top(p) for p in followed}))
            if again is not None and r.urn not in again[2] and None not in again[2]:
                skips.append(Skip(policy.name, r.urn,
                                  f"read unknown input(s) {', '.join(followed)} of {r.type} {r.name} and looked up their "
                                  f"property dependencies, but without those dependencies it still reports nothing: its "
                                  f"silence does not come from following the reference", "read"))
    return skips


def _top(path: str) -> str:
    return path.split(".", 1)[0].split("[", 1)[0]


def _followable(path: str, r: Any, followed: set[Optional[str]]) -> bool:
    """A reference (an id in an input, an item of an id list, an id nested in a block) under a top-level
    input that has property dependencies, which the rule looked up: the engine sends the dependencies per
    top-level input (AnalyzeStack `propertyDependencies`), and a rule follows the reference through them to
    the resource it names (pack rules/common.py prop_deps). A rule that never consulted them only skipped."""
    top = _top(path)
    leaf = path.rsplit(".", 1)[-1].split("[", 1)[0]
    if top not in followed and None not in followed:
        return False
    if not dict.get(r.prop_deps, top):
        return False
    return path == top or leaf.lower().endswith(("id", "ids", "identifiers", "subnets", "arn", "arns")) \
        or path.startswith(f"{top}[")


def section(*, skipped: list[Skip], false: list[dict]) -> dict:
    """The document's `firstDeploy` section (what was unjudged is in `policy.unjudged`)."""
    return {"silentlySkipped": [s.as_dict() for s in skipped], "falseViolations": false}


def render(doc: dict, console: Any) -> None:
    from rich.table import Table

    pol = doc.get("policy") or {}
    fd = doc.get("firstDeploy") or {}
    unjudged = pol.get("unjudged") or []
    if unjudged:
        t = Table(title="Policies that could not judge (unknown until the first deploy)")
        for col in ("policy", "resource", "message"):
            t.add_column(col)
        for u in unjudged:
            t.add_row(u["policy"], (u["urn"] or "(stack)").split("::")[-1], u["message"])
        console.print(t)
    if not fd:
        return
    skipped, false = fd.get("silentlySkipped") or [], fd.get("falseViolations") or []
    if not skipped and not false:
        console.print("[green]First deploy: no mandatory policy skipped silently, no violation caused by unknowns[/]")
        return
    t = Table(title="First deploy: mandatory policies skipped silently or fooled by unknowns")
    for col in ("kind", "policy", "resource", "message"):
        t.add_column(col)
    for s in skipped:
        t.add_row(f"[red]skipped ({s['kind']})[/]", s["policy"], (s["urn"] or "(stack)").split("::")[-1], s["message"])
    for v in false:
        t.add_row("[red]false violation[/]", v["policy"], (v["urn"] or "(stack)").split("::")[-1], v["message"])
    console.print(t)


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
