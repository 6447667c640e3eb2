"""An independent scanner over the desired state: Checkov, offline, judged against a reviewed allowlist.

    python -m infra.scan --all                      # every shipped stack and the variants in tests/stacks/ (make checkov)
    python -m infra.scan --stack prod               # one stack, rendered here
    python -m infra.scan --stack prod --json out/head-prod.json --base out/base-prod.json --append out/prod.md
                                                    # PR report: findings new against the base

Each stack is rendered by the offline preview's engine (infra/preview.py,
without the policy pack), translated by infra/tfplan.py into a Terraform plan
and Kubernetes manifests, and scanned by Checkov (pinned in
requirements-checkov.txt, installed by the Makefile into its own virtualenv
`.venv-checkov`, so its dependencies never meet the project's). A failed check
passes the gate only when an entry of policies/checkov-allowlist.yaml (a
reviewed, accepted finding) or policies/checkov-pending.yaml (a defect fixed on
another branch; deleted after merge) lists it with a one-line reason.

Offline: Checkov's version check (CKV_SKIP_PACKAGE_UPDATE_CHECK) and platform
downloads (--skip-download) are off, no platform key reaches it, and
infra/checkov_offline/sitecustomize.py refuses and records any network attempt;
a recorded attempt fails the scan.

Exit status: 0 every failed check is listed; 1 a failed check no list names
(or a translation gap, or a network attempt); 2 bad input (an allowlist entry
without a reason, a missing file, Checkov not installed); 3 Checkov itself failed.
With --base the report is informational: exit 0 unless 2 or 3.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from infra.tfplan import Translation, translate

ROOT = Path(__file__).resolve().parent.parent
CHECKOV_VENV = ROOT / ".venv-checkov"
ALLOWLIST = ROOT / "policies" / "checkov-allowlist.yaml"
PENDING = ROOT / "policies" / "checkov-pending.yaml"
# Stack files scanned besides the shipped Pulumi.<stack>.yaml: configurations the
# project supports but does not ship (the ECS orchestrator); label = file stem.
VARIANTS = ROOT / "tests" / "stacks"
GUARD = Path(__file__).resolve().parent / "checkov_offline"
FRAMEWORKS = ("terraform_plan", "kubernetes")
EXIT_OK, EXIT_FINDINGS, EXIT_INPUT, EXIT_SCANNER = 0, 1, 2, 3


class ScanInputError(Exception):
    """A list, stack or document is missing or malformed (exit 2)."""


class ScannerError(Exception):
    """Checkov did not run or did not answer (exit 3)."""


# --- allowlist -----------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    check: str       # check id, or a glob (CKV_K8S_*)
    resource: str    # glob on the Pulumi name, "type::name", or the scanner's address
    reason: str
    source: str      # which file
    stacks: tuple[str, ...] = ()

    def matches(self, f: "Finding") -> bool:
        if not fnmatch.fnmatchcase(f.check_id, self.check):
            return False
        if self.stacks and f.stack not in self.stacks:
            return False
        return any(fnmatch.fnmatchcase(c, self.resource)
                   for c in (f.name, f"{f.type}::{f.name}", f.address))


_ENTRY_KEYS = {"check", "resource", "reason", "stacks"}


def load_entries(path: Path) -> list[Entry]:
    """Entries of an allowlist file; a missing file is an empty list (the pending list goes away after merge)."""
    if not path.is_file():
        return []
    try:
        doc = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as e:
        raise ScanInputError(f"{path.name}: not valid YAML: {e}")
    if not isinstance(doc, list):
        raise ScanInputError(f"{path.name}: must be a list of entries (check, resource, reason)")
    entries = []
    for i, raw in enumerate(doc, 1):
        where = f"{path.name} entry {i}"
        if not isinstance(raw, dict):
            raise ScanInputError(f"{where}: must be a mapping with check, resource and reason")
        unknown = set(raw) - _ENTRY_KEYS
        if unknown:
            raise ScanInputError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}")
        for key in ("check", "resource", "reason"):
            value = raw.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ScanInputError(f"{where}: `{key}` must be a non-empty string, got {value!r}")
        reason = raw["reason"].strip()
        if "\n" in reason:
            raise ScanInputError(f"{where}: `reason` must be one line, got {reason!r}")
        stacks = raw.get("stacks") or []
        if not isinstance(stacks, list) or not all(isinstance(s, str) for s in stacks):
            raise ScanInputError(f"{where}: `stacks` must be a list of stack names, got {stacks!r}")
        entries.append(Entry(check=raw["check"].strip(), resource=raw["resource"].strip(), reason=reason,
                             source=path.name, stacks=tuple(stacks)))
    return entries


# --- findings ---------------------------------------------------------------------------

@dataclass
class Finding:
    stack: str
    check_id: str
    check_name: str
    address: str     # Terraform address or Kubernetes id, as Checkov names the resource
    type: str        # Pulumi type token
    name: str        # Pulumi logical name
    passed: bool
    listed: Optional[Entry] = None

    def key(self) -> tuple[str, str, str]:
        return (self.check_id, self.type, self.name)

    def line(self) -> str:
        return f"{self.stack:<14} {self.check_id:<12} {self.type}::{self.name}  {self.check_name}"


@dataclass
class StackScan:
    label: str
    translation: Translation
    findings: list[Finding] = field(default_factory=list)
    render_seconds: float = 0.0
    scan_seconds: float = 0.0

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if not f.passed]

    @property
    def passed(self) -> list[Finding]:
        return [f for f in self.findings if f.passed]


# --- Checkov --------------------------------------------------------------------------

def checkov_executable() -> Path:
    exe = Path(os.environ.get("CHECKOV") or CHECKOV_VENV / "bin" / "checkov")
    if not exe.exists():
        raise ScanInputError(f"Checkov not found at {exe}: run `make .venv-checkov/.installed` "
                             f"(installs requirements-checkov.txt into .venv-checkov) or set CHECKOV")
    return exe


def offline_env(network_log: Path) -> dict[str, str]:
    """The environment Checkov runs in: no version check, no platform, the network guard on."""
    env = {k: v for k, v in os.environ.items()
           # A platform key or URL would make Checkov log in and download policies (checkov/main.py).
           if not k.startswith(("BC_", "PRISMA_", "CKV_", "CHECKOV_")) and k not in ("PYTHONPATH",)}
    env.update({
        # checkov/common/util/banner.py checks PyPI for a newer release unless this is true.
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
        # Same switch as --skip-download (checkov/main.py: BC_SKIP_MAPPING), for any code path that reads it.
        "BC_SKIP_MAPPING": "TRUE",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(GUARD),
        "CHECKOV_NETWORK_LOG": str(network_log),
    })
    return env


def checkov_command(directory: Path) -> list[str]:
    return [str(checkov_executable()), "--directory", str(directory), "--framework", *FRAMEWORKS,
            "--output", "json", "--compact", "--skip-download"]


def start_checkov(directory: Path, network_log: Path) -> subprocess.Popen:
    return subprocess.Popen(checkov_command(directory), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=offline_env(network_log), cwd=str(directory), text=True)


def finish_checkov(proc: subprocess.Popen, network_log: Path) -> list[dict]:
    """Checkov's JSON reports (one per framework that found files)."""
    out, err = proc.communicate()
    if network_log.is_file() and network_log.read_text().strip():
        raise ScannerError("Checkov tried to reach the network (refused):\n" + network_log.read_text().strip())
    if proc.returncode not in (0, 1):
        raise ScannerError(f"Checkov exited {proc.returncode}: {err.strip()[-2000:]}")
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        raise ScannerError(f"Checkov printed no JSON report: {out[:500]!r} {err.strip()[-1000:]}")
    reports = doc if isinstance(doc, list) else [doc]
    return [r for r in reports if isinstance(r, dict) and "results" in r]


