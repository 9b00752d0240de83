"""The life of a FineTuneJob as one pure function: what to do next, given what is observed.

:func:`decide` takes the FineTuneJob (spec, generation, status), its observed children
(:mod:`kubetune.reconcile.observed`) and the time, and returns a :class:`Decision`: children to
create or delete, the status to write, events to post and when to look again. It holds no
state between calls; everything it needs is in the status and in the child Jobs, which is what
makes the operator safe to kill at any moment:

* Job names are deterministic, so a repeated create is an ``AlreadyExists``, never a duplicate.
* The train attempt number is the larger of ``status.attempts`` and the highest attempt among
  the observed Jobs, so a crash between creating a Job and recording it loses nothing.
* A missing Job of a started attempt means it was deleted (suspend, or by hand): the next
  attempt gets the next number, resuming from the latest checkpoint, and never counts as a
  failure. Retries count the failed train Jobs; the back-off runs from the time the last one
  failed, taken from the Job itself.

Phases: Pending -> Preparing -> Training -> Evaluating -> Succeeded | Failed, plus Suspended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kubetune_trainer.evaluate.thresholds import check_thresholds

from kubetune.api import v1alpha1
from kubetune.reconcile import conditions, reasons
from kubetune.reconcile.diagnose import Failure
from kubetune.reconcile.observed import ChildJob, JobState, Observed, Step

Phase = v1alpha1.Phase
TERMINAL_PHASES = (Phase.SUCCEEDED, Phase.FAILED)
#: Reasons that make a Warning event.
WARNING_REASONS = frozenset(
    {
        reasons.ATTEMPT_FAILED,
        reasons.BASE_MODEL_FAILED,
        reasons.PREPARE_FAILED,
        reasons.TRAINING_FAILED,
        reasons.EVALUATION_FAILED,
        reasons.EVALUATION_GATE_FAILED,
        reasons.DEADLINE_EXCEEDED,
        reasons.INVALID_SPEC,
        reasons.CHILD_CONFLICT,
        reasons.RECONCILE_ERROR,
    }
)
#: The Job condition reason Kubernetes sets when a Job runs past its activeDeadlineSeconds.
JOB_DEADLINE_EXCEEDED = "DeadlineExceeded"
#: How often to look again while waiting for a deleted Job's pods to terminate.
DELETION_POLL_SECONDS = 2.0
#: How often to look at a base FineTuneJob we wait for (its events also wake us).
BASE_MODEL_POLL_SECONDS = 60.0
#: Condition messages of running steps: the same when the Job is created and while it runs, so
#: following a running Job costs no status write.
PREPARING_MESSAGE = "preparing the dataset: cleaning, PII redaction, dedup, balancing, tokenization"
EVALUATING_MESSAGE = "evaluating and exporting the model"
#: The ``--resume`` value when no checkpoint was reported: the trainer picks the latest it finds.
RESUME_AUTO = "auto"


@dataclass(frozen=True)
class Subject:
    """The FineTuneJob being reconciled.

    Attributes:
        name: ``metadata.name``.
        namespace: ``metadata.namespace``.
        generation: ``metadata.generation``.
        spec: the admitted spec.
        status: the current status (operator and trainer fields).
    """

    name: str
    namespace: str
    generation: int
    spec: v1alpha1.FineTuneJobSpec
    status: v1alpha1.FineTuneJobStatus


@dataclass(frozen=True)
class CreateJob:
    """Create a child Job (and, for the prepare step, the ConfigMap, RBAC and Service first).

    Attributes:
        step: prepare, train or evaluate.
        attempt: the train attempt (1 for the other steps).
        resume_from: ``--resume`` of a train attempt (a checkpoint path or ``auto``).
        deadline_seconds: the Job's ``activeDeadlineSeconds``: what is left of the job's deadline.
        base_model_uri: for the prepare step, the resolved base model written into the config.
    """

    step: Step
    attempt: int = 1
    resume_from: str | None = None
    deadline_seconds: int | None = None
    base_model_uri: str | None = None


@dataclass(frozen=True)
class DeleteJob:
    """Delete a child Job and its pods.

    Attributes:
        name: the Job's name.
    """

    name: str


@dataclass(frozen=True)
class ApplyDeployment:
    """Create or update the ModelDeployment of ``spec.deploy``."""


@dataclass(frozen=True)
class DeleteSelf:
    """Delete the FineTuneJob (``ttlSecondsAfterFinished`` expired); children follow by owner reference."""


Action = CreateJob | DeleteJob | ApplyDeployment | DeleteSelf


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about the FineTuneJob.

    Attributes:
        type: ``Normal`` or ``Warning``.
        reason: CamelCase reason from :mod:`kubetune.reconcile.reasons`.
        message: what happened.
    """

    type: str
    reason: str
    message: str


