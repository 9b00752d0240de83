"""What the operator observed about a FineTuneJob's children, summarised as plain data.

The decision function must not dig through Job dicts: the handler lists the Jobs (and the pods
of failed ones and of a running prepare Job), this module turns each into a :class:`ChildJob`
(step, attempt, state, when it finished, why it failed), and
:func:`kubetune.reconcile.finetunejob.decide` works on those. Jobs of another owner (e.g. a
deleted FineTuneJob of the same name whose children the garbage collector has not removed yet)
are left out here, by owner uid.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubetune.api.v1alpha1 import labels
from kubetune.reconcile import diagnose


class Step(enum.StrEnum):
    """The three kinds of Jobs of a FineTuneJob (their ``app.kubernetes.io/component``)."""

    PREPARE = "prepare"
    TRAIN = "train"
    EVALUATE = "evaluate"


class JobState(enum.StrEnum):
    """Where a child Job is."""

    QUEUED = "Queued"  # suspended, waiting for Kueue to admit it
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        """Succeeded or failed."""
        return self in (JobState.SUCCEEDED, JobState.FAILED)


@dataclass(frozen=True)
class ChildJob:
    """One child Job as the decision function needs it.

    Attributes:
        name: the Job's name.
        step: prepare, train or evaluate.
        attempt: the train attempt (1 for prepare and evaluate).
        state: queued, active, succeeded or failed.
        deleting: the Job has a deletionTimestamp (its pods may still be terminating).
        finished_at: when it succeeded or failed.
        failure: why it failed (for failed Jobs).
        resume_from: the ``--resume`` argument of a train Job's command, if any.
    """

    name: str
    step: Step
    attempt: int
    state: JobState
    deleting: bool = False
    finished_at: datetime | None = None
    failure: diagnose.Failure | None = None
    resume_from: str | None = None


@dataclass(frozen=True)
class BaseJob:
    """The FineTuneJob named by ``baseModel.fineTuneJobRef``.

    Attributes:
        found: whether it exists.
        phase: its ``status.phase``.
        artifact_uri: its ``status.artifact.uri``.
    """

    found: bool
    phase: str | None = None
    artifact_uri: str | None = None


@dataclass(frozen=True)
class Observed:
    """Everything observed about a FineTuneJob's children.

    Attributes:
        jobs: its Jobs (only those it controls).
        base_job: the referenced base FineTuneJob, when ``baseModel.fineTuneJobRef`` is set.
    """

    jobs: tuple[ChildJob, ...] = field(default_factory=tuple)
    base_job: BaseJob | None = None

    def step(self, step: Step) -> ChildJob | None:
        """The Job of a step that has only one (prepare, evaluate)."""
        return next((j for j in self.jobs if j.step == step), None)

    def train_jobs(self) -> list[ChildJob]:
        """Train Jobs, by attempt."""
        return sorted((j for j in self.jobs if j.step == Step.TRAIN), key=lambda j: j.attempt)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _true_condition(job: Mapping[str, Any], *types: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in types and condition.get("status") == "True":
            return condition
    return None


def job_state(job: Mapping[str, Any]) -> tuple[JobState, datetime | None]:
    """State of a Job and when it finished.

    Success counts from ``SuccessCriteriaMet`` (set as soon as the pods have succeeded; the
    terminal ``Complete`` follows once the Job controller has done its bookkeeping, which lags
    under load): the next step may start at once, nothing of this Job is running. Failure
    counts only from ``Failed``, which the Job controller sets after the pods have terminated
    (``FailureTarget`` comes first): a retry never overlaps the pods of the failed attempt.

    Args:
        job: the Job as a dict.

    Returns:
        The state and, for finished Jobs, the time of the finishing condition.
    """
    status = job.get("status") or {}
    succeeded = _true_condition(job, "SuccessCriteriaMet", "Complete")
    if succeeded is not None:
        return JobState.SUCCEEDED, _parse_time(succeeded.get("lastTransitionTime") or status.get("completionTime"))
    failed = _true_condition(job, "Failed")
    if failed is not None:
        return JobState.FAILED, _parse_time(failed.get("lastTransitionTime"))
    if (job.get("spec") or {}).get("suspend") and not status.get("active"):
        return JobState.QUEUED, None
    return JobState.ACTIVE, None


def controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether ``obj`` has a controller owner reference to the object with ``owner_uid``."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid and ref.get("controller") for ref in refs)


def summarise_job(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] = ()) -> ChildJob | None:
    """Summarise one of our Jobs.

    Args:
        job: the Job as a dict (labelled by the renderers).
        pods: its pods, used to diagnose a failure (may be empty).

    Returns:
        The summary, or None when the Job does not carry a known component label.
    """
    metadata = job.get("metadata") or {}
    job_labels = metadata.get("labels") or {}
    try:
        step = Step(job_labels.get(labels.COMPONENT, ""))
    except ValueError:
        return None
    try:
        attempt = int(job_labels.get(labels.ATTEMPT, "1"))
    except ValueError:
        attempt = 1
    state, finished_at = job_state(job)
    if step == Step.PREPARE and state != JobState.SUCCEEDED:
        # The data is prepared once the prepare pod has exited 0. The Job controller says so a
        # few of its own API requests later (and it is rate-limited): waiting for it would put
        # every prepare Job's bookkeeping in front of the train Jobs.
        pod = succeeded_pod(pods, metadata.get("uid", ""))
        if pod is not None:
            state, finished_at = JobState.SUCCEEDED, pod_finished_at(pod)
    failure = diagnose.job_failure(job, pods) if state == JobState.FAILED else None
    return ChildJob(
        name=metadata.get("name", ""),
        step=step,
        attempt=attempt,
        state=state,
        deleting=bool(metadata.get("deletionTimestamp")),
        finished_at=finished_at,
        failure=failure,
        resume_from=_resume_argument(job),
    )


def succeeded_pod(pods: Sequence[Mapping[str, Any]], job_uid: str) -> Mapping[str, Any] | None:
    """A pod of the Job (by controller uid) that has succeeded, or None.

    For a Job of one completion (prepare, evaluate) that pod is the Job's success, before the
    Job controller has counted it.

    Args:
        pods: pods listed for the Job (pods of a deleted Job of the same name are ignored).
        job_uid: the Job's uid.

    Returns:
        The pod, or None.
    """
    for pod in pods:
        if (pod.get("status") or {}).get("phase") == "Succeeded" and job_uid and controlled_by(pod, job_uid):
            return pod
    return None


def pod_finished_at(pod: Mapping[str, Any]) -> datetime | None:
    """When the last container of a finished pod terminated (None when the pod does not say)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    times = [((s.get("state") or {}).get("terminated") or {}).get("finishedAt") for s in statuses]
    return _parse_time(max((t for t in times if t), default=None))


def _resume_argument(job: Mapping[str, Any]) -> str | None:
    """The value after ``--resume`` in the Job's first container command."""
    containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [{}]
    command = list(containers[0].get("command") or [])
    if "--resume" in command[:-1]:
        return str(command[command.index("--resume") + 1])
    return None


def summarise_jobs(
    jobs: Sequence[Mapping[str, Any]],
    owner_uid: str,
    pods_by_job: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> tuple[ChildJob, ...]:
    """Summarise the Jobs a FineTuneJob controls, ignoring any other.

    Args:
        jobs: Jobs listed by the ``kubetune.dev/finetunejob`` label.
        owner_uid: the FineTuneJob's uid.
        pods_by_job: pods of (failed) Jobs, by Job name.

    Returns:
        The summaries.
    """
    pods_by_job = pods_by_job or {}
    out = []
    for job in jobs:
        if not controlled_by(job, owner_uid):
            continue
        summary = summarise_job(job, pods_by_job.get((job.get("metadata") or {}).get("name", ""), ()))
        if summary is not None:
            out.append(summary)
    return tuple(out)
