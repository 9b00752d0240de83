"""Why did a Job fail: exit codes, OOMKilled, signals, deadlines, evictions."""

from __future__ import annotations

from typing import Any

from kubetune.reconcile import diagnose


def failed_job(
    reason: str = "BackoffLimitExceeded", message: str = "Job has reached the specified backoff limit"
) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo-train-1"},
        "spec": {"activeDeadlineSeconds": 600},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": message}]},
    }


def pod(
    name: str,
    code: int | None = None,
    reason: str = "Error",
    message: str = "",
    finished: str = "2026-01-01T00:00:00Z",
    **status: Any,
) -> dict[str, Any]:
    statuses = []
    if code is not None:
        terminated = {"exitCode": code, "reason": reason, "finishedAt": finished}
        if message:
            terminated["message"] = message
        statuses = [{"name": "train", "state": {"terminated": terminated}}]
    return {"metadata": {"name": name}, "status": {"phase": "Failed", "containerStatuses": statuses, **status}}


def test_oom_killed_names_the_exit_code() -> None:
    failure = diagnose.job_failure(failed_job(), [pod("p1", 137, "OOMKilled")])
    assert failure == diagnose.Failure(
        "OOMKilled", "Job demo-train-1: pod p1: container train exited with code 137 (OOMKilled)", 137
    )
    assert failure.retryable


def test_signal_and_message() -> None:
    failure = diagnose.job_failure(failed_job(), [pod("p1", 139, message="segfault in NCCL\n")])
    assert failure is not None
    assert failure.message.endswith("exited with code 139 (Error), killed by SIGSEGV: segfault in NCCL")


def test_exit_code_2_is_not_retryable() -> None:
    failure = diagnose.job_failure(failed_job(), [pod("p1", 2)])
    assert failure is not None and failure.exit_code == 2 and not failure.retryable


def test_earliest_failure_is_the_cause() -> None:
    pods = [
        pod("p-1", 1, finished="2026-01-01T00:00:09Z"),
        pod("p-0", 137, "OOMKilled", finished="2026-01-01T00:00:01Z"),
    ]
    failure = diagnose.job_failure(failed_job(), pods)
    assert failure is not None and failure.reason == "OOMKilled" and "pod p-0" in failure.message


def test_deadline_wins() -> None:
    failure = diagnose.job_failure(failed_job("DeadlineExceeded", "too long"), [pod("p1", 143)])
    assert failure == diagnose.Failure("DeadlineExceeded", "Job demo-train-1 ran past its activeDeadlineSeconds (600s)")


def test_evicted_pod() -> None:
    evicted = pod("p1", reason="x", status_reason=None)
    evicted["status"].update({"reason": "Evicted", "message": "The node was low on resource: memory."})
    failure = diagnose.job_failure(failed_job(), [evicted])
    assert failure is not None and failure.reason == "Evicted"
    assert failure.message == "Job demo-train-1: pod p1: Evicted: The node was low on resource: memory."


def test_without_pods_the_job_condition_explains() -> None:
    failure = diagnose.job_failure(failed_job(), [])
    assert failure == diagnose.Failure(
        "BackoffLimitExceeded", "Job demo-train-1: Job has reached the specified backoff limit"
    )


def test_not_failed() -> None:
    assert diagnose.job_failure({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, []) is None
    assert diagnose.pod_failure(pod("p1", 0)) is None
    assert diagnose.container_failure("p", {"name": "c", "state": {"running": {}}}) is None


def test_init_container_and_last_state() -> None:
    p = {
        "metadata": {"name": "p"},
        "status": {"initContainerStatuses": [{"name": "init", "lastState": {"terminated": {"exitCode": 3}}}]},
    }
    failure = diagnose.pod_failure(p)
    assert failure == diagnose.Failure("Error", "pod p: container init exited with code 3 (Error)", 3)