@dataclass
class Decision:
    """What to do, in order: run ``actions``, then write ``status``, then post ``events``.

    Attributes:
        status: the desired status (only operator-owned fields differ from the current one).
        actions: child operations.
        events: events to post.
        requeue_after: seconds until the job must be looked at again even if nothing changes
            (back-off, deadline, TTL); None when only a change can move it forward.
    """

    status: v1alpha1.FineTuneJobStatus
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


class _Plan:
    """The decision being built: a copy of the status plus actions, events and a timer."""

    def __init__(
        self,
        status: v1alpha1.FineTuneJobStatus,
        generation: int,
        now: datetime,
        job: Subject | None = None,
    ) -> None:
        self.original = status
        self.generation = generation
        self.now = now
        self._job = job
        self.status = status.model_copy(deep=True)
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.requeue_after: float | None = None

    @property
    def job(self) -> Subject:
        """The FineTuneJob (absent only for :func:`invalid_spec`, which never asks)."""
        if self._job is None:
            raise RuntimeError("this plan has no readable spec")
        return self._job

    @property
    def spec(self) -> v1alpha1.FineTuneJobSpec:
        """The FineTuneJob's spec."""
        return self.job.spec

    def condition(self, type_: str, status: bool, reason: str, message: str) -> None:
        self.status.conditions, _ = conditions.set_condition(
            self.status.conditions, type_, status, reason, message, self.generation, self.now
        )

    def phase(self, phase: Phase, reason: str, message: str) -> None:
        """Set the phase and the Ready condition that mirrors it."""
        self.status.phase = phase
        self.condition(reasons.READY, phase == Phase.SUCCEEDED, reason, message)

    def event(self, reason: str, message: str) -> None:
        self.events.append(Event(_event_type(reason), reason, message))

    def after(self, seconds: float) -> None:
        """Look again in ``seconds`` at the latest."""
        seconds = max(0.0, seconds)
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)

    def act(self, action: Action) -> None:
        self.actions.append(action)

    def decision(self) -> Decision:
        self.status.observed_generation = self.generation
        before = conditions.find(self.original.conditions, reasons.READY)
        after = conditions.find(self.status.conditions, reasons.READY)
        if after is not None and (
            before is None
            or (before.reason, before.status) != (after.reason, after.status)
            or self.original.phase != self.status.phase
        ):
            self.events.insert(0, Event(_event_type(after.reason), after.reason, after.message))
        return Decision(self.status, self.actions, self.events, self.requeue_after)


def _event_type(reason: str) -> str:
    return "Warning" if reason in WARNING_REASONS else "Normal"


def _fmt_seconds(seconds: float) -> str:
    return f"{math.ceil(seconds)}s"


def decide(job: Subject, observed: Observed, now: datetime) -> Decision:
    """Decide the next step of a FineTuneJob.

    Args:
        job: the FineTuneJob as read.
        observed: its child Jobs and, with ``fineTuneJobRef``, the base job.
        now: the current time (timezone-aware).

    Returns:
        The actions, the status to write, the events and when to look again.
    """
    plan = _Plan(job.status, job.generation, now, job)
    if job.status.phase in TERMINAL_PHASES:
        _finished(plan, observed)
        return plan.decision()
    if job.spec.suspend:
        _suspend(plan, observed)
        return plan.decision()
    if conditions.is_true(job.status.conditions, reasons.SUSPENDED):
        _resume(plan)
    if plan.status.start_time is not None and _deadline_passed(plan):
        _fail(plan, observed, reasons.DEADLINE_EXCEEDED, _deadline_message(plan))
        return plan.decision()
    if _prepared(plan, observed) and _trained(plan, observed) and _evaluated(plan, observed):
        _complete(plan)
    return plan.decision()


