"""The offline preview with the real pack: shipped stacks pass; broken stack files exit 1 naming the rule."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from infra.preview import main
from tests.harness import shipped_preview

ROOT = Path(__file__).resolve().parent.parent




def _broken(tmp_path: Path, stack: str, edit) -> Path:
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    edit(doc["config"])
    path = tmp_path / f"broken-{stack}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _mandatory(doc: dict) -> list[tuple[str, str]]:
    return [(v["policy"], v["message"].split("\n", 1)[1]) for v in doc["policy"]["violations"] if v["level"] == "mandatory"]


def _run(tmp_path: Path, stack: str, edit) -> tuple[int, dict]:
    path = _broken(tmp_path, stack, edit)
    out = tmp_path / "doc.json"
    code = main(["--stack", stack, "--stack-file", str(path), "--quiet", "--json", str(out)])
    return code, json.loads(out.read_text())


def test_shipped_stacks_have_gpu_capacity_and_a_budget():
    for stack in ("dev", "prod"):
        doc = shipped_preview(stack)
        types = {r["type"] for r in doc["resources"]}
        assert "aws:budgets/budget:Budget" in types
        assert types & {"aws:eks/nodeGroup:NodeGroup", "kubernetes:karpenter.sh/v1:NodePool"}
        assert _mandatory(doc) == []


def test_too_many_gpus_exits_1_naming_the_rules(tmp_path):
    def second_pool(cfg):
        extra = dict(cfg["llmserving:gpuPools"][0], name="g5-extra")
        cfg["llmserving:gpuPools"].append(extra)
    code, doc = _run(tmp_path, "dev", second_pool)
    assert code == 1
    assert ("gpu-max-total", "GPU capacity at max size is 32 GPUs (Karpenter NodePool 'g5-extra' 16, Karpenter "
            "NodePool 'g5-spot' 16); the stack limit is 16") in _mandatory(doc)


def test_node_group_over_the_pool_limit_exits_1(tmp_path):
    def bigger_p5(cfg):
        cfg["llmserving:gpuPools"][0]["maxNodes"] = 9
    code, doc = _run(tmp_path, "prod", bigger_p5)
    assert code == 1
    found = dict(_mandatory(doc))
    assert found["gpu-max-per-pool"] == "node group 'llmserving-prod-p5-ondemand-gpu' can grow to 72 GPUs at max size; the limit per pool is 64"
    assert found["cost-max-hourly-within-budget"].startswith("GPU capacity at max size costs up to $")


def test_over_budget_exits_1_naming_the_rule(tmp_path):
    # The budget the pack enforces is its policy config (policies/config/prod.json),
    # not the stack file: raising a stack's own budget does not lift the guardrail.
    def bigger_g5_pool(cfg):
        cfg["llmserving:gpuPools"][1]["maxNodes"] = 16
        cfg["llmserving:budget"]["hourlyUsd"] = 1000
    code, doc = _run(tmp_path, "prod", bigger_g5_pool)
    assert code == 1
    assert [p for p, _ in _mandatory(doc)] == ["cost-max-hourly-within-budget"]
    assert _mandatory(doc)[0][1].endswith("the stack budget is $320/hour")
