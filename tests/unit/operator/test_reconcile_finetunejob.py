"""The FineTuneJob lifecycle, transition by transition, comparing whole condition lists."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune.reconcile import status as status_mod
from kubetune.reconcile.diagnose import Failure
from kubetune.reconcile.finetunejob import (
    ApplyDeployment,
    CreateJob,
    Decision,
    DeleteJob,
    DeleteSelf,
    Subject,
    decide,
    invalid_spec,
    resume_argument,
)
from kubetune.reconcile.observed import BaseJob, ChildJob, JobState, Observed, Step

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T, F = "True", "False"
SpecOf = Callable[..., v1alpha1.FineTuneJobSpec]


def subject(spec: v1alpha1.FineTuneJobSpec, status: v1alpha1.FineTuneJobStatus | None = None, gen: int = 1) -> Subject:
    return Subject("demo", "ns", gen, spec, status or v1alpha1.FineTuneJobStatus())


def job(step: Step, state: JobState, attempt: int = 1, **kwargs: Any) -> ChildJob:
    name = {Step.PREPARE: "demo-prepare", Step.EVALUATE: "demo-evaluate"}.get(step, f"demo-train-{attempt}")
    return ChildJob(name=name, step=step, attempt=attempt, state=state, **kwargs)


def observed(*jobs: ChildJob, base: BaseJob | None = None) -> Observed:
    return Observed(jobs=tuple(jobs), base_job=base)


def conds(decision: Decision) -> list[tuple[str, str, str]]:
    return [(c.type, c.status.value, c.reason) for c in decision.status.conditions]


def run(
    spec: v1alpha1.FineTuneJobSpec, steps: list[Observed], now: datetime = NOW
) -> tuple[Decision, v1alpha1.FineTuneJobStatus]:
    """Decide over successive observations, feeding each decided status into the next call."""
    status = v1alpha1.FineTuneJobStatus()
    decision = None
    for obs in steps:
        decision = decide(subject(spec, status), obs, now)
        status = decision.status
    assert decision is not None
    return decision, status


PREPARED = job(Step.PREPARE, JobState.SUCCEEDED, finished_at=NOW)
TRAINED = job(Step.TRAIN, JobState.SUCCEEDED, finished_at=NOW)
EVALUATED = job(Step.EVALUATE, JobState.SUCCEEDED, finished_at=NOW)
OOM = Failure("OOMKilled", "Job demo-train-1: pod p: container train exited with code 137 (OOMKilled)", 137)


def test_new_job_creates_the_prepare_step(spec_of: SpecOf) -> None:
    decision = decide(subject(spec_of()), observed(), NOW)
    assert decision.actions == [CreateJob(Step.PREPARE, base_model_uri="hf://org/base@main")]
    assert decision.status.phase == v1alpha1.Phase.PREPARING
    assert conds(decision) == [("DataPrepared", F, "Preparing"), ("Ready", F, "Preparing")]
    assert decision.status.start_time == NOW
    assert decision.status.observed_generation == 1
    assert all(c.observed_generation == 1 for c in decision.status.conditions)
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "Preparing")]
    assert decision.requeue_after is None


@pytest.mark.parametrize(
    ("obs", "phase", "expected", "actions"),
    [
        pytest.param(
            [observed(), observed(job(Step.PREPARE, JobState.ACTIVE))],
            "Preparing",
            [("DataPrepared", F, "Preparing"), ("Ready", F, "Preparing")],
            [],
            id="prepare-running",
        ),
        pytest.param(
            [observed(), observed(job(Step.PREPARE, JobState.QUEUED))],
            "Preparing",
            [("DataPrepared", F, "Queued"), ("Ready", F, "Queued")],
            [],
            id="prepare-queued-by-kueue",
        ),
        pytest.param(
            [observed(), observed(PREPARED)],
            "Training",
            [("DataPrepared", T, "DataPrepared"), ("Ready", F, "Training"), ("Training", T, "Training")],
            [CreateJob(Step.TRAIN, 1)],
            id="prepared-starts-attempt-1",
        ),
        pytest.param(
            [observed(), observed(PREPARED), observed(PREPARED, job(Step.TRAIN, JobState.ACTIVE))],
            "Training",
            [("DataPrepared", T, "DataPrepared"), ("Ready", F, "Training"), ("Training", T, "Training")],
            [],
            id="training",
        ),
        pytest.param(
            [observed(), observed(PREPARED), observed(PREPARED, TRAINED)],
            "Evaluating",
            [
                ("DataPrepared", T, "DataPrepared"),
                ("Ready", F, "Evaluating"),
                ("Training", F, "TrainingCompleted"),
            ],
            [CreateJob(Step.EVALUATE)],
            id="trained-starts-evaluation",
        ),
        pytest.param(
            [observed(), observed(PREPARED), observed(PREPARED, TRAINED), observed(PREPARED, TRAINED, EVALUATED)],
            "Succeeded",
            [
                ("DataPrepared", T, "DataPrepared"),
                ("Ready", T, "Succeeded"),
                ("Training", F, "TrainingCompleted"),
                ("Succeeded", T, "Succeeded"),
            ],
            [],
            id="evaluated-succeeds",
        ),
        pytest.param(
            [observed(), observed(job(Step.PREPARE, JobState.FAILED, failure=Failure("Error", "exit 1", 1)))],
            "Failed",
            [("DataPrepared", F, "PrepareFailed"), ("Ready", F, "PrepareFailed"), ("Failed", T, "PrepareFailed")],
            [],
            id="prepare-fails",
        ),
        pytest.param(
            [
                observed(),
                observed(PREPARED),
                observed(PREPARED, TRAINED, job(Step.EVALUATE, JobState.FAILED, failure=Failure("Error", "x", 1))),
            ],
            "Failed",
            [
                ("DataPrepared", T, "DataPrepared"),
                ("Ready", F, "EvaluationFailed"),
                ("Training", F, "TrainingCompleted"),
                ("Failed", T, "EvaluationFailed"),
            ],
            [],
            id="evaluation-fails",
        ),
    ],
)
def test_transitions(
    spec_of: SpecOf, obs: list[Observed], phase: str, expected: list[tuple[str, str, str]], actions: list[Any]
) -> None:
    decision, _ = run(spec_of(), obs)
    assert decision.status.phase == phase
    assert conds(decision) == expected
    assert decision.actions == actions


def test_steady_state_writes_nothing(spec_of: SpecOf) -> None:
    obs = observed(PREPARED, job(Step.TRAIN, JobState.ACTIVE))
    _, status = run(spec_of(), [observed(), observed(PREPARED), obs])
    again = decide(subject(spec_of(), status), obs, NOW + timedelta(minutes=5))
    assert again.actions == [] and again.events == []
    assert status_mod.status_patch(status.to_k8s(), again.status) == {}


def test_transition_time_only_moves_when_status_changes(spec_of: SpecOf) -> None:
    _, status = run(spec_of(), [observed(), observed(job(Step.PREPARE, JobState.ACTIVE))])
    later = decide(subject(spec_of(), status), observed(job(Step.PREPARE, JobState.QUEUED)), NOW + timedelta(hours=1))
    ready = next(c for c in later.status.conditions if c.type == "Ready")
    assert ready.reason == "Queued" and ready.last_transition_time == NOW
    done = decide(subject(spec_of(), later.status), observed(PREPARED), NOW + timedelta(hours=2))
    prepared = next(c for c in done.status.conditions if c.type == "DataPrepared")
    assert prepared.status.value == T and prepared.last_transition_time == NOW + timedelta(hours=2)


def _failed_train(attempt: int, failure: Failure = OOM, minutes_ago: float = 0) -> ChildJob:
    return job(Step.TRAIN, JobState.FAILED, attempt, failure=failure, finished_at=NOW - timedelta(minutes=minutes_ago))


def _training_status(attempts: int = 1, checkpoint: str | None = None) -> v1alpha1.FineTuneJobStatus:
    return v1alpha1.FineTuneJobStatus(
        phase=v1alpha1.Phase.TRAINING,
        attempts=attempts,
        start_time=NOW - timedelta(hours=1),
        checkpoint=v1alpha1.CheckpointStatus(uri=checkpoint, step=200) if checkpoint else None,
    )


def test_failed_attempt_backs_off_then_retries_from_the_checkpoint(spec_of: SpecOf) -> None:
    spec = spec_of({"retries": {"maxRetries": 2, "backoffSeconds": 30}})
    status = _training_status(checkpoint="pvc://artifacts/run/checkpoints/checkpoint-200")
    waiting = decide(subject(spec, status), observed(PREPARED, _failed_train(1)), NOW)
    assert waiting.actions == []
    assert waiting.requeue_after == 30
    training = next(c for c in waiting.status.conditions if c.type == "Training")
    assert (training.status.value, training.reason) == (T, "AttemptFailed")
    assert "exited with code 137 (OOMKilled)" in training.message
    assert "retry 1 of 2 in 30s" in training.message
    assert [(e.type, e.reason) for e in waiting.events] == [("Warning", "AttemptFailed")]

    retry = decide(subject(spec, waiting.status), observed(PREPARED, _failed_train(1)), NOW + timedelta(seconds=30))
    assert retry.actions == [CreateJob(Step.TRAIN, 2, "/mnt/pvc/artifacts/run/checkpoints/checkpoint-200")]
    assert retry.status.attempts == 2
    assert retry.status.phase == v1alpha1.Phase.TRAINING


def test_back_off_doubles_per_failure(spec_of: SpecOf) -> None:
    spec = spec_of({"retries": {"maxRetries": 5, "backoffSeconds": 10}})
    obs = observed(PREPARED, _failed_train(1, minutes_ago=60), _failed_train(2, minutes_ago=60), _failed_train(3))
    decision = decide(subject(spec, _training_status(3)), obs, NOW)
    assert decision.requeue_after == 40  # 10 * 2 ** (3 - 1)


def test_retry_without_checkpoint_resumes_auto(spec_of: SpecOf) -> None:
    spec = spec_of({"retries": {"maxRetries": 1, "backoffSeconds": 0}})
    decision = decide(subject(spec, _training_status()), observed(PREPARED, _failed_train(1)), NOW)
    assert decision.actions == [CreateJob(Step.TRAIN, 2, "auto")]


def test_out_of_retries_fails_with_the_exit_code(spec_of: SpecOf) -> None:
    spec = spec_of({"retries": {"maxRetries": 1, "backoffSeconds": 0}})
    decision, _ = run(
        spec,
        [
            observed(),
            observed(PREPARED),
            observed(PREPARED, _failed_train(1)),
            observed(PREPARED, _failed_train(1), _failed_train(2)),
        ],
    )
    assert decision.status.phase == v1alpha1.Phase.FAILED
    assert conds(decision) == [
        ("DataPrepared", T, "DataPrepared"),
        ("Ready", F, "TrainingFailed"),
        ("Training", F, "TrainingFailed"),
        ("Failed", T, "TrainingFailed"),
    ]
    failed = next(c for c in decision.status.conditions if c.type == "Failed")
    assert "attempt 2 failed" in failed.message and "exited with code 137 (OOMKilled)" in failed.message
    assert "no retries left (retries.maxRetries=1)" in failed.message
    assert decision.status.completion_time == NOW
    assert decision.status.attempts == 2
    assert decision.actions == []
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "TrainingFailed")]


def test_input_errors_are_not_retried(spec_of: SpecOf) -> None:
    bad_input = Failure("Error", "Job demo-train-1: pod p: container train exited with code 2 (Error)", 2)
    decision = decide(subject(spec_of(), _training_status()), observed(PREPARED, _failed_train(1, bad_input)), NOW)
    assert decision.status.phase == v1alpha1.Phase.FAILED
    assert "not retried" in decision.status.conditions[-1].message


def test_job_deadline_is_reported_as_the_jobs_deadline(spec_of: SpecOf) -> None:
    spec = spec_of({"activeDeadlineSeconds": 7200})
    deadline = Failure("DeadlineExceeded", "Job demo-train-1 ran past its activeDeadlineSeconds (3600s)")
    decision = decide(subject(spec, _training_status()), observed(PREPARED, _failed_train(1, deadline)), NOW)
    assert decision.status.phase == v1alpha1.Phase.FAILED
    failed = next(c for c in decision.status.conditions if c.type == "Failed")
    assert failed.reason == "DeadlineExceeded" and "activeDeadlineSeconds (7200s)" in failed.message


def test_deadline_fails_the_job_and_stops_its_pods(spec_of: SpecOf) -> None:
    spec = spec_of({"activeDeadlineSeconds": 3600})
    status = _training_status()
    running = job(Step.TRAIN, JobState.ACTIVE)
    before = decide(subject(spec, status), observed(PREPARED, running), NOW - timedelta(seconds=60))
    assert before.requeue_after == 60
    after = decide(subject(spec, status), observed(PREPARED, running), NOW)
    assert after.actions == [DeleteJob("demo-train-1")]
    assert after.status.phase == v1alpha1.Phase.FAILED
    assert ("Failed", T, "DeadlineExceeded") in conds(after)


def test_new_jobs_get_the_remaining_deadline(spec_of: SpecOf) -> None:
    spec = spec_of({"activeDeadlineSeconds": 3600 + 100})
    decision = decide(subject(spec, _training_status()), observed(PREPARED), NOW)
    assert decision.actions == [CreateJob(Step.TRAIN, 2, "auto", deadline_seconds=100)]


def test_operator_crash_after_create_does_not_duplicate_the_attempt(spec_of: SpecOf) -> None:
    # attempt 2 was created but the status still says 1 (the operator died in between)
    spec = spec_of({"retries": {"maxRetries": 3, "backoffSeconds": 0}})
    obs = observed(PREPARED, _failed_train(1), job(Step.TRAIN, JobState.ACTIVE, 2))
    decision = decide(subject(spec, _training_status(1)), obs, NOW)
    assert decision.actions == []
    assert decision.status.attempts == 2


def test_suspend_stops_running_jobs(spec_of: SpecOf) -> None:
    _, status = run(spec_of(), [observed(), observed(PREPARED), observed(PREPARED, job(Step.TRAIN, JobState.ACTIVE))])
    spec = spec_of({"suspend": True})
    decision = decide(subject(spec, status, gen=2), observed(PREPARED, job(Step.TRAIN, JobState.ACTIVE)), NOW)
    assert decision.actions == [DeleteJob("demo-train-1")]
    assert decision.status.phase == v1alpha1.Phase.SUSPENDED
    assert conds(decision) == [
        ("DataPrepared", T, "DataPrepared"),
        ("Ready", F, "Suspended"),
        ("Training", F, "Suspended"),
        ("Suspended", T, "Suspended"),
    ]
    deleting = observed(PREPARED, job(Step.TRAIN, JobState.ACTIVE, deleting=True))
    again = decide(subject(spec, decision.status, gen=2), deleting, NOW)
    assert again.actions == [] and again.events == []


def test_resume_starts_a_new_attempt_from_the_checkpoint(spec_of: SpecOf) -> None:
    status = _training_status(1, checkpoint="s3://bucket/run/checkpoints/checkpoint-300")
    suspended = decide(subject(spec_of({"suspend": True}), status), observed(PREPARED), NOW)
    still_deleting = observed(PREPARED, job(Step.TRAIN, JobState.ACTIVE, deleting=True))
    waiting = decide(subject(spec_of(), suspended.status, gen=3), still_deleting, NOW)
    assert waiting.actions == []
    assert waiting.requeue_after is not None
    resumed = decide(subject(spec_of(), waiting.status, gen=3), observed(PREPARED), NOW + timedelta(seconds=5))
    assert resumed.actions == [CreateJob(Step.TRAIN, 2, "s3://bucket/run/checkpoints/checkpoint-300")]
    assert ("Suspended", F, "Resumed") in conds(resumed)
    assert resumed.status.phase == v1alpha1.Phase.TRAINING


def test_resume_event_and_deadline_restart(spec_of: SpecOf) -> None:
    spec = spec_of({"activeDeadlineSeconds": 3600})
    status = _training_status(1)
    status.start_time = NOW - timedelta(days=2)  # would be past the deadline without the restart
    suspended = decide(subject(spec.model_copy(update={"suspend": True}), status), observed(PREPARED), NOW)
    resumed = decide(subject(spec, suspended.status), observed(PREPARED), NOW)
    assert resumed.status.start_time == NOW
    assert resumed.status.phase == v1alpha1.Phase.TRAINING
    assert "Resumed" in [e.reason for e in resumed.events]


def test_suspend_before_anything_ran(spec_of: SpecOf) -> None:
    decision = decide(subject(spec_of({"suspend": True})), observed(), NOW)
    assert decision.actions == []
    assert decision.status.phase == v1alpha1.Phase.SUSPENDED


def _evaluated_status(metrics: v1alpha1.Metrics | None) -> v1alpha1.FineTuneJobStatus:
    status = _training_status(1)
    status.phase = v1alpha1.Phase.EVALUATING
    status.metrics = metrics
    status.artifact = v1alpha1.Artifact(digest="sha256:abc")
    return status


DONE = observed(PREPARED, TRAINED, EVALUATED)


def test_gate_passes_records_the_artifact(spec_of: SpecOf) -> None:
    spec = spec_of({"evaluation": {"thresholds": {"maxPerplexity": 20, "minRougeL": 0.3}}})
    decision = decide(subject(spec, _evaluated_status(v1alpha1.Metrics(perplexity=12.5, rouge_l=0.4))), DONE, NOW)
    assert decision.status.phase == v1alpha1.Phase.SUCCEEDED
    assert decision.status.artifact == v1alpha1.Artifact(uri="pvc://artifacts/run/model", digest="sha256:abc")
    assert decision.status.completion_time == NOW
    assert decision.actions == []


@pytest.mark.parametrize(
    ("metrics", "needle"),
    [
        (v1alpha1.Metrics(perplexity=31.0, rouge_l=0.4), "perplexity 31 is above"),
        (v1alpha1.Metrics(perplexity=12.0, rouge_l=0.1), "ROUGE-L 0.1 is below"),
        (None, "perplexity was not measured"),
    ],
)
def test_gate_fails_and_nothing_is_deployed(spec_of: SpecOf, metrics: v1alpha1.Metrics | None, needle: str) -> None:
    spec = spec_of(
        {
            "evaluation": {"thresholds": {"maxPerplexity": 20, "minRougeL": 0.3}},
            "deploy": {"backend": "python", "resources": {"gpus": 0}},
        }
    )
    decision = decide(subject(spec, _evaluated_status(metrics)), DONE, NOW)
    assert decision.status.phase == v1alpha1.Phase.FAILED
    assert ("Failed", T, "EvaluationGateFailed") in conds(decision)
    failed = next(c for c in decision.status.conditions if c.type == "Failed")
    assert needle in failed.message and "not deployed" in failed.message
    assert not any(isinstance(a, ApplyDeployment) for a in decision.actions)
    assert decision.status.artifact is not None and decision.status.artifact.uri is None


def test_success_deploys(spec_of: SpecOf) -> None:
    spec = spec_of({"deploy": {"name": "bot", "backend": "python", "resources": {"gpus": 0}}})
    decision = decide(subject(spec, _evaluated_status(None)), DONE, NOW)
    assert decision.actions == [ApplyDeployment()]
    assert decision.status.phase == v1alpha1.Phase.SUCCEEDED
    assert ("Normal", "Deployed") in [(e.type, e.reason) for e in decision.events]
    # Steady: no second apply until spec.deploy changes (a new generation).
    again = decide(subject(spec, decision.status), DONE, NOW)
    assert again.actions == []
    edited = decide(subject(spec, decision.status, gen=2), DONE, NOW)
    assert edited.actions == [ApplyDeployment()]
    assert edited.status.observed_generation == 2


def test_ttl_deletes_the_finished_job(spec_of: SpecOf) -> None:
    spec = spec_of({"ttlSecondsAfterFinished": 60})
    succeeded = decide(subject(spec, _evaluated_status(None)), DONE, NOW).status
    assert decide(subject(spec, succeeded), DONE, NOW + timedelta(seconds=10)).requeue_after == 50
    expired = decide(subject(spec, succeeded), DONE, NOW + timedelta(seconds=60))
    assert expired.actions == [DeleteSelf()]
    assert [e.reason for e in expired.events] == ["TTLExpired"]


def test_finished_job_cleans_up_leftover_jobs(spec_of: SpecOf) -> None:
    failed = v1alpha1.FineTuneJobStatus(phase=v1alpha1.Phase.FAILED, completion_time=NOW)
    decision = decide(subject(spec_of({"suspend": True}), failed), observed(job(Step.TRAIN, JobState.ACTIVE)), NOW)
    assert decision.actions == [DeleteJob("demo-train-1")]
    assert decision.status.phase == v1alpha1.Phase.FAILED


@pytest.mark.parametrize(
    ("base", "phase", "reason"),
    [
        (None, "Pending", "WaitingForBaseModel"),
        (BaseJob(found=False), "Pending", "WaitingForBaseModel"),
        (BaseJob(found=True, phase="Training"), "Pending", "WaitingForBaseModel"),
        (BaseJob(found=True, phase="Failed"), "Failed", "BaseModelFailed"),
    ],
)
def test_waiting_for_the_base_job(spec_of: SpecOf, base: BaseJob | None, phase: str, reason: str) -> None:
    spec = spec_of({"baseModel": {"fineTuneJobRef": {"name": "first"}}})
    decision = decide(subject(spec), observed(base=base), NOW)
    assert decision.actions == []
    assert decision.status.phase == phase
    assert ("Ready", F, reason) in conds(decision)


def test_base_job_artifact_is_used(spec_of: SpecOf) -> None:
    spec = spec_of({"baseModel": {"fineTuneJobRef": {"name": "first"}}})
    base = BaseJob(found=True, phase="Succeeded", artifact_uri="pvc://artifacts/first/model")
    decision = decide(subject(spec), observed(base=base), NOW)
    assert decision.actions == [CreateJob(Step.PREPARE, base_model_uri="pvc://artifacts/first/model")]


def test_invalid_spec_fails_once() -> None:
    decision = invalid_spec(v1alpha1.FineTuneJobStatus(), 4, "spec.lora.r: must be >= 1", NOW)
    assert decision.status.phase == v1alpha1.Phase.FAILED
    assert conds(decision) == [("Failed", T, "InvalidSpec"), ("Ready", F, "InvalidSpec")]
    assert decision.status.observed_generation == 4
    assert [e.type for e in decision.events] == ["Warning"]
    again = invalid_spec(decision.status, 4, "spec.lora.r: must be >= 1", NOW)
    assert again.events == []


@pytest.mark.parametrize(
    ("checkpoint", "expected"),
    [
        (None, "auto"),
        ("pvc://out/run/checkpoints/checkpoint-5", "/mnt/pvc/out/run/checkpoints/checkpoint-5"),
        ("s3://b/run/checkpoints/checkpoint-5", "s3://b/run/checkpoints/checkpoint-5"),
        ("/already/a/path", "/already/a/path"),
    ],
)
def test_resume_argument(checkpoint: str | None, expected: str) -> None:
    status = v1alpha1.FineTuneJobStatus(checkpoint=v1alpha1.CheckpointStatus(uri=checkpoint) if checkpoint else None)
    assert resume_argument(status) == expected


# -- a simulated cluster: jobs finish, the operator crashes between actions and status ----------


@dataclass
class World:
    """Child Jobs that run a fixed number of ticks, failing the first ``failing_attempts`` train attempts."""

    failing_attempts: int
    jobs: dict[str, ChildJob]
    ages: dict[str, int]
    created: list[str]

    def apply(self, decision: Decision) -> None:
        for action in decision.actions:
            if isinstance(action, CreateJob):
                name = {Step.PREPARE: "demo-prepare", Step.EVALUATE: "demo-evaluate"}.get(
                    action.step, f"demo-train-{action.attempt}"
                )
                if name not in self.jobs:  # AlreadyExists otherwise
                    self.jobs[name] = ChildJob(name, action.step, action.attempt, JobState.ACTIVE)
                    self.ages[name] = 0
                    self.created.append(name)
            elif isinstance(action, DeleteJob):
                self.jobs.pop(action.name, None)

    def tick(self, now: datetime) -> None:
        for name, child in list(self.jobs.items()):
            self.ages[name] += 1
            if child.state == JobState.ACTIVE and self.ages[name] >= 2:
                fail = child.step == Step.TRAIN and child.attempt <= self.failing_attempts
                state = JobState.FAILED if fail else JobState.SUCCEEDED
                failure = OOM if fail else None
                self.jobs[name] = replace(child, state=state, finished_at=now, failure=failure)


@pytest.mark.parametrize("seed", range(20))
def test_random_crashes_never_duplicate_attempts(spec_of: SpecOf, seed: int) -> None:
    rng = random.Random(seed)
    max_retries = rng.randint(0, 3)
    failing = rng.randint(0, max_retries + 1)
    spec = spec_of({"retries": {"maxRetries": max_retries, "backoffSeconds": 1}})
    world = World(failing, {}, {}, [])
    status = v1alpha1.FineTuneJobStatus()
    now = NOW
    for _ in range(200):
        decision = decide(subject(spec, status), Observed(tuple(world.jobs.values())), now)
        world.apply(decision)
        if rng.random() > 0.3:  # else: the operator died before writing the status
            status = decision.status
        if status.phase in (v1alpha1.Phase.SUCCEEDED, v1alpha1.Phase.FAILED):
            break
        now += timedelta(seconds=1)
        world.tick(now)
    expected_attempts = min(failing, max_retries + 1) + (0 if failing > max_retries else 1)
    train_jobs = [n for n in world.created if "train" in n]
    assert train_jobs == [f"demo-train-{i}" for i in range(1, expected_attempts + 1)]
    assert world.created.count("demo-prepare") == 1
    expected_phase = v1alpha1.Phase.FAILED if failing > max_retries else v1alpha1.Phase.SUCCEEDED
    assert status.phase == expected_phase


@pytest.mark.parametrize("step", [Step.PREPARE, Step.TRAIN, Step.EVALUATE])
def test_a_created_job_showing_up_running_costs_no_status_write(spec_of: SpecOf, step: Step) -> None:
    spec = spec_of({"retries": {"maxRetries": 2, "backoffSeconds": 0}})
    history = {
        Step.PREPARE: [],
        Step.TRAIN: [PREPARED, _failed_train(1)],
        Step.EVALUATE: [PREPARED, TRAINED],
    }[step]
    status = _training_status(1, checkpoint="s3://b/run/checkpoints/checkpoint-7") if step == Step.TRAIN else None
    created = decide(subject(spec, status), observed(*history), NOW)
    (action,) = created.actions
    assert isinstance(action, CreateJob) and action.step == step
    running = job(step, JobState.ACTIVE, action.attempt, resume_from=action.resume_from)
    later = decide(subject(spec, created.status), observed(*history, running), NOW + timedelta(seconds=3))
    assert later.actions == [] and later.events == []
    assert status_mod.status_patch(created.status.to_k8s(), later.status) == {}


def test_training_progress_reports_cost_no_status_write(spec_of: SpecOf) -> None:
    obs = observed(PREPARED, job(Step.TRAIN, JobState.ACTIVE))
    _, status = run(spec_of(), [observed(), observed(PREPARED), obs])
    status.progress = v1alpha1.Progress(step=120, total_steps=500, summary="120/500 (24%)")
    again = decide(subject(spec_of(), status), obs, NOW)
    assert status_mod.status_patch(status.to_k8s(), again.status) == {}