def invalid_spec(job_status: v1alpha1.FineTuneJobStatus, generation: int, message: str, now: datetime) -> Decision:
    """The decision for a spec this operator cannot read: Failed, with the validation error.

    Args:
        job_status: the current status.
        generation: ``metadata.generation``.
        message: what is wrong (the field and the error).
        now: the current time.

    Returns:
        A decision that only writes the status (nothing else can be done).
    """
    plan = _Plan(job_status, generation, now)
    if job_status.phase not in TERMINAL_PHASES:
        plan.status.completion_time = now
        plan.condition(reasons.FAILED, True, reasons.INVALID_SPEC, message)
        plan.phase(Phase.FAILED, reasons.INVALID_SPEC, message)
    return plan.decision()


# -- deadline, suspension ------------------------------------------------------------


def _remaining_seconds(plan: _Plan) -> float | None:
    deadline = plan.spec.active_deadline_seconds
    if deadline is None or plan.status.start_time is None:
        return None
    return deadline - (plan.now - plan.status.start_time).total_seconds()


def _deadline_passed(plan: _Plan) -> bool:
    remaining = _remaining_seconds(plan)
    if remaining is None:
        return False
    if remaining > 0:
        plan.after(remaining)
        return False
    return True


def _deadline_message(plan: _Plan) -> str:
    return f"the job ran longer than spec.activeDeadlineSeconds ({plan.spec.active_deadline_seconds}s)"


def _job_deadline(plan: _Plan) -> int | None:
    """``activeDeadlineSeconds`` for a new Job: what is left of the FineTuneJob's deadline."""
    remaining = _remaining_seconds(plan)
    return None if remaining is None else max(1, math.ceil(remaining))


def _unfinished(observed: Observed) -> list[ChildJob]:
    return [j for j in observed.jobs if not j.state.finished]


def _delete_unfinished(plan: _Plan, observed: Observed) -> list[ChildJob]:
    """Delete every Job that is still queued or running; return those not yet gone."""
    unfinished = _unfinished(observed)
    for job in unfinished:
        if not job.deleting:
            plan.act(DeleteJob(job.name))
    return unfinished


def _suspend(plan: _Plan, observed: Observed) -> None:
    stopping = _delete_unfinished(plan, observed)
    if stopping:
        message = "spec.suspend is true; stopping the pods of " + ", ".join(j.name for j in stopping)
    else:
        message = "spec.suspend is true; no pods are running"
    plan.condition(reasons.SUSPENDED, True, reasons.JOB_SUSPENDED, message)
    if conditions.is_true(plan.status.conditions, reasons.TRAINING):
        plan.condition(reasons.TRAINING, False, reasons.JOB_SUSPENDED, "suspended; resumes from the latest checkpoint")
    plan.phase(Phase.SUSPENDED, reasons.JOB_SUSPENDED, message)


def _resume(plan: _Plan) -> None:
    message = "spec.suspend was cleared; resuming from the latest checkpoint"
    plan.condition(reasons.SUSPENDED, False, reasons.RESUMED, message)
    plan.event(reasons.RESUMED, message)
    if plan.status.start_time is not None:
        # As for Kubernetes Jobs, the deadline counts from the (re)start, not across the suspension.
        plan.status.start_time = plan.now


# -- terminal states -------------------------------------------------------------------


def _fail(plan: _Plan, observed: Observed, reason: str, message: str) -> None:
    _delete_unfinished(plan, observed)
    plan.status.completion_time = plan.now
    if conditions.is_true(plan.status.conditions, reasons.TRAINING):
        plan.condition(reasons.TRAINING, False, reason, message)
    plan.condition(reasons.FAILED, True, reason, message)
    plan.phase(Phase.FAILED, reason, message)
    _expire(plan)


