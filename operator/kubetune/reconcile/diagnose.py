"""Why did this Job fail? A pure function of the Job and its pods.

A person looking at a failed FineTuneJob wants "container train exited with code 137
(OOMKilled)", not "BackoffLimitExceeded". This module reads what the kubelet and the Job
controller recorded (container termination states, pod reasons, Job conditions) and turns it
into one reason and one message for the FineTuneJob's conditions and events.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Exit code of the trainer for errors a retry cannot fix (bad input, missing file, usage).
NON_RETRYABLE_EXIT_CODES = frozenset({2})


@dataclass(frozen=True)
class Failure:
    """Why a Job failed.

    Attributes:
        reason: a short CamelCase cause: ``OOMKilled``, ``Error``, ``DeadlineExceeded``,
            ``BackoffLimitExceeded``, ``Evicted``...
        message: one human-readable sentence naming the pod, container and exit code.
        exit_code: the failed container's exit code, when known.
    """

    reason: str
    message: str
    exit_code: int | None = None

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed (not a trainer input error, exit code 2)."""
        return self.exit_code not in NON_RETRYABLE_EXIT_CODES


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition
    return None


def _signal_name(exit_code: int) -> str | None:
    if exit_code <= 128:
        return None
    try:
        return signal.Signals(exit_code - 128).name
    except ValueError:
        return None


def container_failure(pod_name: str, status: Mapping[str, Any]) -> Failure | None:
    """The failure of one container, from its ``containerStatuses`` entry.

    Args:
        pod_name: the pod, for the message.
        status: one entry of ``status.containerStatuses`` (or ``initContainerStatuses``).

    Returns:
        The failure, or None if the container did not terminate with a non-zero code.
    """
    terminated = (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get("terminated")
    if not terminated or not terminated.get("exitCode"):
        return None
    code = int(terminated["exitCode"])
    reason = terminated.get("reason") or "Error"
    text = f"pod {pod_name}: container {status.get('name', '?')} exited with code {code} ({reason})"
    signal_name = _signal_name(code)
    if signal_name and reason != "OOMKilled":
        text += f", killed by {signal_name}"
    if terminated.get("message"):
        text += f": {str(terminated['message']).strip()}"
    return Failure(reason=reason, message=text, exit_code=code)


def pod_failure(pod: Mapping[str, Any]) -> Failure | None:
    """Why a pod failed: a failed container first, then the pod's own reason (e.g. Evicted).

    Args:
        pod: a Pod object as a dict.

    Returns:
        The failure, or None when the pod shows none.
    """
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "?")
    for entry in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        failure = container_failure(name, entry)
        if failure is not None:
            return failure
    if status.get("phase") == "Failed" and status.get("reason"):
        message = f"pod {name}: {status['reason']}"
        if status.get("message"):
            message += f": {status['message']}"
        return Failure(reason=status["reason"], message=message)
    return None


def job_failure(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Failure | None:
    """Why a Job failed.

    The Job's deadline wins (its pods were killed because of it); otherwise the first failed
    container or pod explains it; otherwise the Job's own ``Failed`` condition does.

    Args:
        job: the Job as a dict.
        pods: the Job's pods (any order; may be empty when they were deleted).

    Returns:
        The failure, or None when the Job has not failed.
    """
    failed = _condition(job, "Failed")
    if failed is None:
        return None
    job_name = (job.get("metadata") or {}).get("name", "?")
    reason = failed.get("reason") or "JobFailed"
    if reason == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return Failure(reason, f"Job {job_name} ran past its activeDeadlineSeconds ({deadline}s)")
    ordered = sorted(pods, key=_finished_at)
    for pod in ordered:
        failure = pod_failure(pod)
        if failure is not None:
            return Failure(failure.reason, f"Job {job_name}: {failure.message}", failure.exit_code)
    message = failed.get("message") or "the Job failed"
    return Failure(reason, f"Job {job_name}: {message}")


def _finished_at(pod: Mapping[str, Any]) -> str:
    """Sort key: the earliest container termination first (the root cause of a multi-node failure)."""
    times = [
        ((entry.get("state") or {}).get("terminated") or {}).get("finishedAt") or "~"
        for entry in (pod.get("status") or {}).get("containerStatuses") or []
    ]
    return min(times, default="~")
