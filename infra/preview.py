"""Offline preview of a stack: no Pulumi CLI, no AWS account, no network.

    python -m infra.preview --stack <dev|prod|...> [--json FILE] [--diff BASE.json] [--markdown FILE]
                            [--stack-file FILE] [--policy-config FILE]
                            [--allow-destructive TARGET]... [--pr-event FILE] [--first-deploy] [--quiet]

Reads Pulumi.yaml and Pulumi.<stack>.yaml, runs the real program (the `main:`
folder, via runpy as the CLI does) under the Pulumi mock engine with that
stack's config (secure values become placeholders), records every resource,
runs the policy pack in policies/ through its Analyzer gRPC server as the CLI
does, and prints the resource tree with the capacity plan, the cost and the
policy verdicts. The pack is configured with policies/config/<stack>.json
(or --policy-config), as `pulumi preview --policy-pack-config` would be; a
stack without one is an error (the pack's defaults know nothing of the
stack's budget or GPU limits). With --diff it compares with an earlier --json document
(infra/diff.py: per-resource input changes, replacements, cost and capacity
delta, destructive changes); --markdown writes the pull-request report.

The deploy-readiness checks (infra/readiness.py: awaits, ordering, capacity
reachability, controller-created names) run over the same recording; their
findings go into the `readiness` section and the printed output.

With --first-deploy, provider-computed outputs are unknown as in a first real
`pulumi preview` (infra/mockcloud.py); the document reports what each policy
could not judge (`policy.unjudged`, also collected in a normal run) and the
mandatory rules that skipped a resource silently (`firstDeploy`,
infra/first_deploy.py), which exit 1.

Exit status: 0 clean (advisories allowed), 1 a mandatory policy violation or a
mandatory readiness finding, 2 invalid configuration (the message names the key), 3 an internal error,
4 a destructive change (replace or delete of a stateful, expensive or
protected resource) that is not acknowledged (see infra/pr_ack.py). A
mandatory violation (1) takes precedence over 4; both are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

EXIT_OK, EXIT_MANDATORY, EXIT_CONFIG, EXIT_INTERNAL, EXIT_DESTRUCTIVE = 0, 1, 2, 3, 4
ROOT = Path(__file__).resolve().parent.parent


class PreviewInputError(Exception):
    """A stack or project file is missing or malformed (exit 2)."""


@dataclass
class StackFiles:
    project: str
    main: Path
    config: dict[str, str]
    secret_keys: list[str]
    policy_config: dict[str, Any]
    policy_config_path: Optional[Path]
    # The policy config the preview looked for (policy_config_path is None when it does not exist).
    policy_config_wanted: Optional[Path] = None


def _engine_text(value: Any) -> str:
    """Config values as the CLI hands them to a program: text, structured values as JSON.

    The CLI decodes the stack file into plain values first (pulumi
    sdk/go/common/workspace/loaders.go LoadProjectStackBytes), so an
    unquoted 1.30 arrives as "1.3", and an empty `key:` as "" (with a
    warning, loaders.go checkForEmptyConfig).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _is_secure(value: Any) -> bool:
    # pulumi sdk/go/common/resource/config/object.go isSecureValue: a one-key map whose "secure" is a string.
    return isinstance(value, dict) and set(value) == {"secure"} and isinstance(value["secure"], str)


def _contains_secure(value: Any) -> bool:
    if isinstance(value, dict):
        return _is_secure(value) or any(_contains_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_secure(v) for v in value)
    return False