def _finished(plan: _Plan, observed: Observed) -> None:
    """A Succeeded or Failed job: clean up leftovers, keep the deployment current, honour the TTL."""
    _delete_unfinished(plan, observed)
    redeploy = plan.job.status.observed_generation != plan.job.generation
    if plan.job.status.phase == Phase.SUCCEEDED and plan.spec.deploy is not None and redeploy:
        plan.act(ApplyDeployment())
        plan.event(reasons.DEPLOYED, "updated the ModelDeployment after spec.deploy changed")
    _expire(plan)


def _expire(plan: _Plan) -> None:
    ttl = plan.spec.ttl_seconds_after_finished
    finished = plan.status.completion_time
    if ttl is None or finished is None:
        return
    left = (finished + timedelta(seconds=ttl) - plan.now).total_seconds()
    if left > 0:
        plan.after(left)
        return
    plan.act(DeleteSelf())
    plan.event(reasons.TTL_EXPIRED, f"deleting the job {ttl}s after it finished (spec.ttlSecondsAfterFinished)")


# -- steps ---------------------------------------------------------------------------


def _waiting_for_deletion(plan: _Plan, job: ChildJob, phase: Phase, reason: str) -> None:
    plan.phase(phase, reason, f"waiting for the pods of the deleted Job {job.name} to terminate")
    plan.after(DELETION_POLL_SECONDS)


def _base_model_uri(plan: _Plan, observed: Observed) -> str | None:
    """The base model to start from; None (with the phase set) while it is not available."""
    ref = plan.spec.base_model.fine_tune_job_ref
    if ref is None:
        return plan.spec.base_model.uri
    base = observed.base_job
    if base is None or not base.found:
        plan.phase(Phase.PENDING, reasons.WAITING_FOR_BASE_MODEL, f"FineTuneJob {ref.name} does not exist (yet)")
        plan.after(BASE_MODEL_POLL_SECONDS)
        return None
    if base.phase == Phase.FAILED:
        _fail(plan, observed, reasons.BASE_MODEL_FAILED, f"the base FineTuneJob {ref.name} failed")
        return None
    if base.phase != Phase.SUCCEEDED or not base.artifact_uri:
        state = base.phase or "Pending"
        plan.phase(Phase.PENDING, reasons.WAITING_FOR_BASE_MODEL, f"waiting for FineTuneJob {ref.name} ({state})")
        plan.after(BASE_MODEL_POLL_SECONDS)
        return None
    return base.artifact_uri


def _prepared(plan: _Plan, observed: Observed) -> bool:
    """Drive the prepare step; True once the data is prepared."""
    job = observed.step(Step.PREPARE)
    if job is None:
        if plan.status.start_time is None:
            base_uri = _base_model_uri(plan, observed)
            if base_uri is None:
                return False
            plan.status.start_time = plan.now
            _deadline_passed(plan)
        else:
            base_uri = None  # the ConfigMap already exists; it keeps the resolved base model
        plan.act(CreateJob(Step.PREPARE, deadline_seconds=_job_deadline(plan), base_model_uri=base_uri))
        plan.condition(reasons.DATA_PREPARED, False, reasons.PREPARING, PREPARING_MESSAGE)
        plan.phase(Phase.PREPARING, reasons.PREPARING, PREPARING_MESSAGE)
        return False
    if job.deleting:
        _waiting_for_deletion(plan, job, Phase.PREPARING, reasons.PREPARING)
        return False
    if job.state == JobState.FAILED:
        message = _failure_message(job, "the prepare step failed")
        plan.condition(reasons.DATA_PREPARED, False, reasons.PREPARE_FAILED, message)
        _fail_step(plan, observed, job, reasons.PREPARE_FAILED, message)
        return False
    if job.state == JobState.SUCCEEDED:
        plan.condition(reasons.DATA_PREPARED, True, reasons.DATA_READY, _data_message(plan.status.data_report))
        return True
    reason = reasons.QUEUED if job.state == JobState.QUEUED else reasons.PREPARING
    message = _queued_message(plan, job) if job.state == JobState.QUEUED else PREPARING_MESSAGE
    plan.condition(reasons.DATA_PREPARED, False, reason, message)
    plan.phase(Phase.PREPARING, reason, message)
    return False


