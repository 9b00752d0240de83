"""The ModelDeployment state machine, pass by pass: whole condition lists, plans and rollbacks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune.reconcile import modeldeployment as md
from kubetune.reconcile import observed as job_observed
from kubetune.reconcile import serving_observed as seen
from kubetune.reconcile import serving_reasons as reasons
from kubetune_trainer.serve import revision as serve_revision

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IMAGES = md.Images(server="triton:24.10", build="trtllm:0.15", trainer="kubetune-trainer:0.1")
ENDPOINT = {"http": "http://chat.ns.svc.cluster.local:8000", "grpc": "chat.ns.svc.cluster.local:8001"}
MODEL_URI = "pvc://models/runs/job/model"
DIGEST = "sha256:" + "a" * 64
ACTIVE, SUCCEEDED, FAILED = job_observed.JobState.ACTIVE, job_observed.JobState.SUCCEEDED, job_observed.JobState.FAILED


def spec_of(**overrides: Any) -> v1alpha1.ModelDeploymentSpec:
    data: dict[str, Any] = {"model": {"fineTuneJobRef": {"name": "job"}}, **overrides}
    return v1alpha1.ModelDeploymentSpec.model_validate(data)


def succeeded_job(uri: str = MODEL_URI, digest: str = DIGEST) -> seen.FineTuneJobView:
    return seen.FineTuneJobView("job", "Succeeded", uri, digest, "s3-creds")


def revision_of(spec: v1alpha1.ModelDeploymentSpec, digest: str = DIGEST) -> str:
    return serve_revision.revision(digest, spec, IMAGES.server, IMAGES.build)


def observe(spec: v1alpha1.ModelDeploymentSpec | None = None, **fields: Any) -> md.Observed:
    fields.setdefault("fine_tune_job", succeeded_job())
    return md.Observed(
        name="chat",
        generation=fields.pop("generation", 1),
        spec=spec or spec_of(),
        status=fields.pop("status", v1alpha1.ModelDeploymentStatus()),
        default_images=IMAGES,
        endpoint=ENDPOINT,
        now=fields.pop("now", NOW),
        **fields,
    )


def job(component: str, revision: str, state: job_observed.JobState, message: str = "") -> seen.JobView:
    return seen.JobView(f"chat-{component}-{revision}", component, revision, state, message)


def dep(revision: str, *, desired: int = 1, ready: int | None = None, old: int = 0, **kw: Any) -> seen.DeploymentView:
    """A Deployment at ``revision``: rolled out unless ``ready`` is lower or ``old`` pods remain."""
    ready = desired if ready is None else ready
    kw.setdefault("progress_reason", "NewReplicaSetAvailable" if ready == desired and not old else "ReplicaSetUpdated")
    return seen.DeploymentView(
        revision=revision, generation=kw.pop("generation", 2), observed_generation=kw.pop("observed", 2),
        desired=desired, replicas=ready + old, updated=ready, ready=ready + old, available=ready + old, **kw,
    )  # fmt: skip


def record(spec: v1alpha1.ModelDeploymentSpec, digest: str = DIGEST, **kw: Any) -> seen.EngineRecord:
    rev = revision_of(spec, digest)
    return seen.EngineRecord(
        revision=rev, uri=f"pvc://models/runs/job/engines/{rev}", digest=kw.pop("engine_digest", "sha256:e"),
        model_uri=MODEL_URI, model_digest=digest, fine_tune_job="job", secret_name="s3-creds",
        backend=spec.backend, quantization=spec.quantization, engine=spec.engine, image=IMAGES.server,
        build_image=IMAGES.build, built_at=kw.pop("built_at", NOW - timedelta(hours=1)), **kw,
    )  # fmt: skip


def conditions(decision: md.Decision) -> dict[str, tuple[str, str]]:
    """type -> (status, reason), in status order; messages are checked where they matter."""
    return {c.type: (c.status.value, c.reason) for c in decision.status.conditions}


def table(**rows: tuple[str, str]) -> dict[str, tuple[str, str]]:
    names = {
        "model": reasons.MODEL_READY, "built": reasons.ENGINE_BUILT, "progressing": reasons.PROGRESSING,
        "available": reasons.AVAILABLE, "degraded": reasons.DEGRADED, "tested": reasons.SMOKE_TESTED,
        "ready": reasons.READY,
    }  # fmt: skip
    return {
        names[key]: rows[key] for key in ("model", "built", "progressing", "available", "degraded", "tested", "ready")
    }


T, F, U = "True", "False", "Unknown"


# --- the model ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ftj", "reason", "phase"),
    [
        (None, reasons.FINE_TUNE_JOB_NOT_FOUND, "WaitingForModel"),
        (seen.FineTuneJobView("job", None), reasons.FINE_TUNE_JOB_NOT_SUCCEEDED, "WaitingForModel"),
        (seen.FineTuneJobView("job", "Training"), reasons.FINE_TUNE_JOB_NOT_SUCCEEDED, "WaitingForModel"),
        (seen.FineTuneJobView("job", "Succeeded"), reasons.ARTIFACT_MISSING, "WaitingForModel"),
        (seen.FineTuneJobView("job", "Failed"), reasons.FINE_TUNE_JOB_FAILED, "Failed"),
    ],
)
def test_waits_for_the_finetunejob(ftj: seen.FineTuneJobView | None, reason: str, phase: str) -> None:
    decision = md.decide(observe(fine_tune_job=ftj))
    failed = phase == "Failed"
    assert decision.status.phase == phase
    assert conditions(decision) == table(
        model=(F, reason),
        built=(U, reasons.WAITING_FOR_MODEL),
        progressing=(F if failed else T, reason),
        available=(F, reasons.NOT_DEPLOYED),
        degraded=(T, reason) if failed else (F, reasons.AS_EXPECTED),
        tested=(U, reasons.WAITING_FOR_MODEL),
        ready=(F, reason),
    )
    assert (decision.build, decision.serve, decision.smoke, decision.engines) == (None, None, None, None)
    assert decision.status.revision is None
    assert decision.status.endpoint is not None and decision.status.endpoint.http == ENDPOINT["http"]
    assert all(c.observed_generation == 1 and c.last_transition_time == NOW for c in decision.status.conditions)


def test_failed_finetunejob_keeps_serving_the_current_revision_degraded() -> None:
    old = record(spec_of())
    decision = md.decide(
        observe(fine_tune_job=seen.FineTuneJobView("job", "Failed"), deployment=dep(old.revision),
                engines={old.revision: old})
    )  # fmt: skip
    assert decision.status.phase == "Degraded"
    assert decision.serve is not None and decision.serve.revision == old.revision


def test_deleted_finetunejob_keeps_its_recorded_artifact() -> None:
    spec = spec_of(rollout={"smokeTest": {"enabled": False}})
    old = record(spec)
    status = md.decide(observe(spec, deployment=dep(old.revision), engines={old.revision: old})).status
    assert status.phase == "Ready"
    decision = md.decide(
        observe(spec, fine_tune_job=None, status=status, deployment=dep(old.revision), engines={old.revision: old})
    )
    assert decision.status.phase == "Ready"
    assert conditions(decision)[reasons.MODEL_READY] == (T, reasons.FINE_TUNE_JOB_DELETED)
    assert decision.status.revision == old.revision


def test_deleted_finetunejob_of_another_name_is_waited_for() -> None:
    spec = spec_of()
    old = record(spec).model_copy(update={"fine_tune_job": "older-job"})
    status = v1alpha1.ModelDeploymentStatus(revision=old.revision)
    decision = md.decide(observe(spec, fine_tune_job=None, status=status, engines={old.revision: old}))
    assert conditions(decision)[reasons.MODEL_READY] == (F, reasons.FINE_TUNE_JOB_NOT_FOUND)


@pytest.mark.parametrize("uri", ["hf://org/model@main", "s3://bucket/models/chat"])
def test_models_off_a_volume_cannot_be_built(uri: str) -> None:
    decision = md.decide(observe(spec_of(model={"uri": uri})))
    assert decision.status.phase == "Failed"
    assert conditions(decision)[reasons.ENGINE_BUILT] == (F, reasons.ENGINE_STORAGE_UNAVAILABLE)
    assert conditions(decision)[reasons.MODEL_READY] == (T, reasons.MODEL_URI_GIVEN)
    assert uri in decision.status.conditions[1].message
    assert decision.build is None


def test_model_uri_skips_waiting_and_hashes_the_uri() -> None:
    spec = spec_of(model={"uri": "pvc://models/chat/v1", "secretRef": {"name": "creds"}})
    decision = md.decide(observe(spec, fine_tune_job=None))
    assert decision.status.phase == "Building"
    assert decision.build is not None
    assert decision.build.revision == revision_of(spec, md.uri_digest("pvc://models/chat/v1"))
    assert decision.build.engine_uri == f"pvc://models/chat/engines/{decision.build.revision}"
    assert decision.build.secret_name == "creds"


@pytest.mark.parametrize("uri", ["hf://org/model@main", "s3://bucket/models/chat"])
def test_models_off_a_volume_are_built_into_the_engine_storage(uri: str) -> None:
    spec = spec_of(model={"uri": uri, "secretRef": {"name": "creds"}}, engineStorage="pvc://engines/cache")
    decision = md.decide(observe(spec, fine_tune_job=None))
    assert decision.status.phase == "Building"
    assert decision.build is not None
    assert decision.build.model_uri == uri and decision.build.secret_name == "creds"
    assert decision.build.engine_uri == f"pvc://engines/cache/engines/{decision.build.revision}"


def test_a_finetunejob_artifact_in_s3_is_built_into_the_engine_storage() -> None:
    spec = spec_of(engineStorage="pvc://engines")
    decision = md.decide(observe(spec, fine_tune_job=succeeded_job("s3://bucket/runs/job/model")))
    assert decision.build is not None
    assert decision.build.engine_uri == f"pvc://engines/engines/{decision.build.revision}"
    assert decision.build.secret_name == "s3-creds"


@pytest.mark.parametrize(
    ("model_uri", "expected"),
    [
        ("pvc://models/runs/job/model", "pvc://models/runs/job/engines/r1"),
        ("pvc://models/model", "pvc://models/engines/r1"),
        ("pvc://models", "pvc://models/engines/r1"),
        ("hf://org/name@main", None),
        ("s3://bucket/run/model", None),
    ],
)
def test_engine_uri_is_next_to_the_model(model_uri: str, expected: str | None) -> None:
    assert md.engine_uri(model_uri, "r1") == expected


@pytest.mark.parametrize("model_uri", ["pvc://models/runs/job/model", "hf://org/name@main", "s3://bucket/model"])
def test_engine_storage_wins_over_the_model_volume(model_uri: str) -> None:
    assert md.engine_uri(model_uri, "r1", "pvc://cache/serving") == "pvc://cache/serving/engines/r1"
    assert md.engine_uri(model_uri, "r1", "pvc://cache") == "pvc://cache/engines/r1"


# --- build ----------------------------------------------------------------------------------------


def test_first_pass_creates_the_build_job() -> None:
    spec = spec_of()
    decision = md.decide(observe(spec))
    rev = revision_of(spec)
    assert decision.status.phase == "Building"
    assert decision.status.revision == rev
    assert decision.status.previous_revision is None
    assert conditions(decision) == table(
        model=(T, reasons.FINE_TUNE_JOB_SUCCEEDED),
        built=(F, reasons.BUILD_STARTED),
        progressing=(T, reasons.BUILD_STARTED),
        available=(F, reasons.NOT_DEPLOYED),
        degraded=(F, reasons.AS_EXPECTED),
        tested=(F, reasons.SMOKE_TEST_PENDING),
        ready=(F, reasons.BUILD_STARTED),
    )
    plan = decision.build
    assert plan is not None
    assert plan == md.Plan(rev, spec, MODEL_URI, f"pvc://models/runs/job/engines/{rev}", "s3-creds", IMAGES)
    assert decision.serve is None and decision.smoke is None
    assert [e.reason for e in decision.events] == [reasons.BUILD_STARTED]


def test_running_build_is_not_created_again() -> None:
    spec = spec_of()
    rev = revision_of(spec)
    decision = md.decide(observe(spec, jobs=(job("build", rev, ACTIVE),)))
    assert decision.status.phase == "Building"
    assert conditions(decision)[reasons.ENGINE_BUILT] == (F, reasons.BUILDING)
    assert decision.build is None


def test_completed_build_is_recorded_and_rolled_out() -> None:
    spec = spec_of()
    rev = revision_of(spec)
    obs = observe(
        spec,
        jobs=(job("build", rev, SUCCEEDED),),
        build_reports={rev: {"digest": "sha256:repo"}, "other": {"digest": "sha256:no"}},
    )
    decision = md.decide(obs)
    assert decision.status.phase == "Deploying"
    assert decision.engines is not None
    rec = decision.engines[rev]
    assert (rec.uri, rec.digest, rec.model_digest, rec.fine_tune_job, rec.built_at) == (
        f"pvc://models/runs/job/engines/{rev}", "sha256:repo", DIGEST, "job", NOW,
    )  # fmt: skip
    assert decision.serve is not None and decision.serve.revision == rev
    assert decision.status.engine is not None and decision.status.engine.digest == "sha256:repo"
    assert conditions(decision) == table(
        model=(T, reasons.FINE_TUNE_JOB_SUCCEEDED),
        built=(T, reasons.BUILD_SUCCEEDED),
        progressing=(T, reasons.ROLLING_OUT),
        available=(F, reasons.NOT_DEPLOYED),
        degraded=(F, reasons.AS_EXPECTED),
        tested=(F, reasons.SMOKE_TEST_PENDING),
        ready=(F, reasons.ROLLING_OUT),
    )


def test_cached_engine_skips_the_build() -> None:
    spec = spec_of()
    rec = record(spec)
    decision = md.decide(observe(spec, engines={rec.revision: rec}))
    assert decision.build is None
    assert decision.engines is None  # nothing new to record
    assert conditions(decision)[reasons.ENGINE_BUILT] == (T, reasons.ENGINE_CACHED)
    assert decision.status.phase == "Deploying"
    assert decision.serve == md.plan_from_record(observe(spec), rec)


@pytest.mark.parametrize(("serving", "phase"), [(False, "Failed"), (True, "Degraded")])
def test_failed_build(serving: bool, phase: str) -> None:
    old_spec, spec = spec_of(), spec_of(quantization="int8")
    old, rev = record(old_spec), revision_of(spec)
    status = v1alpha1.ModelDeploymentStatus(revision=rev, previous_revision=old.revision if serving else None)
    obs = observe(
        spec, status=status, jobs=(job("build", rev, FAILED, "Job x: container engine exited with code 1 (Error)"),),
        deployment=dep(old.revision) if serving else None, engines={old.revision: old} if serving else {},
    )  # fmt: skip
    decision = md.decide(obs)
    assert decision.status.phase == phase
    assert conditions(decision)[reasons.DEGRADED] == (T, reasons.BUILD_FAILED)
    assert conditions(decision)[reasons.READY] == (F, reasons.BUILD_FAILED)
    assert "exited with code 1" in decision.status.conditions[1].message
    assert decision.build is None
    assert (decision.serve.revision if decision.serve else None) == (old.revision if serving else None)
    assert decision.events and decision.events[0].type == "Warning"


# --- rollout and smoke test -----------------------------------------------------------------------


def _at_target(spec: v1alpha1.ModelDeploymentSpec, **kw: Any) -> md.Observed:
    rec = record(spec)
    kw.setdefault("status", v1alpha1.ModelDeploymentStatus(revision=rec.revision))
    return observe(spec, engines={rec.revision: rec}, **kw)


def test_rollout_in_progress() -> None:
    spec = spec_of(replicas=2)
    rev = revision_of(spec)
    decision = md.decide(_at_target(spec, deployment=dep(rev, desired=2, ready=1)))
    assert decision.status.phase == "Deploying"
    assert conditions(decision)[reasons.PROGRESSING] == (T, reasons.ROLLING_OUT)
    assert conditions(decision)[reasons.AVAILABLE] == (T, reasons.MINIMUM_REPLICAS_AVAILABLE)
    assert decision.smoke is None
    assert (decision.status.replicas, decision.status.ready_replicas, decision.status.ready) == (2, 1, "1/2")


@pytest.mark.parametrize(
    "deployment",
    [
        dep("r-other"),  # still at another revision
        dep("REV", observed=1),  # template applied, controller has not seen it
        dep("REV", old=1),  # new pods ready, an old one still terminating
    ],
)
def test_not_rolled_out_yet(deployment: seen.DeploymentView) -> None:
    spec = spec_of()
    rev = revision_of(spec)
    if deployment.revision == "REV":
        deployment = replace(deployment, revision=rev)
    decision = md.decide(_at_target(spec, deployment=deployment))
    assert conditions(decision)[reasons.PROGRESSING] == (T, reasons.ROLLING_OUT)
    assert decision.smoke is None


def test_rolled_out_revision_gets_a_smoke_test() -> None:
    spec = spec_of()
    rev = revision_of(spec)
    decision = md.decide(_at_target(spec, deployment=dep(rev)))
    assert decision.smoke is not None and decision.smoke.revision == rev
    assert decision.status.phase == "Deploying"
    assert conditions(decision)[reasons.SMOKE_TESTED] == (F, reasons.SMOKE_TESTING)
    again = md.decide(_at_target(spec, deployment=dep(rev), jobs=(job("smoke", rev, ACTIVE),)))
    assert again.smoke is None
    assert conditions(again)[reasons.READY] == (F, reasons.SMOKE_TESTING)


def test_passed_smoke_test_is_ready() -> None:
    spec = spec_of()
    rev = revision_of(spec)
    decision = md.decide(_at_target(spec, deployment=dep(rev), jobs=(job("smoke", rev, SUCCEEDED),)))
    assert decision.status.phase == "Ready"
    assert conditions(decision) == table(
        model=(T, reasons.FINE_TUNE_JOB_SUCCEEDED),
        built=(T, reasons.ENGINE_CACHED),
        progressing=(F, reasons.ROLLOUT_COMPLETE),
        available=(T, reasons.MINIMUM_REPLICAS_AVAILABLE),
        degraded=(F, reasons.AS_EXPECTED),
        tested=(T, reasons.SMOKE_TEST_PASSED),
        ready=(T, reasons.SERVING),
    )
    assert decision.status.ready == "1/1"
    assert decision.serve is not None and decision.serve.revision == rev
    assert decision.events[0].type == "Normal" and decision.events[0].reason == reasons.SERVING


def test_disabled_smoke_test_and_zero_replicas_skip_it() -> None:
    spec = spec_of(rollout={"smokeTest": {"enabled": False}})
    decision = md.decide(_at_target(spec, deployment=dep(revision_of(spec))))
    assert decision.status.phase == "Ready" and decision.smoke is None
    assert conditions(decision)[reasons.SMOKE_TESTED] == (T, reasons.SMOKE_TEST_DISABLED)
    spec = spec_of(replicas=0)
    decision = md.decide(_at_target(spec, deployment=dep(revision_of(spec), desired=0)))
    assert decision.status.phase == "Ready" and decision.smoke is None
    assert conditions(decision)[reasons.AVAILABLE] == (F, reasons.SCALED_TO_ZERO)


def test_lost_replicas_degrade_and_recover() -> None:
    spec = spec_of()
    rev = revision_of(spec)
    smoke = (job("smoke", rev, SUCCEEDED),)
    ready = md.decide(_at_target(spec, deployment=dep(rev), jobs=smoke))
    lost = replace(dep(rev), ready=0, available=0, replicas=1, updated=1)
    degraded = md.decide(_at_target(spec, deployment=lost, jobs=smoke, status=ready.status))
    assert degraded.status.phase == "Degraded"
    assert conditions(degraded)[reasons.DEGRADED] == (T, reasons.REPLICAS_UNAVAILABLE)
    assert degraded.serve is not None and degraded.serve.revision == rev
    recovered = md.decide(_at_target(spec, deployment=dep(rev), jobs=smoke, status=degraded.status))
    assert recovered.status.phase == "Ready"


# --- new revisions and rollbacks ------------------------------------------------------------------


def _ready_status(spec: v1alpha1.ModelDeploymentSpec) -> tuple[v1alpha1.ModelDeploymentStatus, seen.EngineRecord]:
    rec = record(spec)
    obs = observe(spec, deployment=dep(rec.revision), engines={rec.revision: rec},
                  jobs=(job("smoke", rec.revision, SUCCEEDED),))  # fmt: skip
    decision = md.decide(obs)
    assert decision.status.phase == "Ready"
    return decision.status, rec


def test_new_quantization_builds_a_new_revision_while_the_old_one_serves() -> None:
    status, old = _ready_status(spec_of())
    spec = spec_of(quantization="int8")
    decision = md.decide(
        observe(spec, status=status, deployment=dep(old.revision), engines={old.revision: old},
                jobs=(job("smoke", old.revision, SUCCEEDED),), generation=2, now=NOW + timedelta(minutes=5))
    )  # fmt: skip
    rev = revision_of(spec)
    assert rev != old.revision
    assert decision.status.phase == "Building"
    assert (decision.status.revision, decision.status.previous_revision) == (rev, old.revision)
    assert decision.build is not None and decision.build.spec.quantization == "int8"
    # The Deployment keeps serving the old revision, with the old settings.
    assert decision.serve is not None and decision.serve.revision == old.revision
    assert decision.serve.spec.quantization == "fp16"
    # Available did not flip; Ready did, so its transition time moved.
    times = {c.type: c.last_transition_time for c in decision.status.conditions}
    assert times[reasons.AVAILABLE] == NOW and times[reasons.READY] == NOW + timedelta(minutes=5)
    assert all(c.observed_generation == 2 for c in decision.status.conditions)


def _rolling_to_new(**kw: Any) -> tuple[md.Observed, seen.EngineRecord, seen.EngineRecord]:
    """A Ready fp16 revision, then int8 built and rolled out; the caller adds the outcome."""
    status, old = _ready_status(spec_of())
    spec = spec_of(quantization="int8")
    new = record(spec)
    status = md.decide(observe(spec, status=status, deployment=dep(old.revision),
                               engines={old.revision: old, new.revision: new})).status  # fmt: skip
    assert (status.phase, status.previous_revision) == ("Deploying", old.revision)
    obs = observe(spec, status=status, engines={old.revision: old, new.revision: new}, **kw)
    return obs, old, new


def test_failed_smoke_test_rolls_back() -> None:
    obs, old, new = _rolling_to_new()
    failed_smoke = job("smoke", new.revision, FAILED, "Job chat-smoke: container exited with code 1")
    obs = replace(obs, deployment=dep(new.revision), jobs=(failed_smoke,))
    decision = md.decide(obs)
    assert decision.status.phase == "Degraded"
    assert (decision.status.revision, decision.status.previous_revision) == (new.revision, old.revision)
    assert decision.serve is not None and decision.serve.revision == old.revision
    assert decision.serve.spec.quantization == "fp16"
    assert decision.smoke is None
    assert conditions(decision) == table(
        model=(T, reasons.FINE_TUNE_JOB_SUCCEEDED),
        built=(T, reasons.ENGINE_CACHED),
        progressing=(F, reasons.ROLLED_BACK),
        available=(T, reasons.MINIMUM_REPLICAS_AVAILABLE),
        degraded=(T, reasons.SMOKE_TEST_FAILED),
        tested=(F, reasons.SMOKE_TEST_FAILED),
        ready=(F, reasons.SMOKE_TEST_FAILED),
    )
    degraded = next(c for c in decision.status.conditions if c.type == reasons.DEGRADED)
    assert "exited with code 1" in degraded.message and f"rolled back to revision {old.revision}" in degraded.message
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", reasons.SMOKE_TEST_FAILED)]

    # Next pass: the Deployment is back at the old revision; it stays rolled back, no new smoke test.
    later = md.decide(replace(obs, status=decision.status, deployment=dep(old.revision)))
    assert later.status.phase == "Degraded"
    assert later.serve is not None and later.serve.revision == old.revision
    assert (later.build, later.smoke, later.events) == (None, None, ())
    assert conditions(later)[reasons.DEGRADED] == (T, reasons.SMOKE_TEST_FAILED)
    assert later.delete_jobs == ()


def test_rollout_past_its_deadline_rolls_back() -> None:
    obs, old, new = _rolling_to_new()
    stuck = dep(new.revision, ready=0, old=1, progress_reason="ProgressDeadlineExceeded",
                progress_message='ReplicaSet "chat-7d9" has timed out progressing.')  # fmt: skip
    decision = md.decide(replace(obs, deployment=stuck))
    assert decision.status.phase == "Degraded"
    assert conditions(decision)[reasons.DEGRADED] == (T, reasons.ROLLOUT_TIMED_OUT)
    assert conditions(decision)[reasons.SMOKE_TESTED] == (F, reasons.SMOKE_TEST_PENDING)
    assert decision.serve is not None and decision.serve.revision == old.revision
    assert "timed out progressing" in decision.status.conditions[4].message


def test_failure_without_a_previous_revision_fails() -> None:
    spec = spec_of()
    rev = revision_of(spec)
    obs = _at_target(spec, deployment=dep(rev), jobs=(job("smoke", rev, FAILED, "no answer"),))
    decision = md.decide(obs)
    assert decision.status.phase == "Failed"
    assert conditions(decision)[reasons.PROGRESSING] == (F, reasons.NO_PREVIOUS_REVISION)
    assert conditions(decision)[reasons.DEGRADED] == (T, reasons.SMOKE_TEST_FAILED)
    assert decision.serve is not None and decision.serve.revision == rev  # pods stay for debugging
    later = md.decide(replace(obs, status=decision.status))
    assert later.status.phase == "Failed" and later.smoke is None


def test_a_new_target_after_a_rollback_keeps_the_good_previous_revision() -> None:
    obs, old, failed = _rolling_to_new()
    obs = replace(obs, deployment=dep(failed.revision), jobs=(job("smoke", failed.revision, FAILED),))
    rolled_back = md.decide(obs).status
    spec = spec_of(quantization="w4a16")
    decision = md.decide(replace(obs, spec=spec, status=rolled_back, deployment=dep(old.revision), generation=3))
    assert decision.status.phase == "Building"
    assert (decision.status.revision, decision.status.previous_revision) == (revision_of(spec), old.revision)
    assert conditions(decision)[reasons.DEGRADED] == (F, reasons.AS_EXPECTED)
    # The failed revision's Jobs are no longer needed.
    assert decision.delete_jobs == (f"chat-smoke-{failed.revision}",)


def test_reverting_to_the_previous_settings_is_immediately_ready() -> None:
    obs, old, failed = _rolling_to_new()
    obs = replace(obs, deployment=dep(failed.revision), jobs=(job("smoke", failed.revision, FAILED),))
    rolled_back = md.decide(obs).status
    decision = md.decide(
        replace(obs, spec=spec_of(), status=rolled_back, deployment=dep(old.revision),
                jobs=(job("smoke", old.revision, SUCCEEDED), job("smoke", failed.revision, FAILED)))
    )  # fmt: skip
    assert decision.status.phase == "Ready"
    assert (decision.status.revision, decision.status.previous_revision) == (old.revision, None)


def test_old_jobs_are_garbage_collected_but_not_the_previous_ones() -> None:
    obs, old, new = _rolling_to_new()
    jobs = (
        job("build", "ancient", SUCCEEDED), job("smoke", "ancient", SUCCEEDED),
        job("smoke", old.revision, SUCCEEDED), job("build", new.revision, SUCCEEDED),
        replace(job("smoke", "gone", SUCCEEDED), deleting=True),
    )  # fmt: skip
    decision = md.decide(replace(obs, jobs=jobs))
    assert decision.delete_jobs == ("chat-build-ancient", "chat-smoke-ancient")


def test_engine_records_are_pruned_to_the_newest() -> None:
    spec = spec_of()
    many = {f"r{i:02d}": record(spec).model_copy(update={"revision": f"r{i:02d}", "built_at": NOW - timedelta(days=i)})
            for i in range(15)}  # fmt: skip
    rev = revision_of(spec)
    status = v1alpha1.ModelDeploymentStatus(revision=rev, previous_revision="r14")
    decision = md.decide(observe(spec, engines=many, jobs=(job("build", rev, SUCCEEDED),), status=status))
    assert decision.engines is not None
    assert len(decision.engines) == md.MAX_ENGINE_RECORDS
    assert {rev, "r14", "r00"} <= set(decision.engines)
    assert "r13" not in decision.engines


# --- status bookkeeping ---------------------------------------------------------------------------


def test_a_second_identical_pass_changes_nothing() -> None:
    spec = spec_of()
    rev = revision_of(spec)
    obs = _at_target(spec, deployment=dep(rev), jobs=(job("smoke", rev, SUCCEEDED),))
    first = md.decide(obs)
    second = md.decide(replace(obs, status=first.status, now=NOW + timedelta(minutes=1)))
    assert second.status == first.status
    assert second.events == ()
    assert second.status.last_updated == NOW


def test_messages_are_truncated() -> None:
    spec = spec_of()
    rev = revision_of(spec)
    decision = md.decide(observe(spec, jobs=(job("build", rev, FAILED, "x" * 5000),)))
    assert all(len(c.message) <= 1024 for c in decision.status.conditions)
    assert all(len(e.message) <= 1024 for e in decision.events)


def test_label_keys_match_the_renderer() -> None:
    from kubetune.render import serving_meta

    assert seen.MODELDEPLOYMENT_LABEL == serving_meta.MODELDEPLOYMENT_LABEL == "kubetune.dev/modeldeployment"
    assert seen.REVISION_LABEL == serving_meta.REVISION_LABEL == "kubetune.dev/revision"
    assert (seen.COMPONENT_BUILD, seen.COMPONENT_SMOKE) == (serving_meta.BUILD, serving_meta.SMOKE)


def test_status_patch_sends_only_changes_and_deletes_with_null() -> None:
    spec = spec_of()
    first = md.decide(observe(spec)).status
    assert md.status_patch(None, first) == {"status": first.to_k8s()}
    stored = first.to_k8s() | {"previousRevision": "gone"}
    assert md.status_patch(stored, first) == {"status": {"previousRevision": None}}
    assert md.status_patch(first.to_k8s(), first) == {}
    later = NOW + timedelta(seconds=5)
    building = md.decide(observe(spec, jobs=(job("build", revision_of(spec), ACTIVE),), status=first, now=later))
    building = building.status
    patch = md.status_patch(first.to_k8s(), building)["status"]
    assert set(patch) == {"conditions", "lastUpdated"}


def test_invalid_spec_fails_without_touching_anything_else() -> None:
    ready = md.decide(_at_target(spec_of(), deployment=dep(revision_of(spec_of())),
                                 jobs=(job("smoke", revision_of(spec_of()), SUCCEEDED),))).status  # fmt: skip
    later = NOW + timedelta(minutes=1)
    status = md.invalid_spec(ready, 4, "spec.replicas: Input should be a valid integer", later)
    assert status.phase == "Failed"
    assert (status.observed_generation, status.revision, status.last_updated) == (4, ready.revision, later)
    ready_condition = next(c for c in status.conditions if c.type == reasons.READY)
    assert (ready_condition.status, ready_condition.reason, ready_condition.observed_generation) == (
        "False",
        "InvalidSpec",
        4,
    )
    assert ready_condition.last_transition_time == later
    assert md.invalid_spec(status, 4, ready_condition.message, later + timedelta(minutes=1)) == status