def write_inputs(tr: Translation, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "plan.json").write_text(json.dumps(tr.plan, indent=1, sort_keys=True))
    if tr.manifests:
        (directory / "k8s.yaml").write_text(yaml.safe_dump_all(tr.manifests, sort_keys=True))


def collect(reports: list[dict], scans: dict[str, StackScan]) -> None:
    """Attaches Checkov's results to the stack each file belongs to (first path segment = label)."""
    for report in reports:
        for outcome, passed in (("failed_checks", False), ("passed_checks", True)):
            for r in report["results"].get(outcome, []):
                label = Path(str(r.get("file_path", "")).lstrip("/")).parts[0] if r.get("file_path") else ""
                scan = scans.get(label)
                if scan is None:
                    continue
                resource = str(r.get("resource", ""))
                src = scan.translation.lookup(resource)
                scan.findings.append(Finding(
                    stack=label, check_id=r["check_id"], check_name=r.get("check_name", ""), address=resource,
                    type=src.type if src else "?", name=src.name if src else resource, passed=passed))


def scan_documents(docs: dict[str, dict], workdir: Optional[Path] = None,
                   stack_of: Optional[dict[str, str]] = None) -> dict[str, StackScan]:
    """Translates and scans several preview documents with ONE Checkov run (label -> results).

    `stack_of` names the stack a label's findings belong to (a base and a head
    document of one stack), for allowlist entries limited to some stacks.
    """
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="llmserving-checkov-")) if own else workdir
    try:
        scans = {}
        for label, doc in docs.items():
            tr = translate(doc)
            write_inputs(tr, root / label)
            scans[label] = StackScan(label=label, translation=tr)
        log = root / "network.log"
        started = time.monotonic()
        reports = finish_checkov(start_checkov(root, log), log)
        for s in scans.values():
            s.scan_seconds = time.monotonic() - started
        collect(reports, scans)
        for label, scan in scans.items():
            for f in scan.findings:
                f.stack = (stack_of or {}).get(label, label)
        return scans
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def judge(scans: list[StackScan], entries: list[Entry]) -> None:
    for s in scans:
        for f in s.failed:
            f.listed = next((e for e in entries if e.matches(f)), None)