def _data_message(report: v1alpha1.DataReport | None) -> str:
    if report is None or report.records_in is None or report.records_out is None:
        return "the prepare step succeeded"
    message = f"kept {report.records_out} of {report.records_in} records"
    if report.train_records is not None and report.validation_records is not None:
        message += f" ({report.train_records} train, {report.validation_records} validation)"
    if report.warnings:
        message += f"; {len(report.warnings)} warning(s): " + "; ".join(report.warnings)
    return message


def _queued_message(plan: _Plan, job: ChildJob) -> str:
    return f"Job {job.name} waits for Kueue to admit it (queue {plan.spec.queue_name})"


def _fail_step(plan: _Plan, observed: Observed, job: ChildJob, reason: str, message: str) -> None:
    """Fail the FineTuneJob because a step's Job failed; a Job deadline is the job's deadline."""
    if job.failure is not None and job.failure.reason == JOB_DEADLINE_EXCEEDED:
        # Each Job's activeDeadlineSeconds is what was left of spec.activeDeadlineSeconds.
        reason, message = reasons.DEADLINE_EXCEEDED, f"{_deadline_message(plan)}: {message}"
    _fail(plan, observed, reason, message)


def _failure_message(job: ChildJob, fallback: str) -> str:
    failure = job.failure or Failure("JobFailed", f"Job {job.name}: {fallback}")
    return failure.message


def resume_argument(status: v1alpha1.FineTuneJobStatus) -> str:
    """The ``--resume`` value of a retry: the reported checkpoint as the pod sees it, else ``auto``.

    Args:
        status: the FineTuneJob's status (``checkpoint`` is reported by the trainer).

    Returns:
        A pod path for a pvc:// checkpoint, the URI for other schemes, or ``auto``.
    """
    uri = status.checkpoint.uri if status.checkpoint else None
    if not uri:
        return RESUME_AUTO
    try:
        parsed = v1alpha1.parse_uri(uri)
    except ValueError:
        return uri  # already a path
    return parsed.local_path() if parsed.scheme == "pvc" else uri


def _running_message(plan: _Plan, attempt: int, failures: int, resume: str | None) -> str:
    """What a running attempt's condition says; the same when it is created and while it runs.

    Only facts that stay true while the attempt runs go in, so watching the attempt costs no
    status write (progress is in ``status.progress``, written by the trainer).
    """
    message = f"attempt {attempt} is running"
    if failures:
        message += f" (retry {failures} of {plan.spec.retries.max_retries})"
    if resume:
        message += f", resuming from {resume}"
    return message


def _start_attempt(plan: _Plan, attempt: int, failures: int) -> None:
    resume = resume_argument(plan.status) if attempt > 1 else None
    plan.act(CreateJob(Step.TRAIN, attempt, resume, _job_deadline(plan)))
    plan.status.attempts = attempt
    message = _running_message(plan, attempt, failures, resume)
    plan.condition(reasons.TRAINING, True, reasons.TRAINING_RUNNING, message)
    plan.phase(Phase.TRAINING, reasons.TRAINING_RUNNING, message)


def _trained(plan: _Plan, observed: Observed) -> bool:
    """Drive the train attempts; True once one succeeded."""
    attempts = observed.train_jobs()
    current = max(plan.status.attempts or 0, max((j.attempt for j in attempts), default=0))
    latest = next((j for j in attempts if j.attempt == current), None)
    plan.status.attempts = current or None
    failures = sum(1 for j in attempts if j.state == JobState.FAILED)
    if latest is None:
        _start_attempt(plan, current + 1, failures)
        return False
    if latest.deleting:
        _waiting_for_deletion(plan, latest, Phase.TRAINING, reasons.TRAINING_RUNNING)
        return False
    if latest.state == JobState.SUCCEEDED:
        plan.condition(reasons.TRAINING, False, reasons.TRAINING_COMPLETED, f"attempt {current} finished training")
        return True
    if latest.state == JobState.FAILED:
        return _retry(plan, observed, latest, attempts)
    if latest.state == JobState.QUEUED:
        reason, message = reasons.QUEUED, _queued_message(plan, latest)
    else:
        reason, message = reasons.TRAINING_RUNNING, _running_message(plan, current, failures, latest.resume_from)
    plan.condition(reasons.TRAINING, True, reason, message)
    plan.phase(Phase.TRAINING, reason, message)
    return False


