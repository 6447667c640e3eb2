"""The test harness's session cache of stack runs (tests/harness.py): shared, copied, never stale under a patch."""

from __future__ import annotations

import json

from infra import mockcloud
from infra.preview import resource_entry
from tests import harness
from tests.harness import once_per_session, run_stack, shipped_run


def test_every_caller_gets_its_own_copy_of_a_cached_run():
    a, b = run_stack("dev"), run_stack("dev")
    assert a == b and a is not b and a.registrations[0] is not b.registrations[0]
    a.registrations[0].inputs["mutatedByATest"] = True
    assert "mutatedByATest" not in run_stack("dev").registrations[0].inputs
    # shipped_run keeps one object per process (read-only by contract), equal to the run of the same config.
    assert shipped_run("dev") is shipped_run("dev") and shipped_run("dev") == run_stack("dev")


def test_once_per_session_computes_once_and_copies():
    calls = []

    def compute():
        calls.append(1)
        return {"value": [1, 2]}

    first = once_per_session("test_harness_runs.once", compute)
    first["value"].append(3)
    assert once_per_session("test_harness_runs.once", compute) == {"value": [1, 2]}
    assert len(calls) <= 1  # 0 when another xdist worker computed it first


def test_an_unpatched_test_is_not_marked():
    assert harness._PATCHED is False


def test_a_test_that_patches_runs_the_program_afresh(monkeypatch):
    # conftest marks a test that uses monkeypatch: a patch may change what the program registers.
    assert harness._PATCHED is True
    harness.patched_test(False)
    cached = run_stack("dev")  # the session's run of dev, computed or read
    harness.patched_test(True)
    seen = []
    original = mockcloud.RecordingMonitor.RegisterResource

    def spy(self, request):
        seen.append(request.name)
        return original(self, request)

    monkeypatch.setattr(mockcloud.RecordingMonitor, "RegisterResource", spy)
    run = run_stack("dev")
    # The same resources as the preview documents them (registration and dependency order follow
    # async scheduling; the document sorts both).
    def entries(r):
        return sorted((json.dumps(resource_entry(x), sort_keys=True) for x in r.registrations))
    assert entries(run) == entries(cached)
    # The program really ran under the patch (the stack resource is registered too).
    assert len(seen) == len(run.registrations) + 1


def test_the_mock_engine_leaves_the_sdk_as_it_found_it():
    # infra/mockcloud.py skips the SDK's per-resource stack capture during a run only.
    import pulumi
    from pulumi.runtime import resource as sdk_resource
    from tests.harness import run_component

    before = sdk_resource._get_stack_trace
    run = run_component(lambda: pulumi.ComponentResource("test:index:Thing", "thing"))
    assert [r.name for r in run.registrations] == ["thing"]
    assert sdk_resource._get_stack_trace is before