# --- stacks ------------------------------------------------------------------------------

def shipped_stacks() -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))


def variant_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(VARIANTS.glob("*.yaml"))} if VARIANTS.is_dir() else {}


def render(label: str, stack_file: Optional[Path] = None) -> dict:
    """The preview document of a stack (the policy pack is not needed for the scan)."""
    from infra.preview import preview

    return preview(label, stack_file=stack_file, run_policies=False)


def scan_all(keep: Optional[Path] = None) -> list[StackScan]:
    """Every shipped stack and variant: each rendered, then scanned while the next one renders."""
    targets: list[tuple[str, Optional[Path]]] = [(s, None) for s in shipped_stacks()]
    targets += list(variant_files().items())
    root = keep or Path(tempfile.mkdtemp(prefix="llmserving-checkov-"))
    scans: list[StackScan] = []
    running: Optional[tuple[StackScan, subprocess.Popen, float, Path]] = None
    try:
        def finish() -> None:
            scan, proc, started, log = running
            reports = finish_checkov(proc, log)
            scan.scan_seconds = time.monotonic() - started
            collect(reports, {scan.label: scan})

        for label, stack_file in targets:
            t0 = time.monotonic()
            doc = render(label, stack_file)
            tr = translate(doc)
            scan = StackScan(label=label, translation=tr, render_seconds=time.monotonic() - t0)
            # One directory per stack under a parent, so result paths start with the label.
            parent = root / f"run-{label}"
            write_inputs(tr, parent / label)
            if running is not None:
                finish()
            log = parent / "network.log"
            running = (scan, start_checkov(parent, log), time.monotonic(), log)
            scans.append(scan)
        if running is not None:
            finish()
            running = None
        return scans
    finally:
        if running is not None and running[1].poll() is None:
            running[1].kill()  # an error while rendering the next stack: do not leave the scanner running
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


# --- reports --------------------------------------------------------------------------

def checkov_version() -> str:
    req = ROOT / "requirements-checkov.txt"
    for line in req.read_text().splitlines() if req.is_file() else []:
        if line.strip().lower().startswith("checkov=="):
            return line.split("==", 1)[1].strip()
    return "?"