def _retry(plan: _Plan, observed: Observed, latest: ChildJob, attempts: Sequence[ChildJob]) -> bool:
    """After a failed attempt: back off, start the next one, or give up. Always False."""
    failure = latest.failure or Failure("JobFailed", f"Job {latest.name} failed")
    failures = sum(1 for j in attempts if j.state == JobState.FAILED)
    max_retries = plan.spec.retries.max_retries
    failed = f"attempt {latest.attempt} failed: {failure.message}"
    if failure.reason == JOB_DEADLINE_EXCEEDED:
        _fail_step(plan, observed, latest, reasons.TRAINING_FAILED, failed)
        return False
    if not failure.retryable:
        _fail(plan, observed, reasons.TRAINING_FAILED, f"{failed}; not retried (an input error, exit code 2)")
        return False
    if failures > max_retries:
        _fail(plan, observed, reasons.TRAINING_FAILED, f"{failed}; no retries left (retries.maxRetries={max_retries})")
        return False
    delay = plan.spec.retries.backoff_seconds * 2 ** (failures - 1)
    ready_at = (latest.finished_at or plan.now) + timedelta(seconds=delay)
    left = (ready_at - plan.now).total_seconds()
    if left > 0:
        resume = resume_argument(plan.status)
        message = f"{failed}; retry {failures} of {max_retries} in {_fmt_seconds(left)}, resuming from {resume}"
        plan.condition(reasons.TRAINING, True, reasons.ATTEMPT_FAILED, message)
        plan.phase(Phase.TRAINING, reasons.ATTEMPT_FAILED, message)
        plan.after(left)
        return False
    _start_attempt(plan, latest.attempt + 1, failures)
    return False


def _evaluated(plan: _Plan, observed: Observed) -> bool:
    """Drive the evaluate + export step; True once it succeeded."""
    job = observed.step(Step.EVALUATE)
    if job is None:
        plan.act(CreateJob(Step.EVALUATE, deadline_seconds=_job_deadline(plan)))
        plan.phase(Phase.EVALUATING, reasons.EVALUATING, EVALUATING_MESSAGE)
        return False
    if job.deleting:
        _waiting_for_deletion(plan, job, Phase.EVALUATING, reasons.EVALUATING)
        return False
    if job.state == JobState.FAILED:
        _fail_step(plan, observed, job, reasons.EVALUATION_FAILED, _failure_message(job, "the evaluate step failed"))
        return False
    if job.state == JobState.SUCCEEDED:
        return True
    if job.state == JobState.QUEUED:
        plan.phase(Phase.EVALUATING, reasons.QUEUED, _queued_message(plan, job))
    else:
        plan.phase(Phase.EVALUATING, reasons.EVALUATING, EVALUATING_MESSAGE)
    return False


def _complete(plan: _Plan) -> None:
    """Evaluation done: apply the gate, then record the artifact (and deploy) or fail."""
    thresholds = plan.spec.evaluation.thresholds
    missed = check_thresholds(plan.status.metrics or v1alpha1.Metrics(), thresholds) if thresholds else []
    if missed:
        message = "; ".join(missed) + "; the model is not deployed"
        _fail(plan, Observed(), reasons.EVALUATION_GATE_FAILED, message)
        return
    artifact_uri = plan.spec.output.uri.rstrip("/") + "/model"
    digest = plan.status.artifact.digest if plan.status.artifact else None
    plan.status.artifact = v1alpha1.Artifact(uri=artifact_uri, digest=digest)
    plan.status.completion_time = plan.now
    message = f"the model is at {artifact_uri}" + (f" (digest {digest})" if digest else "")
    if plan.spec.deploy is not None:
        plan.act(ApplyDeployment())
        name = plan.spec.deploy.name or plan.job.name
        plan.event(reasons.DEPLOYED, f"created or updated ModelDeployment {name} serving this job's model")
        message += f"; ModelDeployment {name} serves it"
    plan.condition(reasons.SUCCEEDED, True, reasons.JOB_SUCCEEDED, message)
    plan.phase(Phase.SUCCEEDED, reasons.JOB_SUCCEEDED, message)
    _expire(plan)
