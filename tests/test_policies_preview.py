"""The offline preview with the real pack: shipped stacks pass; broken stack files exit 1 naming the rule."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import yaml

import infra.preview as preview_mod
from infra.preview import main, preview

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = Path(__file__).resolve().parent / "gpu_stand_in"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_stacks_exit_0(stack, capsys):
    assert main(["--stack", stack, "--quiet"]) == 0
    assert "0 mandatory" in capsys.readouterr().out


@pytest.fixture(scope="module")
def gpu_root(tmp_path_factory):
    """A project root whose program is the real stack plus stand-in GPU capacity and budget."""
    root = tmp_path_factory.mktemp("gpu-root")
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    project["main"] = str(STAND_IN)
    (root / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    for stack in ("dev", "prod"):
        (root / f"Pulumi.{stack}.yaml").write_text((ROOT / f"Pulumi.{stack}.yaml").read_text())
    (root / "policies").symlink_to(ROOT / "policies")
    return root


def _broken(root: Path, stack: str, edit) -> Path:
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    edit(doc["config"])
    path = root / f"broken-{stack}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _mandatory(doc: dict) -> list[tuple[str, str]]:
    return [(v["policy"], v["message"].split("\n", 1)[1]) for v in doc["policy"]["violations"] if v["level"] == "mandatory"]


def test_stand_in_gpu_stacks_pass(gpu_root):
    for stack in ("dev", "prod"):
        doc = preview(stack, root=gpu_root)
        assert any(r["type"] == "aws:eks/nodeGroup:NodeGroup" for r in doc["resources"])
        assert _mandatory(doc) == []


def test_too_many_gpus_exits_1_naming_the_rules(gpu_root, monkeypatch):
    def more_nodes(cfg):
        cfg["llmserving:gpuPools"][0]["maxNodes"] = 24
    path = _broken(gpu_root, "dev", more_nodes)
    out = gpu_root / "too-many.json"
    monkeypatch.setattr(preview_mod, "preview", functools.partial(preview, root=gpu_root))
    assert main(["--stack", "dev", "--stack-file", str(path), "--quiet", "--json", str(out)]) == 1
    doc = json.loads(out.read_text())
    assert ("gpu-max-per-pool", "node group 'g5-spot' can grow to 24 GPUs at max size; the limit per pool is 16") in _mandatory(doc)
    assert ("gpu-max-total", "GPU capacity at max size is 24 GPUs (node group 'g5-spot' 24); the stack limit is 16") in _mandatory(doc)


def test_over_budget_exits_1_naming_the_rule(gpu_root, monkeypatch):
    def bigger_p5(cfg):
        cfg["llmserving:gpuPools"][0]["maxNodes"] = 6
    path = _broken(gpu_root, "prod", bigger_p5)
    out = gpu_root / "over-budget.json"
    monkeypatch.setattr(preview_mod, "preview", functools.partial(preview, root=gpu_root))
    assert main(["--stack", "prod", "--stack-file", str(path), "--quiet", "--json", str(out)]) == 1
    doc = json.loads(out.read_text())
    assert _mandatory(doc) == [(
        "cost-max-hourly-within-budget",
        "GPU capacity at max size costs up to $364.44/hour (node group 'p5-ondemand' $330.24, node group 'g5-lora' "
        "$34.20); the stack budget is $320/hour")]