def gate_report(scans: list[StackScan], entries: list[Entry], *, every_stack: bool = True) -> tuple[int, str]:
    """The gate's verdict and text. With every_stack, an allowlist entry that matches nothing fails too."""
    lines: list[str] = []
    unlisted = [f for s in scans for f in s.failed if f.listed is None]
    pending = [f for s in scans for f in s.failed if f.listed is not None and f.listed.source == PENDING.name]
    accepted = [f for s in scans for f in s.failed if f.listed is not None and f.listed.source != PENDING.name]
    gaps = [(s.label, g) for s in scans for g in s.translation.gaps]
    lines.append(f"Checkov {checkov_version()} (offline) over {len(scans)} stacks:")
    for s in scans:
        n_tf = sum(1 for r in s.translation.resources if "." in r.address and r.address.startswith("aws_"))
        lines.append(f"  {s.label:<14} {n_tf:>3} Terraform resources, {len(s.translation.manifests):>3} manifests: "
                     f"{len(s.passed):>4} passed, {len(s.failed):>3} failed "
                     f"(render {s.render_seconds:.1f}s, scan {s.scan_seconds:.1f}s)")
    lines.append(f"failed checks: {len(accepted)} accepted ({ALLOWLIST.name}), {len(pending)} pending "
                 f"({PENDING.name}), {len(unlisted)} NOT LISTED")
    if unlisted:
        lines.append("")
        lines.append(f"NOT LISTED: fix the resource, or add a reviewed entry (check, resource, one-line reason) "
                     f"to policies/{ALLOWLIST.name}:")
        lines += ["  " + f.line() for f in sorted(unlisted, key=lambda f: (f.stack, f.check_id, f.name))]
    if pending:
        lines.append("")
        lines.append(f"pending (policies/{PENDING.name}: expected to disappear once the fixing branches merge):")
        lines += ["  " + f.line() for f in sorted(pending, key=lambda f: (f.stack, f.check_id, f.name))]
    used = {id(f.listed) for s in scans for f in s.failed if f.listed is not None}
    unused = [e for e in entries if id(e) not in used]
    stale_allow = [e for e in unused if e.source == ALLOWLIST.name] if every_stack else []
    if unused and every_stack:
        lines.append("")
        lines.append("entries that matched nothing (remove them" +
                     ("; pending ones go when their fix has merged" if any(e.source == PENDING.name for e in unused)
                      else "") + "):")
        lines += [f"  {e.source}: {e.check} {e.resource}" for e in unused]
    if gaps:
        lines.append("")
        lines.append("translation gaps (infra/tfplan.py cannot classify; the scan would be wrong):")
        lines += [f"  {label}: {g}" for label, g in gaps]
    skipped: dict[str, int] = {}
    for s in scans:
        for typ, _, _ in s.translation.not_scanned:
            skipped[typ] = skipped.get(typ, 0) + 1
    if skipped:
        lines.append("")
        lines.append("not scanned (no offline rendering): " +
                     ", ".join(f"{n} x {t}" for t, n in sorted(skipped.items())))
    failed = bool(unlisted or gaps or stale_allow)
    lines.append("")
    lines.append("FAIL" if failed else "OK")
    return (EXIT_FINDINGS if failed else EXIT_OK), "\n".join(lines)