def _replace_secure(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        if _is_secure(value):
            return f"offline-placeholder-for-{key}"  # infra/config.py SECRET_PLACEHOLDER
        return {k: _replace_secure(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_secure(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _repeated_keys(node: yaml.Node, path: tuple = ()) -> list[tuple[str, int, int]]:
    """(key path, first line, repeated line) for every key a mapping repeats.

    The CLI's YAML decoder (gopkg.in/yaml.v3 v3.0.1 decode.go `decoder.mapping`,
    which pulumi sdk/go/common/encoding/marshal.go uses) refuses such a
    document ("mapping key ... already defined at line N"); PyYAML would
    silently keep the last value.
    """
    out: list[tuple[str, int, int]] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is not None and key_node.tag != "tag:yaml.org,2002:merge":
                if key in seen:
                    out.append((_key_path(path + (key,)), seen[key], line))
                seen.setdefault(key, line)
            out += _repeated_keys(value_node, path + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _repeated_keys(item, path + (i,))
    return out


def _key_path(path: tuple) -> str:
    """("config", "llmserving:network", "zones", 0) -> "llmserving:network.zones[0]"."""
    parts = list(path[1:] if path[:1] == ("config",) and len(path) > 1 else path)
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# libyaml when PyYAML has it (same YAML 1.1 safe schema, much faster).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str, display: str, what: str) -> Any:
    """YAML text -> value; syntax errors and repeated keys name `display` (the file as the user named it)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        repeated = _repeated_keys(node) if node is not None else []
        if repeated:
            raise PreviewInputError(
                f"{display}: the {what} repeats keys, which the Pulumi CLI refuses (\"mapping key already "
                f"defined\"); keep one of each:\n" + "\n".join(
                    f"  - line {line}: {key!r} repeats line {first}" for key, first, line in repeated))
        return loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        detail = "; ".join(x for x in (e.context, e.problem) if x)
        raise PreviewInputError(f"{display}: the {what} is not valid YAML{where}: {detail}")
    except yaml.YAMLError as e:
        raise PreviewInputError(f"{display}: the {what} is not valid YAML: {e}")
    finally:
        loader.dispose()


def _load_yaml(path: Path, what: str, display: Optional[str] = None) -> Any:
    display = display or path.name
    if not path.is_file():
        raise PreviewInputError(f"{display}: the {what} does not exist")
    return parse_yaml(path.read_text(), display, what)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def stack_config_of(doc: Any, display: str, project: str) -> tuple[dict[str, str], list[str]]:
    """A parsed stack document -> (config as the CLI hands it to the program, secret keys)."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise PreviewInputError(f"{display}: got {_kind(doc)}; a stack file is a mapping with a `config:` section "
                                f"of `key: value` lines")
    raw = doc.get("config")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PreviewInputError(f"{display}: `config` got {_kind(raw)}; it must be a mapping of keys to values "
                                f"(`llmserving:environment: dev` lines under `config:`, not `- ` list items)")
    config, secret_keys = {}, []
    for key, value in raw.items():
        # Keys without a namespace belong to the project, as the CLI reads them.
        key = str(key)
        full = key if ":" in key else f"{project}:{key}"
        if _contains_secure(value):
            secret_keys.append(full)
            value = _replace_secure(value, full)
        config[full] = _engine_text(value)
    return config, sorted(secret_keys)


def _kind(value: Any) -> str:
    return {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}.get(
        type(value), type(value).__name__)


def read_stack(root: Path, stack: str, stack_file: Optional[Path] = None, *, stack_text: Optional[str] = None,
               policy_config_file: Optional[Path] = None) -> StackFiles:
    """Reads the project and the stack file (or `stack_text`, named as `stack_file` or Pulumi.<stack>.yaml)."""
    project_doc = _load_yaml(root / "Pulumi.yaml", "project file")
    if not isinstance(project_doc, dict) or not project_doc.get("name"):
        raise PreviewInputError("Pulumi.yaml: the project file needs a `name:`")
    project = str(project_doc["name"])
    main = root / str(project_doc.get("main", "."))
    path = stack_file or root / f"Pulumi.{stack}.yaml"
    display = str(stack_file) if stack_file else path.name
    if stack_text is None:
        if not path.is_file():
            known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
            if stack_file:
                raise PreviewInputError(f"--stack-file: {display} does not exist")
            raise PreviewInputError(f"--stack: got {stack!r}; no {path.name} (stacks here: {', '.join(known)})")
        stack_text = path.read_text()
    config, secret_keys = stack_config_of(parse_yaml(stack_text, display, "stack file"), display, project)

    policy_path = policy_config_file or root / "policies" / "config" / f"{stack}.json"
    policy_display = str(policy_config_file) if policy_config_file else _relative(policy_path, root)
    policy_config: dict[str, Any] = {}
    if policy_path.is_file():
        try:
            policy_config = json.loads(policy_path.read_text())
        except json.JSONDecodeError as e:
            raise PreviewInputError(f"{policy_display}: the policy config is not valid JSON: {e}")
        if not isinstance(policy_config, dict):
            raise PreviewInputError(f"{policy_display}: the policy config must be a JSON object")
    elif policy_config_file:
        raise PreviewInputError(f"--policy-config: {policy_display} does not exist")
    return StackFiles(project=project, main=main, config=config, secret_keys=secret_keys,
                      policy_config=policy_config, policy_config_path=policy_path if policy_path.is_file() else None,
                      policy_config_wanted=policy_path)


def missing_policy_config(files: StackFiles, stack: str, root: Path, stack_file: Optional[Path]) -> str:
    """The error for a stack whose policy config was never generated."""
    wanted = _relative(files.policy_config_wanted or root / "policies" / "config" / f"{stack}.json", root)
    command = f"python -m infra.policy_config --stack {stack}" + (f" --stack-file {stack_file}" if stack_file else "")
    return (f"policy config {wanted} is missing: the policy pack would judge stack {stack!r} by the pack's defaults, "
            f"not by this stack's budget, GPU limits and instance prices; generate it with `{command}` and review "
            f"it (or pass --policy-config FILE)")


def check_stack(files: StackFiles, stack: str) -> tuple[Any, Any]:
    """Everything the program checks before it creates a resource: config, capacity plan, platform checks.

    The same functions the program calls (infra/stack.py main and build, in
    that order); raises ConfigError or PlanError naming the keys.
    """
    from infra import capacity
    from infra.config import load_settings

    settings = load_settings(files.config, stack=stack, secret_keys=set(files.secret_keys), project=files.project)
    plan = capacity.plan(settings)
    if settings.config.orchestrator == "eks":
        from infra import eks_platform
        eks_platform.validate(settings, plan)
        from infra import serving
        serving.validate(settings, plan)
    return settings, plan


def resource_entry(r: Any) -> dict:
    """One recorded resource as the JSON document carries it.

    `dependencies`: every URN the registration waited for (explicit
    `depends_on`, expanded components and property dependencies merged);
    `provider`: the explicit provider's URN, when one is set; `customTimeouts`:
    the Go durations the engine applies, when set.
    """
    from infra.mockcloud import plain

    entry = {"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent, "custom": r.custom,
             "protect": r.protect, "inputs": plain(r.inputs), "dependencies": r.all_dependencies}
    if r.provider_urn:
        entry["provider"] = r.provider_urn
    if r.custom_timeouts:
        entry["customTimeouts"] = dict(r.custom_timeouts)
    return entry


def build_document(files: StackFiles, stack: str, run: Any, plan: Any, violations: list,
                   catalog: Any = None) -> dict:
    """The preview document. Violations whose message says the rule could not judge an unknown value
    (infra/first_deploy.py) go to `policy.unjudged`, not among the verdicts."""
    from infra import first_deploy, readiness
    from infra.mockcloud import plain

    resources = [resource_entry(r) for r in sorted(run.registrations, key=lambda r: r.urn)]

    def gpus_of(instance_type: str) -> int:
        rows = catalog.instance_types if catalog is not None else {}
        return rows[instance_type].gpu_count if instance_type in rows else readiness._default_gpus_of(instance_type)

    return {
        "project": files.project,
        "stack": stack,
        "resources": resources,
        "outputs": plain(_jsonable(run.outputs)),
        "capacity": plan.capacity_dict(),
        "cost": plan.cost_dict(),
        "policy": dict(zip(("violations", "unjudged"),
                           first_deploy.split_violations([v.as_dict() for v in violations]))),
        # Deploy-readiness (infra/readiness.py): what the real engine, providers and
        # controllers would do with this desired state; mandatory findings fail like
        # mandatory policy violations.
        "readiness": readiness.section(readiness.check(resources, gpus_of=gpus_of)),
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def preview(stack: str, *, root: Path = ROOT, stack_file: Optional[Path] = None, run_policies: bool = True,
            policy_config_file: Optional[Path] = None, first_deploy: bool = False,
            baseline: Optional[dict] = None) -> dict:
    """Runs the whole offline preview and returns the JSON document.

    `first_deploy`: provider-computed outputs are unknown, as in a real first
    `pulumi preview` (infra/mockcloud.py); the document then carries
    `firstDeploy` (infra/first_deploy.py): mandatory rules skipped silently and
    violations caused by unknowns, compared with `baseline` (the document of a
    run with known values; computed here when not given).

    Raises ConfigError/PlanError/PreviewInputError for bad input.
    """
    from infra import first_deploy as fd

    files = read_stack(root, stack, stack_file, policy_config_file=policy_config_file)
    settings, plan = check_stack(files, stack)
    if run_policies and files.policy_config_path is None:
        raise PreviewInputError(missing_policy_config(files, stack, root, stack_file))
    run, violations, effective = _run(root, files, stack, settings, run_policies=run_policies,
                                      first_deploy=first_deploy)
    doc = build_document(files, stack, run, plan, violations, settings.catalog)
    if not first_deploy:
        return doc
    if baseline is None:
        baseline = preview(stack, root=root, stack_file=stack_file, run_policies=run_policies,
                           policy_config_file=policy_config_file)
    unjudged = doc["policy"]["unjudged"]
    skipped, false = fd.compare_verdicts(baseline["policy"]["violations"], doc["policy"]["violations"], unjudged)
    if run_policies:
        seen = {(s.policy, s.urn) for s in skipped}
        skipped += [s for s in fd.probe_reads(root / "policies", run.registrations, effective)
                    if (s.policy, s.urn) not in seen]
    doc["firstDeploy"] = fd.section(skipped=skipped, false=false)
    return doc


def _run(root: Path, files: StackFiles, stack: str, settings: Any, *, run_policies: bool,
         first_deploy: bool) -> tuple[Any, list, dict]:
    """The program under the mock engine, then the policy pack: (run, violations, effective policy config)."""
    from concurrent.futures import ThreadPoolExecutor

    from infra.analyzer import run_policy_pack, start_policy_pack
    from infra.mockcloud import run_program

    violations: list = []
    effective: dict = {}
    with ThreadPoolExecutor(max_workers=1) as starter:
        # The pack process starts (imports, gRPC server) on the other core
        # while the program runs here.
        pack = (starter.submit(start_policy_pack, root / "policies", project=files.project, stack=stack)
                if run_policies else None)
        cwd = os.getcwd()
        os.chdir(root)  # the CLI runs the program with the project root as working directory
        try:
            run = run_program(str(files.main), project=files.project, stack=stack, config=files.config,
                              secret_keys=files.secret_keys, region=settings.region, first_deploy=first_deploy)
        except BaseException:
            if pack is not None:
                pack.result().close()
            raise
        finally:
            os.chdir(cwd)
        if pack is not None:
            violations, effective = run_policy_pack(
                root / "policies", run.registrations, policy_config=files.policy_config, project=files.project,
                stack=stack, stack_config=files.config, stack_tags={}, pack=pack.result())
    return run, violations, effective


# --- rendering -----------------------------------------------------------------

def render(doc: dict, console: Any) -> None:
    from rich.table import Table
    from rich.tree import Tree

    resources = doc["resources"]
    by_urn = {r["urn"]: r for r in resources}
    children: dict[Optional[str], list[dict]] = {}
    for r in resources:
        parent = r["parent"] if r["parent"] in by_urn else None
        children.setdefault(parent, []).append(r)
    for siblings in children.values():
        siblings.sort(key=lambda r: (r["type"], r["name"]))
    violations_by_urn = Counter(v["urn"] for v in doc["policy"]["violations"])

    tree = Tree(f"[bold]{doc['project']}[/] / stack [bold]{doc['stack']}[/]  ({len(resources)} resources)")

    def add(node: Any, parent_urn: Optional[str]) -> None:
        for r in children.get(parent_urn, []):
            flag = f"  [red]{violations_by_urn[r['urn']]} violation(s)[/]" if violations_by_urn.get(r["urn"]) else ""
            label = f"[cyan]{r['type']}[/] {r['name']}{' [yellow](protected)[/]' if r.get('protect') else ''}{flag}"
            add(node.add(label), r["urn"])

    add(tree, None)
    console.print(tree)

    counts = Table(title="Resources by type", show_lines=False)
    counts.add_column("type")
    counts.add_column("count", justify="right")
    for typ, n in sorted(Counter(r["type"] for r in resources).items()):
        counts.add_row(typ, str(n))
    console.print(counts)

    cap = doc["capacity"]
    console.print(f"[bold]Demand:[/] {cap['required_tokens_per_second']:,.0f} tok/s ({cap['demand_basis']})")
    models = Table(title="Capacity plan")
    for col in ("model", "pool / instance", "TP x PP", "replicas (min-max)", "GPUs", "tok/s per replica", "capacity tok/s",
                "memory GB (need / have)"):
        models.add_column(col, justify="right" if col not in ("model", "pool / instance") else "left")
    for name, m in cap["models"].items():
        models.add_row(name, f"{m['pool']} / {m['instance_type']}", f"{m['tensor_parallel']} x {m['pipeline_parallel']}",
                       f"{m['replicas']} ({m['min_replicas']}-{m['max_replicas']})", str(m["gpus"]),
                       f"{m['tokens_per_second_per_replica']:,.0f}", f"{m['capacity_tokens_per_second']:,.0f}",
                       f"{m['weights_gb'] + m['kv_cache_gb_required']:,.0f} / {m['usable_gpu_memory_gb']:,.0f}")
    console.print(models)
    for name, m in cap["models"].items():
        console.print(f"  [dim]{name}: {m['throughput_basis']}[/]")
    from infra import startup  # the start-up estimate per model (stack output `startup`)
    startup.render(doc, console)

    cost = doc["cost"]
    pools = Table(title="Cost (USD)")
    for col in ("pool", "instance", "capacity type", "nodes", "$/node-hour", "$/hour", "max $/hour"):
        pools.add_column(col, justify="right" if col not in ("pool", "instance", "capacity type") else "left")
    for name, p in cost["by_pool"].items():
        pools.add_row(name, p["instance_type"], p["capacity_type"], str(p["nodes"]), f"{p['usd_per_node_hour']:,.4f}",
                      f"{p['hourly_usd']:,.2f}", f"{p['max_hourly_usd']:,.2f}")
    pools.add_row("[bold]total[/]", "", "", "", "", f"[bold]{cost['hourly_usd']:,.2f}[/]", f"{cost['max_hourly_usd']:,.2f}")
    console.print(pools)
    console.print(f"[bold]Monthly:[/] ${cost['monthly_usd']:,.2f} planned, ${cost['max_monthly_usd']:,.2f} with every pool at max "
                  f"| GPUs: {cap['gpus_total']} planned, {cap['max_gpus_total']} at max")

    render_readiness(doc, console)
    from infra import first_deploy

    first_deploy.render(doc, console)

    violations = doc["policy"]["violations"]
    if not violations:
        console.print("[green]Policies: no violations[/]")
        return
    table = Table(title="Policy violations")
    for col in ("level", "policy", "resource", "message"):
        table.add_column(col)
    for v in violations:
        level = "[red]mandatory[/]" if v["level"] == "mandatory" else "[yellow]advisory[/]"
        table.add_row(level, v["policy"], (v["urn"] or "(stack)").split("::")[-1], v["message"])
    console.print(table)


def render_readiness(doc: dict, console: Any) -> None:
    from rich.table import Table

    findings = (doc.get("readiness") or {}).get("findings") or []
    if not findings:
        console.print("[green]Deploy readiness: no findings[/]")
        return
    table = Table(title="Deploy readiness (what the real engine, providers and controllers would do)")
    for col in ("level", "check", "resource", "message"):
        table.add_column(col)
    for f in findings:
        level = "[red]mandatory[/]" if f["level"] == "mandatory" else "[yellow]advisory[/]"
        table.add_row(level, f["check"], (f["urn"] or "(stack)").split("::")[-1], f["message"])
    console.print(table)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.preview", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--json", metavar="FILE", help="write the preview document as JSON")
    parser.add_argument("--diff", metavar="BASE_JSON", help="compare with an earlier --json document")
    parser.add_argument("--stack-file", metavar="FILE", help="read the stack config from this file instead")
    parser.add_argument("--policy-config", metavar="FILE",
                        help="policy pack config (default: policies/config/<stack>.json)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    parser.add_argument("--first-deploy", action="store_true",
                        help="provider-computed outputs (ids, ARNs, endpoints) are unknown, as in a first `pulumi "
                             "preview`; report what each policy could not judge and any mandatory policy skipped "
                             "silently (exit 1)")
    parser.add_argument("--markdown", metavar="FILE", help="write the pull-request report (Markdown)")
    parser.add_argument("--allow-destructive", metavar="TARGET", action="append", default=[],
                        help="acknowledge destructive changes: a URN, a type token or * (repeatable)")
    parser.add_argument("--pr-event", metavar="FILE",
                        help="read acknowledgements from a GitHub pull_request event JSON ($GITHUB_EVENT_PATH)")
    args = parser.parse_args(argv)

    from rich.console import Console

    from infra.analyzer import PolicyConfigError
    from infra.capacity import PlanError
    from infra.config import ConfigError
    from infra.mockcloud import canonical_json

    # Wide enough for the tables when output goes to a file or a CI log.
    console = Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 160)
    err = Console(stderr=True, highlight=False)
    from infra import diff as pr_diff
    from infra import pr_ack

    try:
        base = _read_base(args.diff) if args.diff else None
        ack = pr_ack.from_targets(args.allow_destructive)
        if args.pr_event:
            ack = ack.merged(pr_ack.from_event_file(args.pr_event))
        extra: dict[str, Any] = {"policy_config_file": Path(args.policy_config)} if args.policy_config else {}
        if args.first_deploy:
            extra["first_deploy"] = True
        doc = preview(args.stack, stack_file=Path(args.stack_file) if args.stack_file else None, **extra)
    except (ConfigError, PlanError, PreviewInputError, PolicyConfigError, pr_ack.EventError) as e:
        _print_error(err, e)
        return EXIT_CONFIG
    except Exception as e:  # noqa: BLE001
        # A RunError from the program is a user mistake it caught itself.
        import pulumi

        if isinstance(e, pulumi.RunError):
            _print_error(err, e)
            return EXIT_CONFIG
        traceback.print_exc()
        err.print("[red]internal error in the offline preview (a bug, not your config)[/]")
        return EXIT_INTERNAL

    if not args.quiet:
        render(doc, console)
    if args.json:
        Path(args.json).write_text(canonical_json(doc))
    d = pr_diff.diff_documents(base, doc, ack) if base is not None else None
    if d is not None:
        pr_diff.render_console(d, console, base_label=args.diff)
    if args.markdown:
        Path(args.markdown).write_text(pr_diff.render_markdown(doc, d, base_label=f"`{Path(args.diff).name}`"
                                                               if args.diff else "base"))

    mandatory = [v for v in doc["policy"]["violations"] if v["level"] == "mandatory"]
    advisory = len(doc["policy"]["violations"]) - len(mandatory)
    used = args.policy_config or f"policies/config/{args.stack}.json"
    findings = doc["readiness"]["findings"]
    not_ready = [f for f in findings if f["level"] == "mandatory"]
    unjudged = doc["policy"].get("unjudged") or []
    skipped = (doc.get("firstDeploy") or {}).get("silentlySkipped") or []
    mode = (f", first deploy: {len(unjudged)} unjudged, {len(skipped)} mandatory policy checks skipped silently"
            if "firstDeploy" in doc else (f", {len(unjudged)} unjudged" if unjudged else ""))
    console.print(f"stack {args.stack}: {len(doc['resources'])} resources, ${doc['cost']['hourly_usd']:,.2f}/hour, "
                  f"{len(mandatory)} mandatory and {advisory} advisory policy violations, "
                  f"{len(not_ready)} mandatory and {len(findings) - len(not_ready)} advisory readiness findings"
                  f"{mode} (policy config {used})", soft_wrap=True)
    if mandatory or not_ready or skipped:
        # A mandatory policy that skipped a resource silently on a first deploy is a hole in the guardrails.
        # A mandatory readiness finding is a deploy that would fail or hang: it blocks like a mandatory violation.
        return EXIT_MANDATORY
    if d is not None and d.unacknowledged:
        console.print(f"[red]{len(d.unacknowledged)} destructive change(s) not acknowledged[/] "
                      f"(--allow-destructive TARGET, or the PR label/body line: docs/pr-previews.md)")
        return EXIT_DESTRUCTIVE
    return EXIT_OK


def _print_error(console: Any, error: BaseException) -> None:
    from rich.text import Text

    # The message as plain text: keys such as models[0] or catalog.tiers['large'] are not markup.
    console.print(Text.assemble(("error:", "red"), " ", str(error)), soft_wrap=True)


def _read_base(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise PreviewInputError(f"--diff: {path} does not exist (write one with --json; scripts/preview-base.sh)")
    try:
        base = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise PreviewInputError(f"--diff: {path} is not valid JSON: {e}")
    if not isinstance(base, dict) or not isinstance(base.get("resources"), list):
        raise PreviewInputError(f"--diff: {path} is not a preview document (no `resources` list)")
    return base


if __name__ == "__main__":
    sys.exit(main())
