"""Pure helpers of the FineTuneJob handler: lenient status reading, whose pods to read, watch filters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubetune.handlers import finetunejob


def job(name: str, component: str, attempt: str | None, failed: bool, uid: str = "u") -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": component}
    if attempt:
        labels["kubetune.dev/attempt"] = attempt
    conditions = [{"type": "Failed", "status": "True"}] if failed else []
    return {
        "metadata": {"name": name, "labels": labels, "ownerReferences": [{"uid": uid, "controller": True}]},
        "spec": {},
        "status": {"conditions": conditions},
    }


def test_only_the_latest_failed_attempt_and_failed_steps_are_diagnosed() -> None:
    jobs = [
        job("p", "prepare", None, failed=True),
        job("e2", "evaluate", None, failed=True, uid="someone-else"),
        job("t1", "train", "1", failed=True),
        job("t3", "train", "3", failed=True),
        job("t2", "train", "2", failed=True),
        job("t4", "train", "4", failed=False),
        job("e", "evaluate", None, failed=False),
        job("other", "train", "9", failed=True, uid="someone-else"),
    ]
    assert finetunejob._jobs_whose_pods_matter(jobs, "u") == ["p", "t3"]


def test_the_pods_of_a_running_prepare_job_are_read() -> None:
    running = job("p", "prepare", None, failed=False)
    assert finetunejob._jobs_whose_pods_matter([running], "u") == ["p"]
    done = job("p", "prepare", None, failed=False)
    done["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    deleting = job("p", "prepare", None, failed=False)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    for other in (done, deleting, job("p", "prepare", None, failed=False, uid="old"), job("t", "train", "1", False)):
        assert finetunejob._jobs_whose_pods_matter([other], "u") == []


def test_prepare_pod_events_matter_once_when_the_pod_succeeds() -> None:
    ctl = controller()
    key = ("ns", "a-prepare-x7k2p")
    assert not ctl.prepare_pod_changed(key, {"status": {"phase": "Running"}}, deleted=False)
    succeeded = {"status": {"phase": "Succeeded"}}
    assert ctl.prepare_pod_changed(key, succeeded, deleted=False)
    assert not ctl.prepare_pod_changed(key, succeeded, deleted=False)  # e.g. the Job's finalizer removed
    assert not ctl.prepare_pod_changed(key, {"status": {"phase": "Failed"}}, deleted=False)
    assert not ctl.prepare_pod_changed(key, succeeded, deleted=True)
    assert key not in ctl.succeeded_prepare_pods


def test_lenient_status_drops_invalid_fields(caplog: pytest.LogCaptureFixture) -> None:
    status = finetunejob._lenient_status({"phase": "Training", "attempts": -3, "progress": {"step": "many"}})
    assert status.phase == "Training" and status.attempts is None and status.progress is None
    assert "ignoring invalid status fields" in caplog.text
    assert finetunejob._lenient_status(None).phase is None


def controller() -> finetunejob.FineTuneJobController:
    return finetunejob.FineTuneJobController(api=None, settings=None)  # type: ignore[arg-type]


def test_own_status_writes_do_not_trigger_a_reconcile() -> None:
    ctl = controller()
    key = ("ns", "a")
    assert ctl.finetunejob_changed(key, "10", deleted=False)
    ctl.written[key] = "11"  # what our status patch returned
    assert not ctl.finetunejob_changed(key, "11", deleted=False)
    assert ctl.finetunejob_changed(key, "12", deleted=False)  # someone else wrote after us
    assert not ctl.finetunejob_changed(key, "12", deleted=True)
    assert key not in ctl.written


def test_job_events_matter_only_when_the_summary_changes() -> None:
    ctl = controller()
    key = ("ns", "a-prepare")
    active = {"metadata": {"name": "a-prepare"}, "spec": {}, "status": {"active": 1}}
    assert ctl.job_changed(key, active, deleted=False)
    assert not ctl.job_changed(key, {**active, "status": {"active": 1, "ready": 1}}, deleted=False)
    done = {**active, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert ctl.job_changed(key, done, deleted=False)
    deleting = {**done, "metadata": {"name": "a-prepare", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert ctl.job_changed(key, deleting, deleted=False)
    assert ctl.job_changed(key, deleting, deleted=True)
    assert key not in ctl.job_states


def test_a_replica_that_lost_the_lease_does_not_reconcile() -> None:
    ctl = controller()  # its api is None: any API call would raise
    ctl.may_act = lambda: False
    assert asyncio.run(ctl.reconcile(("ns", "a"))) == finetunejob.NOT_LEADER_RETRY_SECONDS
