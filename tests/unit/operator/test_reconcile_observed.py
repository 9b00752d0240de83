"""Summaries of observed Jobs: state, attempt, owner filtering."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubetune.reconcile import observed
from kubetune.reconcile.observed import JobState, Step


def job(name: str, component: str, attempt: str | None = None, uid: str = "u1", **status: Any) -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": component, "kubetune.dev/finetunejob": "demo"}
    if attempt:
        labels["kubetune.dev/attempt"] = attempt
    return {
        "metadata": {"name": name, "labels": labels, "ownerReferences": [{"uid": uid, "controller": True}]},
        "spec": status.pop("spec", {}),
        "status": status,
    }


def cond(type_: str, when: str = "2026-01-01T00:00:05Z") -> list[dict[str, str]]:
    return [{"type": type_, "status": "True", "lastTransitionTime": when}]


def test_states() -> None:
    assert observed.job_state(job("a", "train")) == (JobState.ACTIVE, None)
    assert observed.job_state(job("a", "train", spec={"suspend": True})) == (JobState.QUEUED, None)
    assert observed.job_state(job("a", "train", spec={"suspend": True}, active=1))[0] == JobState.ACTIVE
    done = observed.job_state(job("a", "train", conditions=cond("Complete")))
    assert done == (JobState.SUCCEEDED, datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC))
    # SuccessCriteriaMet comes first (Complete follows after the Job controller's bookkeeping).
    early = observed.job_state(job("a", "train", conditions=cond("SuccessCriteriaMet", "2026-01-01T00:00:02Z")))
    assert early == (JobState.SUCCEEDED, datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC))
    # FailureTarget alone: pods may still be terminating; the Job is not failed yet.
    assert observed.job_state(job("a", "train", conditions=cond("FailureTarget")))[0] == JobState.ACTIVE
    assert observed.job_state(job("a", "train", conditions=cond("Failed")))[0] == JobState.FAILED


def test_summaries_filter_by_owner_and_diagnose() -> None:
    failed = job(
        "demo-train-2",
        "train",
        "2",
        conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
    )
    pods = {
        "demo-train-2": [
            {
                "metadata": {"name": "p"},
                "status": {
                    "containerStatuses": [
                        {"name": "train", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
                    ]
                },
            }
        ]
    }
    jobs = [job("demo-prepare", "prepare"), failed, job("demo-train-1", "train", "1", uid="old"), job("x", "other")]
    summaries = observed.summarise_jobs(jobs, "u1", pods)
    assert [(s.name, s.step, s.attempt, s.state) for s in summaries] == [
        ("demo-prepare", Step.PREPARE, 1, JobState.ACTIVE),
        ("demo-train-2", Step.TRAIN, 2, JobState.FAILED),
    ]
    assert summaries[1].failure is not None and summaries[1].failure.exit_code == 137
    obs = observed.Observed(summaries)
    assert obs.step(Step.PREPARE) is summaries[0]
    assert obs.train_jobs() == [summaries[1]]


def test_deleting_and_bad_attempt_label() -> None:
    j = job("demo-train-x", "train", "x")
    j["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    summary = observed.summarise_job(j)
    assert summary is not None and summary.deleting and summary.attempt == 1


def test_resume_argument_is_read_back_from_the_command() -> None:
    j = job("demo-train-2", "train", "2")
    j["spec"] = {
        "template": {"spec": {"containers": [{"command": ["python", "-m", "x", "train", "--resume", "auto"]}]}}
    }
    summary = observed.summarise_job(j)
    assert summary is not None and summary.resume_from == "auto"
    j["spec"]["template"]["spec"]["containers"][0]["command"] = ["python", "--resume"]
    summary = observed.summarise_job(j)
    assert summary is not None and summary.resume_from is None


def pod(phase: str, owner_uid: str, finished: str | None = None) -> dict[str, Any]:
    state = {"terminated": {"exitCode": 0, "finishedAt": finished}} if finished else {"running": {}}
    return {
        "metadata": {"name": "p", "ownerReferences": [{"uid": owner_uid, "controller": True}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "prepare", "state": state}]},
    }


def test_a_succeeded_prepare_pod_is_the_prepare_step_succeeding() -> None:
    prepare = job("demo-prepare", "prepare", active=1)
    prepare["metadata"]["uid"] = "job-uid"
    summary = observed.summarise_job(prepare, [pod("Succeeded", "job-uid", "2026-01-01T00:00:03Z")])
    assert summary is not None and summary.state == JobState.SUCCEEDED
    assert summary.finished_at == datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)
    # Even if the Job controller then fails the Job (its deadline passed while it counted the pod).
    prepare["status"]["conditions"] = cond("Failed")
    summary = observed.summarise_job(prepare, [pod("Succeeded", "job-uid")])
    assert summary is not None and summary.state == JobState.SUCCEEDED and summary.finished_at is None


def test_pods_that_do_not_prove_the_data_ready() -> None:
    prepare = job("demo-prepare", "prepare", active=1)
    prepare["metadata"]["uid"] = "job-uid"
    for pods in ([pod("Running", "job-uid")], [pod("Succeeded", "deleted-job-of-the-same-name")], []):
        summary = observed.summarise_job(prepare, pods)
        assert summary is not None and summary.state == JobState.ACTIVE
    # Only one-completion steps whose pod is the data: a train pod's exit is the Job controller's to count.
    train = job("demo-train-1", "train", "1", active=1)
    train["metadata"]["uid"] = "job-uid"
    summary = observed.summarise_job(train, [pod("Succeeded", "job-uid")])
    assert summary is not None and summary.state == JobState.ACTIVE