def new_findings(base: StackScan, head: StackScan) -> tuple[list[Finding], list[Finding]]:
    """(failed in head but not in base, failed in base but not in head), by check and Pulumi resource."""
    before = {f.key() for f in base.failed}
    after = {f.key() for f in head.failed}
    return ([f for f in head.failed if f.key() not in before],
            [f for f in base.failed if f.key() not in after])


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_report(stack: str, base: Optional[StackScan], head: StackScan) -> str:
    """The Checkov section of a stack's pull-request report: failed checks new against the base."""
    added, resolved = new_findings(base, head) if base is not None else (head.failed, [])
    unlisted_new = [f for f in added if f.listed is None]
    lines = [f"#### Checkov {checkov_version()} (independent scanner)", ""]
    if unlisted_new:
        lines.append(f"❌ **{len(unlisted_new)} new failed check(s) no list names**: they fail `make test`; fix the "
                     f"resource or add a reviewed entry to `policies/{ALLOWLIST.name}`.")
    elif added:
        lines.append(f"⚠️ {len(added)} new failed check(s), each listed in `policies/{ALLOWLIST.name}` or "
                     f"`policies/{PENDING.name}`.")
    else:
        lines.append("✅ No new failed checks.")
    lines.append("")
    lines.append(f"{len(head.failed)} failed and {len(head.passed)} passed checks on this commit; "
                 f"{len(added)} new and {len(resolved)} resolved against the base.")
    if added:
        lines += ["", "| check | what | resource | listed |", "|---|---|---|---|"]
        for f in sorted(added, key=lambda f: (f.listed is not None, f.check_id, f.name)):
            listed = f"{f.listed.source}: {f.listed.reason}" if f.listed else "**not listed**"
            lines.append(f"| {_md_cell(f.check_id)} | {_md_cell(f.check_name)} | `{_md_cell(f.name)}` "
                         f"({_md_cell(f.type)}) | {_md_cell(listed)} |")
    if resolved:
        lines += ["", "Resolved: " + ", ".join(f"{f.check_id} `{f.name}`" for f in
                                               sorted(resolved, key=lambda f: (f.check_id, f.name)))]
    return "\n".join(lines) + "\n"


# --- CLI ---------------------------------------------------------------------------------

def _load_doc(path: str, what: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ScanInputError(f"{what}: no such file {path}")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ScanInputError(f"{what}: {path} is not JSON: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("resources"), list):
        raise ScanInputError(f"{what}: {path} is not an offline-preview document (python -m infra.preview --json)")
    return doc


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.scan", description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--all", action="store_true", help="every shipped stack and tests/stacks/*.yaml")
    target.add_argument("--stack", help="one stack (Pulumi.<stack>.yaml)")
    parser.add_argument("--json", metavar="HEAD_JSON", help="scan this preview document instead of rendering")
    parser.add_argument("--base", metavar="BASE_JSON", help="report findings new against this preview document")
    parser.add_argument("--markdown", metavar="FILE", help="write the PR report section (with --base)")
    parser.add_argument("--append", metavar="FILE", help="append the PR report section to FILE (with --base)")
    parser.add_argument("--keep", metavar="DIR", help="keep the translated plans and manifests in DIR")
    args = parser.parse_args(argv)
    try:
        entries = load_entries(ALLOWLIST) + load_entries(PENDING)
        keep = Path(args.keep) if args.keep else None
        if args.all:
            scans = scan_all(keep)
            judge(scans, entries)
            code, text = gate_report(scans, entries)
            print(text)
            return code
        head_doc = _load_doc(args.json, "--json") if args.json else render(args.stack)
        docs = {"head": head_doc}
        if args.base:
            base_path = Path(args.base)
            # A stack new in this change has no base document: everything is new.
            docs["base"] = _load_doc(args.base, "--base") if base_path.is_file() else {"resources": []}
        scans = scan_documents(docs, keep, stack_of={"head": args.stack, "base": args.stack})
        judge(list(scans.values()), entries)
        head = scans["head"]
        if args.base or args.markdown or args.append:
            text = markdown_report(args.stack, scans.get("base"), head)
            if args.markdown:
                Path(args.markdown).write_text(text)
            if args.append:
                with open(args.append, "a", encoding="utf-8") as f:
                    f.write("\n" + text)
            if not (args.markdown or args.append):
                print(text)
            return EXIT_OK
        head.label = args.stack
        code, text = gate_report([head], entries, every_stack=False)
        print(text)
        return code
    except ScanInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except ScannerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_SCANNER
    except Exception as e:  # the preview's own input errors (bad config, unknown stack) keep their message
        from infra.capacity import PlanError
        from infra.config import ConfigError
        from infra.preview import PreviewInputError

        if isinstance(e, (ConfigError, PlanError, PreviewInputError)):
            print(f"error: {e}", file=sys.stderr)
            return EXIT_INPUT
        raise


if __name__ == "__main__":
    sys.exit(main())
