"""Generated mistakes (issue 14): from each shipped stack, a catalogue of one-mistake stack files.

The catalogue: every key misspelled at every depth, every leaf given a value
of the wrong type, every bounded field of the config schema (and every
serving figure) set just outside each of its bounds, wherever the stack has
or could have that field. Each case must end with exit 2 and a problem line
that starts with the mutated key; anything else (acceptance, another key, an
internal error with a traceback) fails the test.

Each case runs the preview's own pre-resource path in-process (stack file
text -> infra.preview.read_stack -> check_stack: config, capacity plan,
platform checks: the functions the program calls before its first resource)
and is classified the way `python -m infra.preview` classifies errors.
Every eighth case also runs the program as the CLI runs it (runpy of infra/
under the mock engine), which must raise a RunError with the same message;
a few go through the real command line in subprocesses.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import annotated_types
import pulumi
import yaml
from pydantic import BaseModel

from infra import preview
from infra.analyzer import PolicyConfigError
from infra.capacity import PlanError
from infra.config import ConfigError, StackConfig
from infra.config_limits import FIGURE_BOUNDS, _camel
from infra.mockcloud import run_program
from tests.harness import ROOT

STACKS = ("dev", "prod", "large-use1-a")
NS = "llmserving"
# Mappings whose keys are names the user picks, not schema keys.
FREE_FORM = {"tags", "figures"}
# Fields bounded by a list of allowed values rather than by pydantic metadata.
CHOICE_VALUES = {("ModelConfig", "tensor_parallel"): (3, 16), ("LoraConfig", "max_lora_rank"): (12, 1024)}
ITEM_BOUNDS = {("BudgetConfig", "alert_thresholds_percent"): (0, 501)}
# The preview's exit-2 errors (infra/preview.py main).
USER_ERRORS = (ConfigError, PlanError, preview.PreviewInputError, PolicyConfigError)


@dataclass
class Case:
    stack: str
    kind: str
    key: str  # the mutated key as messages name it
    doc: dict


def display(path: tuple) -> str:
    out = str(path[0])
    for part in path[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, node
    if isinstance(node, dict) and not (node.keys() == {"secure"}):
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))


def get(doc: dict, path: tuple) -> Any:
    node = doc
    for part in path:
        node = node[part]
    return node


def set_at(doc: dict, path: tuple, value: Any) -> None:
    node = doc
    for part in path[:-1]:
        if isinstance(node, dict) and part not in node:
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def misspell(key: str) -> str:
    ns, sep, name = key.rpartition(":")
    i = max(1, len(name) // 2)
    swapped = name[:i - 1] + name[i] + name[i - 1] + name[i + 1:] if len(name) > 1 else name + name
    if swapped == name:
        swapped = name[:i] + name[i + 1:]
    return f"{ns}{sep}{swapped}"


def misspellings(stack: str, config: dict) -> Iterator[Case]:
    for path, node in walk(config):
        if not path or isinstance(path[-1], int) or path[-1] == "secure":
            continue
        if any(str(p).rpartition(":")[2] in FREE_FORM for p in path[:-1]):
            continue
        parent = get(config, path[:-1])
        wrong = misspell(path[-1])
        assert wrong not in parent and wrong != path[-1], (path, wrong)
        doc = {"config": copy.deepcopy(config)}
        holder = get(doc["config"], path[:-1])
        # Keep the key's position: rebuild the mapping in order.
        items = [(wrong if k == path[-1] else k, v) for k, v in holder.items()]
        holder.clear()
        holder.update(items)
        yield Case(stack, "misspelled key", display(path[:-1] + (wrong,)), doc)


def wrong_types(stack: str, config: dict) -> Iterator[Case]:
    for path, node in walk(config):
        if not path or isinstance(node, (dict, list)) or node is None:
            continue
        if path[-1] == "secure":
            continue
        if isinstance(node, bool):
            bad: Any = "maybe"
        elif isinstance(node, (int, float)):
            bad = "not-a-number"
        else:
            bad = {"unexpected": "mapping"}
        doc = {"config": copy.deepcopy(config)}
        set_at(doc["config"], path, bad)
        yield Case(stack, "wrong type", display(path), doc)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, is a list) of Optional[...] / list[...] annotations."""
    is_list = False
    for _ in range(3):
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin is list:
            is_list, annotation = True, args[0]
        elif origin in (typing.Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
        else:
            break
    return annotation, is_list


def sections(model: type[BaseModel], node: Any, path: tuple) -> Iterator[tuple[type[BaseModel], tuple]]:
    """Every place a config model sits in the stack (or could sit, for optional sections it leaves out)."""
    yield model, path
    for name, field in model.model_fields.items():
        inner, is_list = _unwrap(field.annotation)
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)) or name == "catalog":
            continue
        alias = field.alias or name
        key = f"{NS}:{alias}" if not path else alias
        child = node.get(key) if isinstance(node, dict) else None
        if is_list:
            for i, item in enumerate(child or []):
                yield from sections(inner, item, path + (key, i))
        else:
            yield from sections(inner, child if isinstance(child, dict) else {}, path + (key,))


def _step(bound: float, is_int: bool) -> float:
    return 1 if is_int or abs(bound) >= 10 else 0.01


