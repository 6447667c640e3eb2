"""Deploy-readiness checks against the facts of the images (infra/image_catalog.py).

For every container the program renders (Kubernetes pod templates, ECS task
definitions):

- `image-non-root`: `runAsNonRoot: true` needs a non-root user: the image's
  USER, or a numeric `runAsUser` other than 0. The kubelet refuses the
  container otherwise (kubernetes pkg/kubelet/kuberuntime/security_context_others.go
  verifyRunAsNonRoot: "container has runAsNonRoot and image will run as root",
  CreateContainerConfigError). ECS has no such guard: a root image without
  `user` runs as root (advisory).
- `image-tool-missing`: every program a command runs exists in its image. The
  command line is what the runtime executes (Kubernetes: `command` replaces
  the ENTRYPOINT, `args` the CMD; ECS: `entryPoint`/`command`); a shell's
  `-c` script is read word by word (the first word of each simple command of
  each pipeline and list, of each `$(...)`/`<(...)`; shell builtins, keywords
  and the script's own functions need no program); a `python -c` script's
  imports must be importable by that interpreter in that image.
- `vllm-flag-unknown` / `vllm-flag-deprecated`: every flag after `vllm serve`
  exists in the image's vLLM version; `vllm-env-unknown`: every VLLM_*
  variable of a vLLM container is one vLLM reads (an unknown one is ignored
  without a word: vllm/envs.py has no such warning in 0.11.1);
  `vllm-metric-unknown` / `vllm-metric-deprecated`: every `vllm:` metric
  a rule, dashboard or scaler query names is exposed by the stack's vLLM
  (counters as `_total`, histograms as `_bucket`/`_sum`/`_count`; hidden
  ones only with --show-hidden-metrics-for-version).
- `static-lora-start`: vLLM 0.11.1 raises at start-up when any `--lora-modules`
  entry fails to load (vllm/entrypoints/openai/serving_models.py
  init_static_loras: "Raises if any fail to load"); a list the program
  names is only safe behind a launcher that drops the entries that cannot
  load (a `python -c` wrapper that rewrites `--lora-modules`).
- `keepalive-idle-timeout`: a target behind the ALB keeps idle connections
  open longer than the ALB's idle timeout (ELB User Guide, "Application Load
  Balancers", connection idle timeout: configure the target's keep-alive
  longer), or the ALB reuses a connection the target just closed: 502.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from infra import image_catalog as ic

MANDATORY, ADVISORY = "mandatory", "advisory"
PYTHON = re.compile(r"^(?:.*/)?python(?:3(?:\.\d+)?)?$")
EXEC_IN_PYTHON = re.compile(r"\bos\.exec[lv]p?e?\(")
METRIC = re.compile(r"(?<![\w./-])vllm:[a-z_][a-z0-9_]*")
ALB_IDLE_DEFAULT = 60  # seconds; ELB User Guide, load balancer attributes: idle_timeout.timeout_seconds default 60
UVICORN_KEEPALIVE = re.compile(r"timeout_keep_alive\s*=\s*(\d+)")


# --- a small reader of shell scripts ---------------------------------------------------------------------------

@dataclass
class Word:
    text: Optional[str]  # the literal value; None when it contains an expansion ($x, $(...), `...`)
    raw: str


@dataclass
class SimpleCommand:
    words: list[Word]


_RESERVED_START = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time", "in"}
_RESERVED_END = {"fi", "done", "esac", "}"}
_OPS = ("&&", "||", ";;", "<<<", "<<", ">>", "&>", ">&", "<&", "|&", ";", "|", "&", "(", ")", "<", ">", "\n")
_WRAPPERS = {"exec", "command", "builtin", "nohup", "env", "sudo", "time", "nice", "timeout", "xargs", "stdbuf"}


def _match_paren(s: str, i: int) -> int:
    """Index just past the `)` closing the `(` at s[i-1] (quotes and nesting respected)."""
    depth = 1
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            i = s.find("'", i + 1) + 1 or len(s)
            continue
        if c == '"':
            i = _end_double(s, i + 1)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(s)


def _end_double(s: str, i: int) -> int:
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        if c == "$" and s[i + 1:i + 2] == "(":
            i = _match_paren(s, i + 2)
            continue
        i += 1
    return len(s)


def _lex(script: str, subs: list[str]) -> list[tuple[str, Any]]:
    """Tokens ("op", text) and ("word", Word); the scripts of command/process substitutions go to `subs`."""
    out: list[tuple[str, Any]] = []
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c in " \t":
            i += 1
            continue
        if c == "\\" and script[i + 1:i + 2] == "\n":
            i += 2
            continue
        if c == "#" and (not out or out[-1][0] == "op" or script[i - 1] in " \t\n"):
            while i < n and script[i] != "\n":
                i += 1
            continue
        if script.startswith("((", i):  # arithmetic command
            i = _match_paren(script, i + 2)
            i = i + 1 if script[i:i + 1] == ")" else i
            out.append(("op", ";"))
            continue
        if script.startswith("<(", i) or script.startswith(">(", i):
            end = _match_paren(script, i + 2)
            subs.append(script[i + 2:end - 1])
            out.append(("word", Word(None, script[i:end])))
            i = end
            continue
        op = next((o for o in _OPS if script.startswith(o, i)), None)
        if op:
            out.append(("op", op))
            i += len(op)
            continue
        # A word: up to unquoted blank or operator.
        start, literal, text = i, True, []
        while i < n:
            c = script[i]
            if c in " \t\n;|&()<>":
                break
            if c == "\\":
                text.append(script[i + 1:i + 2])
                i += 2
                continue
            if c == "'":
                end = script.find("'", i + 1)
                end = n if end < 0 else end
                text.append(script[i + 1:end])
                i = end + 1
                continue
            if c == '"':
                end = _end_double(script, i + 1)
                inner = script[i + 1:end - 1]
                for m in re.finditer(r"\$\(", inner):
                    if not inner.startswith("$((", m.start()):
                        subs.append(inner[m.end():_match_paren(inner, m.end()) - 1])
                if "$" in inner or "`" in inner:
                    literal = False
                text.append(inner)
                i = end
                continue
            if c == "$":
                literal = False
                if script.startswith("$((", i):
                    i = _match_paren(script, i + 3)
                    i = i + 1 if script[i:i + 1] == ")" else i
                    continue
                if script.startswith("$(", i):
                    end = _match_paren(script, i + 2)
                    subs.append(script[i + 2:end - 1])
                    i = end
                    continue
                if script.startswith("${", i):
                    end = script.find("}", i)
                    i = n if end < 0 else end + 1
                    continue
                if script.startswith("$'", i):
                    end = script.find("'", i + 2)
                    text.append(script[i + 2:end])
                    i = n if end < 0 else end + 1
                    literal = True
                    continue
                i += 1
                while i < n and (script[i].isalnum() or script[i] in "_@*#?!$-"):
                    i += 1
                continue
            if c == "`":
                end = script.find("`", i + 1)
                subs.append(script[i + 1:end if end > 0 else n])
                literal = False
                i = n if end < 0 else end + 1
                continue
            text.append(c)
            i += 1
        out.append(("word", Word("".join(text) if literal else None, script[start:i])))
    return out


_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")


def shell_commands(script: str) -> tuple[list[SimpleCommand], set[str]]:
    """(simple commands, names of functions the script defines) of a POSIX/bash script, substitutions included."""
    subs: list[str] = []
    tokens = _lex(script, subs)
    commands: list[SimpleCommand] = []
    functions: set[str] = set()
    expect = True
    current: Optional[SimpleCommand] = None
    state = ""  # "", "case-word", "case-pattern", "for", "dbracket"
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "op":
            if value in ("<", ">", ">>", "<<<", "&>", ">&", "<&"):
                i += 2  # the redirection's target
                continue
            if value == "<<":  # heredoc: skip its body
                delim = tokens[i + 1][1].text if i + 1 < len(tokens) and tokens[i + 1][0] == "word" else None
                i += 2
                if delim:
                    while i < len(tokens) and not (tokens[i][0] == "word" and tokens[i][1].text == delim):
                        i += 1
                continue
            if state == "case-pattern" and value == ")":
                state = ""
            elif value == ";;":
                state = "case-pattern"
            current = None
            expect = True
            i += 1
            continue
        w: Word = value
        t = w.text
        if state == "case-word":
            if t == "in":
                state = "case-pattern"
            i += 1
            continue
        if state == "case-pattern":
            if t == "esac":
                state = ""
                expect = False
            i += 1
            continue
        if state == "for":
            if t == "do":
                state, expect = "", True
            i += 1
            continue
        if state == "dbracket":
            if t == "]]":
                state, expect = "", False
            i += 1
            continue
        if not expect:
            if current is not None:
                current.words.append(w)
            i += 1
            continue
        if t in _RESERVED_START:
            i += 1
            continue
        if t in _RESERVED_END:
            expect = False
            i += 1
            continue
        if t in ("for", "select"):
            state = "for"
            i += 1
            continue
        if t == "case":
            state = "case-word"
            i += 1
            continue
        if t == "[[":
            state = "dbracket"
            i += 1
            continue
        if t == "function" and i + 1 < len(tokens) and tokens[i + 1][0] == "word":
            functions.add(str(tokens[i + 1][1].text))
            i += 2
            continue
        if t is not None and _ASSIGN.match(t) or (t is None and _ASSIGN.match(w.raw)):
            i += 1
            if (w.raw.endswith("=") and i < len(tokens) and tokens[i] == ("op", "(")):  # NAME=( array words )
                while i < len(tokens) and tokens[i] != ("op", ")"):
                    i += 1
                i += 1
            continue
        if (t is not None and i + 2 < len(tokens) and tokens[i + 1] == ("op", "(")
                and tokens[i + 2] == ("op", ")")):
            functions.add(t)
            i += 3
            continue
        current = SimpleCommand([w])
        commands.append(current)
        expect = False
        i += 1
    for sub in subs:
        inner, fns = shell_commands(sub)
        commands += inner
        functions |= fns
    return commands, functions


# --- containers -------------------------------------------------------------------------------------------------

@dataclass
class Container:
    owner: dict  # the recorded resource
    where: str  # "Deployment llmserving/x container vllm"
    name: str
    image: str
    argv: list[str]  # what the runtime executes (entrypoint/command + args), image defaults applied
    argv_known: bool  # False when the image is unknown and the command line relies on its entrypoint
    env: dict[str, Optional[str]]
    probes: list[list[str]] = field(default_factory=list)  # exec probes / hooks / ECS health checks (argv)
    run_as_non_root: Optional[bool] = None
    run_as_user: Optional[int] = None
    ecs_user: Optional[str] = None
    ecs: bool = False
    facts: Optional[ic.ImageFacts] = None


def _argv(image: Optional[ic.ImageFacts], command: Optional[list], args: Optional[list]) -> tuple[list[str], bool]:
    """The process's argv: `command` replaces the ENTRYPOINT (and drops the CMD), `args` replaces the CMD
    (Kubernetes "Define a Command and Arguments for a Container"; ECS entryPoint/command likewise)."""
    cmd = [str(x) for x in command] if command else None
    arg = [str(x) for x in args] if args is not None else None
    if cmd is not None:
        return cmd + (arg or []), True
    if image is None:
        return arg or [], False
    return list(image.entrypoint) + (arg if arg is not None else list(image.cmd)), True


def _exec(h: Any) -> Optional[list[str]]:
    if isinstance(h, dict) and isinstance(h.get("exec"), dict) and h["exec"].get("command"):
        return [str(x) for x in h["exec"]["command"]]
    return None


def containers(ctx: Any) -> list[Container]:
    from infra.readiness import display

    out: list[Container] = []
    for w in ctx.workloads:
        for t in w.templates:
            pod_sc = t.spec.get("securityContext") or {}
            for c in list(t.spec.get("initContainers") or []) + list(t.spec.get("containers") or []):
                if not isinstance(c, dict):
                    continue
                facts = ic.facts(str(c.get("image") or ""))
                argv, known = _argv(facts, c.get("command"), c.get("args"))
                csc = c.get("securityContext") or {}
                probes = [p for p in (_exec((c.get("lifecycle") or {}).get("preStop")),
                                      _exec((c.get("lifecycle") or {}).get("postStart")),
                                      *(_exec(c.get(k)) for k in ("startupProbe", "readinessProbe", "livenessProbe")))
                          if p]
                env = {str(e.get("name")): (e.get("value") if "value" in e else None)
                       for e in c.get("env") or [] if isinstance(e, dict)}
                run_as = csc.get("runAsUser", pod_sc.get("runAsUser"))
                where = display(w.r) + (f" ({t.role})" if t.role != "pod" else "") + f" container {c.get('name')}"
                out.append(Container(w.r, where, str(c.get("name")), str(c.get("image") or ""), argv, known, env,
                                     probes, csc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")),
                                     None if run_as is None else int(float(run_as)), facts=facts))
    for r in ctx.resources:
        if r["type"] != "aws:ecs/taskDefinition:TaskDefinition":
            continue
        raw = (r.get("inputs") or {}).get("containerDefinitions")
        try:
            defs = json.loads(raw) if isinstance(raw, str) else []
        except json.JSONDecodeError:
            defs = []
        for c in defs:
            if not isinstance(c, dict):
                continue
            facts = ic.facts(str(c.get("image") or ""))
            argv, known = _argv(facts, c.get("entryPoint"), c.get("command"))
            hc = (c.get("healthCheck") or {}).get("command") or []
            probes = []
            if hc and hc[0] == "CMD-SHELL":
                probes.append(["/bin/sh", "-c", " ".join(str(x) for x in hc[1:])])
            elif hc and hc[0] == "CMD":
                probes.append([str(x) for x in hc[1:]])
            env = {str(e.get("name")): e.get("value") for e in c.get("environment") or [] if isinstance(e, dict)}
            env.update({str(s.get("name")): None for s in c.get("secrets") or [] if isinstance(s, dict)})
            out.append(Container(r, f"ECS task definition {r['name']} container {c.get('name')}", str(c.get("name")),
                                 str(c.get("image") or ""), argv, known, env, probes, ecs_user=c.get("user"), ecs=True,
                                 facts=facts))
    return out


# --- what a command line runs -----------------------------------------------------------------------------------

@dataclass
class Use:
    program: str  # a command name or path the image must have
    via: str  # how it is reached ("command", "bash -c script", ...)


@dataclass
class Analysis:
    programs: list[Use] = field(default_factory=list)
    imports: list[tuple[str, str]] = field(default_factory=list)  # (interpreter, module)
    serve_args: list[list[str]] = field(default_factory=list)  # argv after each `vllm serve`
    lora_filtered: list[bool] = field(default_factory=list)  # per serve: run through a --lora-modules filter
    keepalive: Optional[int] = None  # uvicorn timeout_keep_alive a python -c launcher binds


def analyse(argv: list[str], facts: Optional[ic.ImageFacts], *, via: str = "command", wrapped: bool = False,
            depth: int = 0) -> Analysis:
    a = Analysis()
    if not argv or depth > 4:
        return a
    prog = argv[0]
    a.programs.append(Use(prog, via))
    shell = ic.SHELLS.get(prog)
    if prog in ic.SHELLS and len(argv) >= 3 and argv[1] in ("-c", "-ec", "-ce", "-euc", "-eu"):
        script = argv[2]
        commands, functions = shell_commands(script)
        for cmd in commands:
            words = [w.text for w in cmd.words]
            first = words[0]
            if first is None:
                continue  # `$cmd ...`: decided at run time
            # Wrappers run their argument: exec python3 ..., timeout 5 curl ..., env A=1 cmd ...
            k = 0
            while k < len(words) and words[k] in _WRAPPERS:
                wrapper = words[k]
                k += 1
                while k < len(words) and words[k] is not None and (
                        words[k].startswith("-") or _ASSIGN.match(words[k])
                        or (wrapper == "timeout" and words[k][:1].isdigit())):
                    k += 1
            if k >= len(words) or words[k] is None:
                continue
            sub_argv = [x if x is not None else "" for x in words[k:]]
            name = sub_argv[0]
            if name in functions or (name in ic.SHELL_BUILTINS and not (shell == "sh" and name in ic.BASH_ONLY)):
                continue
            inner = analyse(sub_argv, facts, via=f"{prog} -c script", wrapped=wrapped, depth=depth + 1)
            _merge(a, inner)
        return a
    if PYTHON.match(prog) and len(argv) >= 3 and argv[1] == "-c":
        code = argv[2]
        for mod in _imports(code):
            a.imports.append((prog, mod))
        m = UVICORN_KEEPALIVE.search(code)
        if m:
            a.keepalive = int(m.group(1))
        if EXEC_IN_PYTHON.search(code) and len(argv) > 3:
            # A launcher that execs its remaining arguments (the static LoRA filter does).
            inner = analyse(argv[3:], facts, via=f"{prog} -c launcher", wrapped="--lora-modules" in code,
                            depth=depth + 1)
            _merge(a, inner)
        return a
    if prog.rpartition("/")[2] == "vllm" and len(argv) >= 2 and argv[1] == "serve":
        a.serve_args.append(argv[2:])
        a.lora_filtered.append(wrapped)
    return a


def _merge(a: Analysis, b: Analysis) -> None:
    a.programs += b.programs
    a.imports += b.imports
    a.serve_args += b.serve_args
    a.lora_filtered += b.lora_filtered
    a.keepalive = b.keepalive if b.keepalive is not None else a.keepalive


def _imports(code: str) -> list[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    mods = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods += [n.name.split(".")[0] for n in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            mods.append(node.module.split(".")[0])
    return sorted(set(m for m in mods if m not in sys.stdlib_module_names))


# --- the checks -------------------------------------------------------------------------------------------------

def _finding(check: str, level: str, urn: Optional[str], message: str) -> Any:
    from infra.readiness import Finding

    return Finding(check, level, urn, message)


def check_images(ctx: Any) -> list[Any]:
    findings: list[Any] = []
    all_containers = containers(ctx)
    vllm_versions: dict[str, ic.VllmFacts] = {}
    unjudged_images: set[str] = set()
    hidden_enabled = False
    for c in all_containers:
        f = c.facts
        if f is None:
            if c.image not in unjudged_images:
                unjudged_images.add(c.image)
                findings.append(_finding(
                    "image-facts-unknown", ADVISORY, c.owner["urn"],
                    f"could not judge: {c.where}: image {c.image} has no row in infra/image_catalog.py (user, "
                    f"entrypoint, tools{', vLLM flags' if 'vllm' in c.image else ''} unknown); record it with its "
                    f"Dockerfile at that tag"))
            continue
        # runAsNonRoot needs a non-root user.
        if not c.ecs and c.run_as_non_root is True:
            if c.run_as_user == 0:
                findings.append(_finding(
                    "image-non-root", MANDATORY, c.owner["urn"],
                    f"{c.where}: runAsNonRoot with runAsUser 0: the kubelet refuses to start it "
                    f"(CreateContainerConfigError)"))
            elif c.run_as_user is None and f.runs_as_root:
                findings.append(_finding(
                    "image-non-root", MANDATORY, c.owner["urn"],
                    f"{c.where}: runAsNonRoot without runAsUser, and image {c.image} runs as {f.user} (no USER in "
                    f"its Dockerfile: {f.source}): the kubelet refuses to start it (\"container has runAsNonRoot and "
                    f"image will run as root\", CreateContainerConfigError); set a numeric runAsUser"))
        if c.ecs and not c.ecs_user and f.runs_as_root:
            findings.append(_finding(
                "image-non-root", ADVISORY, c.owner["urn"],
                f"{c.where}: no `user`, and image {c.image} runs as {f.user}: the container runs as root"))
        # Programs and modules.
        analyses = [("command", analyse(c.argv, f))] + [("exec hook/probe", analyse(p, f, via="probe"))
                                                        for p in c.probes]
        for what, a in analyses:
            for use in a.programs:
                if not f.has(use.program):
                    findings.append(_finding(
                        "image-tool-missing", MANDATORY, c.owner["urn"],
                        f"{c.where}: its {what} runs `{use.program}` ({use.via}), which image {c.image} does not have "
                        f"({f.source}): the container fails with \"{use.program}: command not found\" (exit 127)"
                        if use.via != "command" else
                        f"{c.where}: its {what} starts `{use.program}`, which image {c.image} does not have "
                        f"({f.source}): the runtime cannot start it (\"executable file not found\")"))
            for interpreter, mod in a.imports:
                have = f.modules(interpreter)
                if have is not None and mod not in have:
                    findings.append(_finding(
                        "image-tool-missing", MANDATORY, c.owner["urn"],
                        f"{c.where}: its {what} runs `{interpreter} -c` importing {mod}, which {interpreter} in image "
                        f"{c.image} cannot import ({f.source}): ModuleNotFoundError"))
        a = analyses[0][1]
        if f.vllm is not None:
            vllm_versions[f.ref] = f.vllm
            for args, filtered in zip(a.serve_args, a.lora_filtered):
                findings += _check_serve(c, f, args, filtered)
                if any(x.split("=", 1)[0] in ("--show-hidden-metrics-for-version", "--show_hidden_metrics_for_version")
                       for x in args):
                    hidden_enabled = True
            for name in sorted(c.env):
                if name.startswith("VLLM_") and name not in f.vllm.env_vars:
                    findings.append(_finding(
                        "vllm-env-unknown", MANDATORY, c.owner["urn"],
                        f"{c.where}: environment variable {name} is not one vLLM {f.vllm.version} reads (vllm/envs.py): "
                        f"vLLM ignores it without a warning"))
    findings += _check_metrics(ctx, vllm_versions, hidden_enabled)
    findings += _check_keepalive(ctx, all_containers)
    return findings


def _check_serve(c: Container, f: ic.ImageFacts, args: list[str], filtered: bool) -> list[Any]:
    assert f.vllm is not None
    out: list[Any] = []
    lora: list[str] = []
    for i, token in enumerate(args):
        if not token.startswith("-") or re.match(r"^-[0-9.]", token):
            continue
        status = f.vllm.flag_status(token)
        if status is None:
            out.append(_finding(
                "vllm-flag-unknown", MANDATORY, c.owner["urn"],
                f"{c.where}: `vllm serve` flag {token.split('=', 1)[0]} does not exist in vLLM {f.vllm.version} "
                f"({f.vllm.source}): argparse exits with \"unrecognized arguments\" and the container crash-loops"))
        elif status == "deprecated":
            out.append(_finding(
                "vllm-flag-deprecated", ADVISORY, c.owner["urn"],
                f"{c.where}: `vllm serve` flag {token.split('=', 1)[0]} is deprecated in vLLM {f.vllm.version} "
                f"(deprecated=True in vllm/engine/arg_utils.py) and goes away in a later release"))
        if token.split("=", 1)[0] in ("--lora-modules", "--lora_modules"):
            j = i + 1
            while j < len(args) and not args[j].startswith("-"):
                lora.append(args[j])
                j += 1
    if lora and not filtered:
        out.append(_finding(
            "static-lora-start", MANDATORY, c.owner["urn"],
            f"{c.where}: `vllm serve --lora-modules` names {len(lora)} adapter(s) ({', '.join(lora[:3])}"
            f"{', ...' if len(lora) > 3 else ''}) with no launcher that drops those that cannot load: vLLM "
            f"{f.vllm.version} raises at start-up when one fails to load (serving_models.py init_static_loras), so "
            f"one adapter not uploaded yet crash-loops every replica of the base model"))
    return out


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _check_metrics(ctx: Any, versions: dict[str, ic.VllmFacts], hidden_enabled: bool) -> list[Any]:
    from infra.readiness import display

    out: list[Any] = []
    for r in ctx.resources:
        if r["type"] == "aws:ecs/taskDefinition:TaskDefinition":
            continue
        text = json.dumps(r.get("inputs") or {})
        if "vllm:" not in text:
            continue
        names = sorted({m for s in _strings(r.get("inputs") or {}) for m in METRIC.findall(s)})
        if not names:
            continue
        if not versions:
            out.append(_finding(
                "vllm-metric-unknown", ADVISORY, r["urn"],
                f"could not judge: {display(r)} queries {', '.join(names)} but no container of the stack runs a vLLM "
                f"image with recorded facts"))
            continue
        for series in names:
            for ref, v in sorted(versions.items()):
                status, metric = v.metric_status(series)
                if status is None:
                    out.append(_finding(
                        "vllm-metric-unknown", MANDATORY, r["urn"],
                        f"{display(r)} queries {series}, which vLLM {v.version} ({ref}) does not expose "
                        f"(vllm/v1/metrics/loggers.py): the query returns nothing, so its alert, panel or scaler "
                        f"never fires"))
                elif status == "counter-name":
                    out.append(_finding(
                        "vllm-metric-unknown", MANDATORY, r["urn"],
                        f"{display(r)} queries {series}, a counter vLLM {v.version} exposes as {series}_total "
                        f"(prometheus_client): the query returns nothing"))
                elif status == "hidden" and not hidden_enabled:
                    out.append(_finding(
                        "vllm-metric-unknown", MANDATORY, r["urn"],
                        f"{display(r)} queries {series}, deprecated and hidden in vLLM {v.version} unless the server "
                        f"runs with --show-hidden-metrics-for-version: the query returns nothing"))
                elif status == "deprecated":
                    out.append(_finding(
                        "vllm-metric-deprecated", ADVISORY, r["urn"],
                        f"{display(r)} queries {series} ({metric}), deprecated in vLLM {v.version} and hidden from "
                        f"the next minor release (vllm/v1/metrics/loggers.py): move to its replacement"))
    return out


def _check_keepalive(ctx: Any, all_containers: list[Container]) -> list[Any]:
    """Targets behind the load balancer keep idle connections open longer than its idle timeout."""
    from infra.readiness import _meta, _ns, display

    out: list[Any] = []
    albs = [r for r in ctx.resources if r["type"] == "aws:lb/loadBalancer:LoadBalancer"
            and (r.get("inputs") or {}).get("loadBalancerType", "application") == "application"]
    if not albs:
        return out
    idle = max(int(float((r.get("inputs") or {}).get("idleTimeout") or ALB_IDLE_DEFAULT)) for r in albs)
    targets: list[tuple[Container, str]] = []
    by_owner: dict[str, list[Container]] = {}
    for c in all_containers:
        by_owner.setdefault(c.owner["urn"], []).append(c)
    services = {(_ns(r), _meta(r).get("name")): r for r in ctx.resources if r["type"] == "kubernetes:core/v1:Service"}
    for r in ctx.resources:
        if r["type"].endswith(":TargetGroupBinding"):
            ref = ((r.get("inputs") or {}).get("spec") or {}).get("serviceRef") or {}
            svc = services.get((_ns(r), ref.get("name")))
            if svc is None:
                continue
            selector = ((svc.get("inputs") or {}).get("spec") or {}).get("selector") or {}
            for w in ctx.workloads:
                if _ns(w.r) == _ns(svc) and selector and any(selector.items() <= t.labels.items() for t in w.templates):
                    for c in by_owner.get(w.r["urn"], []):
                        if c.facts is not None and c.name in _serving_names(w):
                            targets.append((c, f"TargetGroupBinding {_meta(r).get('name')} -> {display(svc)}"))
        elif r["type"] == "aws:ecs/service:Service":
            names = {str(lb.get("containerName")) for lb in (r.get("inputs") or {}).get("loadBalancers") or []}
            tds = [u for u in r.get("dependencies") or [] if u in by_owner]
            for u in tds:
                for c in by_owner[u]:
                    if c.name in names:
                        targets.append((c, f"ECS service {r['name']}"))
    for c, via in targets:
        f = c.facts
        assert f is not None
        value, what = _keepalive_of(c, f)
        if value is None:
            continue
        if value <= idle:
            out.append(_finding(
                "keepalive-idle-timeout", MANDATORY, c.owner["urn"],
                f"{c.where} ({via}) keeps idle HTTP connections {value} s ({what}) but the load balancer's idle "
                f"timeout is {idle} s: the target closes connections the ALB still reuses, and clients see 502s "
                f"(ELB User Guide: the target's keep-alive must exceed the idle timeout)"))
    return out


def _serving_names(w: Any) -> set[str]:
    """Containers of a workload that serve traffic (have a port)."""
    return {str(c.get("name")) for t in w.templates for c in t.spec.get("containers") or [] if c.get("ports")}


def _keepalive_of(c: Container, f: ic.ImageFacts) -> tuple[Optional[int], str]:
    if f.vllm is not None:
        raw = c.env.get("VLLM_HTTP_TIMEOUT_KEEP_ALIVE")
        if raw is None and "VLLM_HTTP_TIMEOUT_KEEP_ALIVE" in c.env:
            return None, ""  # from a secret: not judged
        if raw is None:
            return f.vllm.keep_alive_default, f"VLLM_HTTP_TIMEOUT_KEEP_ALIVE unset: vLLM's default (vllm/envs.py)"
        try:
            return int(raw), "VLLM_HTTP_TIMEOUT_KEEP_ALIVE"
        except ValueError:
            return None, ""
    if f.http_keep_alive_default is not None:
        a = analyse(c.argv, f)
        if a.keepalive is not None:
            return a.keepalive, "uvicorn timeout_keep_alive bound by its launcher"
        return f.http_keep_alive_default, f"uvicorn's default: {f.http_keep_alive_source}"
    return None, ""
