"""Reads a vLLM source tree and prints the facts infra/image_catalog.py records for that version:
the `vllm serve` flags (and which are deprecated), the VLLM_* environment variables and the
Prometheus metric names with their types.

    python scripts/vllm_facts.py /path/to/vllm-<version>   # e.g. the sdist from PyPI, unpacked

Static reading only (ast), so it needs none of vLLM's dependencies:
- flags: every "-..." name given to add_argument in vllm/engine/arg_utils.py (EngineArgs and
  AsyncEngineArgs add_cli_args), vllm/entrypoints/openai/cli_args.py (make_arg_parser) and the
  FrontendArgs dataclass fields (`--field-name`); a field or argument of type bool is an argparse
  BooleanOptionalAction (arg_utils.py _compute_kwargs), which also accepts `--no-<name>`;
  `deprecated=True` marks a deprecated flag;
- environment variables: the keys of `environment_variables` in vllm/envs.py;
- metrics: the `name=` of every metric vllm/v1/metrics/loggers.py and vllm/v1/spec_decode/metrics.py
  define (counter, gauge, histogram) and whether it is only registered behind `show_hidden_metrics`.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path


def _annotations(tree: ast.Module) -> dict[str, dict[str, str]]:
    """class name -> field -> annotation text, for every class in a module."""
    out: dict[str, dict[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            fields = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    fields[item.target.id] = ast.unparse(item.annotation)
            out[node.name] = fields
    return out


def flags(root: Path) -> tuple[dict[str, bool], list[str]]:
    """({flag: deprecated}, short aliases)."""
    classes: dict[str, dict[str, str]] = {}
    for f in (root / "vllm" / "config").glob("*.py"):
        classes.update(_annotations(ast.parse(f.read_text())))
    cli = root / "vllm" / "entrypoints" / "openai" / "cli_args.py"
    cli_tree = ast.parse(cli.read_text())
    classes.update(_annotations(cli_tree))
    arg_utils = ast.parse((root / "vllm" / "engine" / "arg_utils.py").read_text())
    classes.update(_annotations(arg_utils))
    out: dict[str, bool] = {}
    short: list[str] = []

    def is_bool(annotation: str) -> bool:
        return "bool" in annotation.replace("Boolean", "")

    for tree in (arg_utils, cli_tree):
        kwargs_of: dict[str, str] = {}  # model_kwargs -> ModelConfig
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", "") == "get_kwargs" and node.value.args
                    and isinstance(node.value.args[0], ast.Name) and isinstance(node.targets[0], ast.Name)):
                kwargs_of[node.targets[0].id] = node.value.args[0].id
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
                continue
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                     and a.value.startswith("-")]
            if not names:
                continue
            deprecated = any(k.arg == "deprecated" and isinstance(k.value, ast.Constant) and k.value.value is True
                             for k in node.keywords)
            boolean = any(k.arg == "action" and "BooleanOptionalAction" in ast.unparse(k.value) for k in node.keywords)
            for k in node.keywords:
                if k.arg is None and isinstance(k.value, ast.Subscript):  # **model_kwargs["field"]
                    var = getattr(k.value.value, "id", "")
                    field = k.value.slice.value if isinstance(k.value.slice, ast.Constant) else None
                    cls = kwargs_of.get(var)
                    if cls and field and is_bool(classes.get(cls, {}).get(field, "")):
                        boolean = True
            for n in names:
                if n.startswith("--"):
                    out[n] = deprecated
                    if boolean:
                        out["--no-" + n[2:]] = deprecated
                else:
                    short.append(n)
    for field, annotation in classes.get("FrontendArgs", {}).items():
        name = "--" + field.replace("_", "-")
        out[name] = False
        if is_bool(annotation):
            out["--no-" + name[2:]] = False
    return dict(sorted(out.items())), sorted(set(short))


def env_vars(root: Path) -> list[str]:
    tree = ast.parse((root / "vllm" / "envs.py").read_text())
    for node in ast.walk(tree):
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "environment_variables" and isinstance(node.value, ast.Dict):
            return sorted(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    raise SystemExit("vllm/envs.py: no environment_variables dict")


def metrics(root: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for rel in ("vllm/v1/metrics/loggers.py", "vllm/v1/spec_decode/metrics.py"):
        path = root / rel
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text())
        hidden_ranges = []
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "show_hidden_metrics" in ast.unparse(node.test):
                hidden_ranges.append((node.lineno, node.end_lineno))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = next((k.value.value for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)
                         and isinstance(k.value.value, str) and k.value.value.startswith("vllm:")), None)
            if name is None:
                continue
            func = ast.unparse(node.func)
            kind = ("counter" if "counter" in func.lower() else "histogram" if "histogram" in func.lower()
                    else "gauge")
            hidden = any(a <= node.lineno <= b for a, b in hidden_ranges)
            doc = " ".join(ast.unparse(k.value) for k in node.keywords if k.arg == "documentation")
            out[name] = {"type": kind, "hidden": hidden, "deprecated": "DEPRECATED" in doc}
    return dict(sorted(out.items()))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    fl, short = flags(root)
    print(json.dumps({"flags": fl, "short_flags": short, "env_vars": env_vars(root), "metrics": metrics(root)},
                     indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