def out_of_range_values(model: type[BaseModel], name: str, field: Any) -> list[Any]:
    inner, is_list = _unwrap(field.annotation)
    if (model.__name__, name) in CHOICE_VALUES:
        return list(CHOICE_VALUES[(model.__name__, name)])
    if (model.__name__, name) in ITEM_BOUNDS:
        return [[v] for v in ITEM_BOUNDS[(model.__name__, name)]]
    if inner not in (int, float) or is_list:
        return []
    is_int = inner is int
    values = []
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            values.append(m.ge - _step(m.ge, is_int))
        elif isinstance(m, annotated_types.Gt):
            values.append(m.gt)
        elif isinstance(m, annotated_types.Le):
            values.append(m.le + _step(m.le, is_int))
        elif isinstance(m, annotated_types.Lt):
            values.append(m.lt)
    return [int(v) if is_int else round(v, 4) for v in values]


def out_of_range(stack: str, config: dict) -> Iterator[Case]:
    for model, path in sections(StackConfig, config, ()):
        for name, field in model.model_fields.items():
            for bad in out_of_range_values(model, name, field):
                alias = field.alias or name
                key_path = path + (alias,) if path else (f"{NS}:{alias}",)
                doc = {"config": copy.deepcopy(config)}
                set_at(doc["config"], key_path, bad)
                # A bounded list item is named with its index.
                named = key_path + (0,) if (model.__name__, name) in ITEM_BOUNDS else key_path
                yield Case(stack, "out of range", display(named), doc)
    for snake, bound in FIGURE_BOUNDS.items():
        for bad in (bound.low - (0 if bound.above else _step(bound.low, bound.whole)),
                    bound.high + _step(bound.high, bound.whole)):
            doc = {"config": copy.deepcopy(config)}
            set_at(doc["config"], (f"{NS}:serving", "figures", _camel(snake)), bad)
            yield Case(stack, "out of range", f"{NS}:serving.figures.{_camel(snake)}", doc)


@functools.lru_cache(maxsize=1)
def catalogue() -> tuple[Case, ...]:
    cases: list[Case] = []
    for stack in STACKS:
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        for generate in (misspellings, wrong_types, out_of_range):
            cases += generate(stack, config)
    return tuple(cases)


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def stack_text(case: Case) -> str:
    return yaml.dump(case.doc, Dumper=_Dumper, sort_keys=False)


def in_process(case: Case) -> tuple[int, str, Optional[preview.StackFiles]]:
    """(exit code as the preview would give it, message, files); a bug escapes as its own exception."""
    files = None
    try:
        files = preview.read_stack(ROOT, case.stack, Path(f"Pulumi.{case.stack}.yaml"), stack_text=stack_text(case))
        preview.check_stack(files, case.stack)
    except USER_ERRORS as e:
        return 2, str(e), files
    return 0, "", files


def names_key(message: str, key: str) -> bool:
    return any(line.strip().removeprefix("- ").split(": ", 1)[0] == key for line in message.splitlines())


def test_generated_mistakes_exit_2_naming_the_mutated_key():
    cases = catalogue()
    kinds = {k: sum(c.kind == k for c in cases) for k in ("misspelled key", "wrong type", "out of range")}
    print(f"\n{len(cases)} generated cases: {kinds}")
    assert len(cases) > 600 and all(n > 100 for n in kinds.values()), kinds
    failures = []
    program_checked = 0
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for i, case in enumerate(cases):
            code, message, files = in_process(case)
            if code != 2 or not names_key(message, case.key):
                failures.append(f"{case.stack} {case.kind} {case.key}: exit {code}: {message[:300]}")
                continue
            if i % 8 == 0 and files is not None:
                # The program as the CLI runs it: the same message as a RunError.
                try:
                    run_program(str(ROOT / "infra"), project=files.project, stack=case.stack, config=files.config,
                                secret_keys=files.secret_keys,
                                region=files.config.get("aws:region", "us-east-1"))
                    failures.append(f"{case.stack} {case.kind} {case.key}: the program accepted it")
                except pulumi.RunError as e:
                    if str(e) != message:
                        failures.append(f"{case.stack} {case.kind} {case.key}: program says {str(e)[:200]}")
                program_checked += 1
    finally:
        os.chdir(cwd)
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:40])
    assert program_checked > len(cases) // 9


def test_a_few_generated_mistakes_through_the_real_command_line(tmp_path):
    cases = catalogue()
    picks = [next(c for c in cases if c.kind == kind and c.stack == stack)
             for kind, stack in (("misspelled key", "prod"), ("wrong type", "large-use1-a"), ("out of range", "dev"))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.pop("PYTHONPATH", None)
    procs = []
    for n, case in enumerate(picks):
        path = tmp_path / f"Pulumi.case{n}.yaml"
        path.write_text(stack_text(case))
        procs.append((case, subprocess.Popen(
            [sys.executable, "-m", "infra.preview", "--stack", case.stack, "--stack-file", str(path), "--quiet"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for case, proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (case.key, out, err)
        assert "Traceback" not in out + err
        assert names_key(err.replace("error: ", "", 1), case.key), (case.key, err)
