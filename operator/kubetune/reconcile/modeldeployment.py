"""The ModelDeployment state machine: observations in, desired children and status out.

Why this module exists: rolling a model out safely is a sequence of decisions (is the model known?
is its engine built? is the new revision rolled out? did it answer? must it be rolled back?) that
must be right in every combination of child states, including after an operator restart. Keeping
them in one pure function, :func:`decide`, lets a table of unit tests cover each path with no
cluster, and keeps the kopf handler a thin shell that fetches, calls this, applies and patches.

The life of a ModelDeployment (``status.phase``)::

    WaitingForModel -> Building -> Deploying (roll out, then smoke test) -> Ready
                                        +-> Degraded (rolled back to previousRevision) / Failed

The *target revision* is a content hash of the model digest and the revision-relevant serving
settings (backend, quantization, engine limits, images); ``status.revision`` holds it and
``status.previousRevision`` the last revision that passed its smoke test before it, which is what
a failed target rolls back to. Memory between passes lives only in the status (the target, the
previous revision, the ``SmokeTested`` and ``Degraded`` conditions) and in child objects with
deterministic names (build and smoke-test Jobs per revision, the ``<name>-engines`` ConfigMap), so
a restarted operator takes the same decisions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from kubetune_trainer.serve import revision as serve_revision

from kubetune.api import v1alpha1
from kubetune.reconcile import conditions as conds
from kubetune.reconcile import observed as job_observed
from kubetune.reconcile import reasons as common_reasons
from kubetune.reconcile import serving_observed as observed
from kubetune.reconcile import serving_reasons as reasons

Phase = v1alpha1.DeploymentPhase

#: Rolling back to these reasons is remembered in the Degraded condition until the target changes.
ROLLBACK_REASONS = frozenset({reasons.SMOKE_TEST_FAILED, reasons.ROLLOUT_TIMED_OUT})
#: Engine records kept in the ``<name>-engines`` ConfigMap (the target, previous and serving ones always stay).
MAX_ENGINE_RECORDS = 10


@dataclass(frozen=True)
class Images:
    """The images a revision runs with, after spec overrides and operator defaults.

    Attributes:
        server: the Triton image of the Deployment (``spec.image``).
        build: the TensorRT-LLM image that compiles the engine (``spec.buildImage``).
        trainer: the kubetune trainer image that writes the model repository and runs the smoke
            test (``python -m kubetune_trainer serve``); an operator setting, not part of the revision.
    """

    server: str
    build: str
    trainer: str


@dataclass(frozen=True)
class Observed:
    """Everything :func:`decide` looks at, read by the handler in one pass.

    Attributes:
        name: the ModelDeployment's name.
        generation: its metadata.generation.
        spec: its validated spec.
        status: its current status (an empty one before the first pass).
        default_images: the operator's default Triton and build images.
        endpoint: the in-cluster URLs of its Service (derived from names by the renderer).
        now: the time of this pass.
        fine_tune_job: the referenced FineTuneJob, None when absent or not referenced.
        jobs: its build and smoke-test Jobs (all revisions).
        deployment: its Triton Deployment, None when absent.
        engines: the engine records of the ``<name>-engines`` ConfigMap.
        build_reports: per revision, what its completed build pod wrote to its termination log
            (read for completed builds that have no engine record yet).
    """

    name: str
    generation: int
    spec: v1alpha1.ModelDeploymentSpec
    status: v1alpha1.ModelDeploymentStatus
    default_images: Images
    endpoint: Mapping[str, str]
    now: datetime
    fine_tune_job: observed.FineTuneJobView | None = None
    jobs: tuple[observed.JobView, ...] = ()
    deployment: observed.DeploymentView | None = None
    engines: Mapping[str, observed.EngineRecord] = field(default_factory=dict)
    build_reports: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """One revision and everything needed to render its build Job, Deployment or smoke test.

    Attributes:
        revision: the content hash.
        spec: the spec to render with: the current spec, with the revision-relevant settings
            (backend, quantization, engine) of the revision's record when it is an older one.
        model_uri: the weights the engine is built from.
        engine_uri: where the Triton model repository of this revision is (to be) written.
        secret_name: Secret with the credentials to read ``model_uri`` and ``engine_uri``.
        images: the images of this revision.
    """

    revision: str
    spec: v1alpha1.ModelDeploymentSpec
    model_uri: str
    engine_uri: str
    secret_name: str | None
    images: Images


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the ModelDeployment.

    Attributes:
        type: ``Normal`` or ``Warning``.
        reason: CamelCase reason.
        message: what happened.
    """

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """What the handler must do after one pass.

    Attributes:
        status: the complete new status.
        build: create the build Job of this revision (if it does not exist).
        serve: apply the Deployment, Service and HPA serving this revision; None leaves them alone.
        smoke: create the smoke-test Job of this revision (if it does not exist).
        engines: the complete new content of the engine records; None leaves the ConfigMap alone.
        delete_jobs: names of build/smoke-test Jobs of revisions no longer needed.
        events: Events to post.
    """

    status: v1alpha1.ModelDeploymentStatus
    build: Plan | None = None
    serve: Plan | None = None
    smoke: Plan | None = None
    engines: Mapping[str, observed.EngineRecord] | None = None
    delete_jobs: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class ModelResolution:
    """Which model to serve, or why it is not known yet.

    Attributes:
        ready: the model is known (uri and digest are set).
        reason: ModelReady condition reason.
        message: ModelReady condition message.
        failed: the model will never come (the FineTuneJob failed).
        uri: the model's URI.
        digest: its content digest.
        secret_name: credentials to read it.
        fine_tune_job: the FineTuneJob it comes from.
    """

    ready: bool
    reason: str
    message: str
    failed: bool = False
    uri: str | None = None
    digest: str | None = None
    secret_name: str | None = None
    fine_tune_job: str | None = None


# --- the model ----------------------------------------------------------------------------------


def uri_digest(uri: str) -> str:
    """Digest standing for the content of a model given by URI only: the hash of the URI itself.

    A new checkpoint at the same URI is therefore not noticed; publish it under a new URI (or
    an hf:// @revision) to roll it out.

    Args:
        uri: spec.model.uri.

    Returns:
        ``uri-sha256:<hex>``.
    """
    return "uri-sha256:" + hashlib.sha256(uri.encode()).hexdigest()


def resolve_model(obs: Observed) -> ModelResolution:
    """Find the model to serve: spec.model.uri, or the referenced FineTuneJob's artifact.

    Args:
        obs: the observations.

    Returns:
        The resolution; not ready while the FineTuneJob is missing or running.
    """
    source = obs.spec.model
    own_secret = source.secret_ref.name if source.secret_ref else None
    if source.uri:
        return ModelResolution(
            True, reasons.MODEL_URI_GIVEN, f"serving {source.uri}", uri=source.uri,
            digest=uri_digest(source.uri), secret_name=own_secret,
        )  # fmt: skip
    ref = source.fine_tune_job_ref.name if source.fine_tune_job_ref else ""
    job = obs.fine_tune_job
    if job is None:
        return _model_of_deleted_job(obs, ref, own_secret)
    if job.phase == v1alpha1.Phase.FAILED:
        return ModelResolution(False, reasons.FINE_TUNE_JOB_FAILED, f"FineTuneJob {ref} failed", failed=True)
    if job.phase != v1alpha1.Phase.SUCCEEDED:
        return ModelResolution(
            False, reasons.FINE_TUNE_JOB_NOT_SUCCEEDED,
            f"waiting for FineTuneJob {ref} (phase {job.phase or 'Pending'})",
        )  # fmt: skip
    if not job.artifact_uri or not job.artifact_digest:
        return ModelResolution(
            False, reasons.ARTIFACT_MISSING,
            f"FineTuneJob {ref} succeeded but its status has no artifact uri and digest",
        )  # fmt: skip
    return ModelResolution(
        True, reasons.FINE_TUNE_JOB_SUCCEEDED, f"serving the artifact {job.artifact_uri} of FineTuneJob {ref}",
        uri=job.artifact_uri, digest=job.artifact_digest, secret_name=own_secret or job.secret_name,
        fine_tune_job=ref,
    )  # fmt: skip


def _model_of_deleted_job(obs: Observed, ref: str, own_secret: str | None) -> ModelResolution:
    """The FineTuneJob is absent: keep serving what the current revision recorded from it, else wait."""
    record = obs.engines.get(obs.status.revision or "")
    if record is not None and record.fine_tune_job == ref:
        return ModelResolution(
            True, reasons.FINE_TUNE_JOB_DELETED,
            f"FineTuneJob {ref} no longer exists; serving its recorded artifact {record.model_uri}",
            uri=record.model_uri, digest=record.model_digest, secret_name=own_secret or record.secret_name,
            fine_tune_job=ref,
        )  # fmt: skip
    return ModelResolution(False, reasons.FINE_TUNE_JOB_NOT_FOUND, f"waiting for FineTuneJob {ref} to be created")


def engine_uri(model_uri: str, revision: str, storage: str | None = None) -> str | None:
    """Where a revision's Triton repository goes: ``engines/<revision>`` under the engine storage.

    The storage is ``spec.engineStorage`` if set, else the directory of a pvc:// model:
    ``pvc://claim/runs/job/model`` gives ``pvc://claim/runs/job/engines/<revision>``, so a model
    and its engines share a volume (the build Job mounts it read-write, Triton pods read-only, at
    the same path, which the TensorRT-LLM configuration needs) and the same revision built by two
    ModelDeployments lands in one place.

    Args:
        model_uri: the model's URI.
        revision: the revision.
        storage: ``spec.engineStorage`` (a pvc:// URI), if set.

    Returns:
        The engine URI, or None for an hf:// or s3:// model without ``spec.engineStorage``: the
        repository writer and Triton's TensorRT-LLM backend work on a mounted filesystem.
    """
    if storage is not None:
        parsed = v1alpha1.parse_uri(storage)
        directory = PurePosixPath(parsed.path or ".")
    else:
        parsed = v1alpha1.parse_uri(model_uri)
        if parsed.scheme != "pvc":
            return None
        directory = PurePosixPath(parsed.path).parent if parsed.path else PurePosixPath(".")
    path = (directory / "engines" / revision).as_posix().removeprefix("./")
    return f"{parsed.scheme}://{parsed.authority}/{path}"


def images_of(spec: v1alpha1.ServingSpec, defaults: Images) -> Images:
    """The images of a spec: its overrides, else the operator defaults."""
    return Images(
        server=spec.image or defaults.server, build=spec.build_image or defaults.build, trainer=defaults.trainer
    )


def target_revision(model_digest: str, spec: v1alpha1.ServingSpec, images: Images) -> str:
    """The content hash of a revision (see ``kubetune_trainer.serve.revision``).

    Args:
        model_digest: digest of the model.
        spec: the serving settings.
        images: the Triton image, and the build image (counted for tensorrtllm only).

    Returns:
        The revision string used in names, labels and the status.
    """
    return serve_revision.revision(model_digest, spec, images.server, images.build)


# --- conditions and status ----------------------------------------------------------------------

ConditionValue = tuple[str, str, str]  # (status, reason, message)
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


def merge_conditions(
    old: list[v1alpha1.Condition], new: Mapping[str, ConditionValue], generation: int, now: datetime
) -> list[v1alpha1.Condition]:
    """Set every condition type: ``lastTransitionTime`` moves only when a status flips.

    Args:
        old: the current conditions.
        new: type -> (status, reason, message) for every type of ``reasons.CONDITION_TYPES``.
        generation: the generation the conditions are computed from.
        now: the time of this pass.

    Returns:
        The conditions, in ``reasons.CONDITION_TYPES`` order.
    """
    merged = [c for c in old if c.type in reasons.CONDITION_TYPES]
    for type_ in reasons.CONDITION_TYPES:
        status, reason, message = new[type_]
        merged, _ = conds.set_condition(
            merged, type_, v1alpha1.ConditionStatus(status), reason, message, generation, now
        )
    order = {type_: index for index, type_ in enumerate(reasons.CONDITION_TYPES)}
    return sorted(merged, key=lambda c: order[c.type])


def rolled_back(status: v1alpha1.ModelDeploymentStatus) -> bool:
    """Whether the target revision in ``status`` failed and was rolled back (or had nothing to roll back to)."""
    degraded = conds.find(status.conditions, reasons.DEGRADED)
    return (
        degraded is not None
        and degraded.status == v1alpha1.ConditionStatus.TRUE
        and degraded.reason in ROLLBACK_REASONS
    )


def _available(obs: Observed) -> ConditionValue:
    """The Available condition from the Deployment's ready pods."""
    dep = obs.deployment
    if dep is None:
        return FALSE, reasons.NOT_DEPLOYED, "no Triton Deployment yet"
    if dep.desired == 0:
        return FALSE, reasons.SCALED_TO_ZERO, "spec.replicas is 0"
    if dep.available >= 1:
        return TRUE, reasons.MINIMUM_REPLICAS_AVAILABLE, f"{dep.available} of {dep.desired} Triton pods ready"
    return FALSE, reasons.REPLICAS_UNAVAILABLE, f"0 of {dep.desired} Triton pods ready"


@dataclass
class _Outcome:
    """The parts of a decision assembled by the phase functions, turned into a Decision at the end."""

    phase: Phase
    conditions: dict[str, ConditionValue]
    revision: str | None = None
    previous: str | None = None
    build: Plan | None = None
    serve: Plan | None = None
    smoke: Plan | None = None
    engines: Mapping[str, observed.EngineRecord] | None = None
    keep_revisions: frozenset[str] = frozenset()
    gc: bool = False


def _finish(obs: Observed, out: _Outcome) -> Decision:
    """Turn an outcome into the status, events and child actions."""
    values = dict(out.conditions)
    values.setdefault(reasons.AVAILABLE, _available(obs))
    conditions = merge_conditions(obs.status.conditions, values, obs.generation, obs.now)
    records = out.engines if out.engines is not None else obs.engines
    served = records.get(out.revision or "")
    dep = obs.deployment
    replicas = dep.desired if dep else None
    ready = dep.ready if dep else None
    status = v1alpha1.ModelDeploymentStatus.model_validate(
        {
            "phase": out.phase,
            "observedGeneration": obs.generation,
            "revision": out.revision,
            "previousRevision": out.previous,
            "endpoint": dict(obs.endpoint),
            "replicas": replicas,
            "readyReplicas": ready,
            "ready": f"{ready}/{replicas}" if dep else None,
            "engine": {"uri": served.uri, "digest": served.digest} if served else None,
        }
    )
    status.conditions = conditions
    status.last_updated = obs.status.last_updated
    if _comparable(status) != _comparable(obs.status):
        status.last_updated = obs.now
    return Decision(
        status=status,
        build=out.build,
        serve=out.serve,
        smoke=out.smoke,
        engines=out.engines,
        delete_jobs=_stale_jobs(obs, out) if out.gc else (),
        events=_events(obs.status, status),
    )


def _comparable(status: v1alpha1.ModelDeploymentStatus) -> dict[str, object]:
    """A status without timestamps, to tell whether anything changed."""
    dumped = status.model_dump(mode="json", exclude={"last_updated"})
    for entry in dumped.get("conditions", []):
        entry.pop("last_transition_time", None)
    return dumped


def _events(old: v1alpha1.ModelDeploymentStatus, new: v1alpha1.ModelDeploymentStatus) -> tuple[Event, ...]:
    """One Event per transition: the phase or the reason of the Ready condition changed."""
    before, after = conds.find(old.conditions, reasons.READY), conds.find(new.conditions, reasons.READY)
    if after is None or (old.phase == new.phase and before is not None and before.reason == after.reason):
        return ()
    warning = new.phase in (Phase.DEGRADED, Phase.FAILED)
    message = f"{new.phase}: {after.message}" if new.phase else after.message
    return (Event("Warning" if warning else "Normal", after.reason, conds.truncate(message)),)


def _stale_jobs(obs: Observed, out: _Outcome) -> tuple[str, ...]:
    """Build and smoke-test Jobs of revisions that are neither target, previous nor served."""
    return tuple(job.name for job in obs.jobs if job.revision not in out.keep_revisions and not job.deleting)


def status_patch(current: Mapping[str, Any] | None, desired: v1alpha1.ModelDeploymentStatus) -> dict[str, Any]:
    """The JSON merge patch turning the stored status into ``desired``; {} when nothing changed.

    The operator is the only writer of a ModelDeployment's status, so every field is compared;
    a field that disappears is sent as null, which deletes it.

    Args:
        current: ``status`` as read from the API server (None before the first pass).
        desired: the status decided by :func:`decide`.

    Returns:
        ``{"status": {...changed fields...}}`` or {}.
    """
    current = current or {}
    wanted = desired.to_k8s()
    patch = {key: wanted.get(key) for key in wanted.keys() | current.keys() if wanted.get(key) != current.get(key)}
    return {"status": patch} if patch else {}


def invalid_spec(
    status: v1alpha1.ModelDeploymentStatus, generation: int, message: str, now: datetime
) -> v1alpha1.ModelDeploymentStatus:
    """The status of a ModelDeployment whose spec the operator cannot read (nothing is touched).

    The API server validates specs against the CRD schema, so this only happens when the CRD
    and the operator disagree (e.g. an older CRD left installed); the message says what failed.

    Args:
        status: the current status.
        generation: the generation that failed to parse.
        message: the validation errors.
        now: the time of this pass.

    Returns:
        The new status: phase Failed, Ready False with reason InvalidSpec.
    """
    conditions, _ = conds.set_condition(
        status.conditions,
        reasons.READY,
        v1alpha1.ConditionStatus.FALSE,
        common_reasons.INVALID_SPEC,
        message,
        generation,
        now,
    )
    updated = status.model_copy(
        update={"phase": Phase.FAILED, "conditions": conditions, "observed_generation": generation}
    )
    if _comparable(updated) != _comparable(status):
        updated.last_updated = now
    return updated


# --- plans --------------------------------------------------------------------------------------


def plan_from_record(obs: Observed, record: observed.EngineRecord) -> Plan:
    """Render a recorded revision with today's spec: its engine settings, the current scale and ports.

    Args:
        obs: the observations.
        record: the revision's engine record.

    Returns:
        The plan that serves exactly that revision.
    """
    spec = obs.spec.model_copy(
        update={
            "backend": record.backend,
            "quantization": record.quantization,
            "engine": record.engine,
            "image": record.image,
            "build_image": record.build_image,
        }
    )
    return Plan(
        revision=record.revision,
        spec=spec,
        model_uri=record.model_uri,
        engine_uri=record.uri,
        secret_name=record.secret_name,
        images=Images(server=record.image, build=record.build_image, trainer=obs.default_images.trainer),
    )


def _serving_plan(obs: Observed, revision: str | None) -> Plan | None:
    """The plan of a recorded revision, or None when there is no record of it."""
    record = obs.engines.get(revision or "")
    return plan_from_record(obs, record) if record else None


def _new_record(obs: Observed, plan: Plan, model: ModelResolution) -> observed.EngineRecord:
    """The engine record of a revision whose build Job just completed."""
    return observed.EngineRecord(
        revision=plan.revision,
        uri=plan.engine_uri,
        digest=obs.build_reports.get(plan.revision, {}).get("digest"),
        model_uri=plan.model_uri,
        model_digest=model.digest or "",
        fine_tune_job=model.fine_tune_job,
        secret_name=plan.secret_name,
        backend=plan.spec.backend,
        quantization=plan.spec.quantization,
        engine=plan.spec.engine,
        image=plan.images.server,
        build_image=plan.images.build,
        built_at=obs.now,
    )


def _pruned(records: Mapping[str, observed.EngineRecord], keep: frozenset[str]) -> dict[str, observed.EngineRecord]:
    """At most :data:`MAX_ENGINE_RECORDS` records: the ones in ``keep``, then the newest."""
    ordered = sorted(
        records.values(), key=lambda r: (r.revision not in keep, -(r.built_at.timestamp() if r.built_at else 0.0))
    )
    return {r.revision: r for r in ordered[: max(MAX_ENGINE_RECORDS, len(keep))]}


def _job(obs: Observed, component: str, revision: str) -> observed.JobView | None:
    """The Job of ``component`` for ``revision``, ignoring one that is being deleted."""
    return next(
        (j for j in obs.jobs if j.component == component and j.revision == revision and not j.deleting),
        None,
    )


# --- the passes ---------------------------------------------------------------------------------


def decide(obs: Observed) -> Decision:
    """Decide the children and status of a ModelDeployment from what is observed.

    Args:
        obs: the observations of this pass.

    Returns:
        The decision; applying it and observing again converges to phase Ready, Degraded or Failed.
    """
    model = resolve_model(obs)
    if not model.ready or model.uri is None or model.digest is None:
        return _finish(obs, _without_model(obs, model))
    images = images_of(obs.spec, obs.default_images)
    revision = target_revision(model.digest, obs.spec, images)
    model_cond: ConditionValue = (TRUE, model.reason, model.message)
    location = engine_uri(model.uri, revision, obs.spec.engine_storage)
    if location is None:
        return _finish(obs, _no_engine_storage(obs, model_cond, revision, model.uri))
    plan = Plan(revision, obs.spec, model.uri, location, model.secret_name, images)
    previous = _previous_revision(obs.status, revision)
    if revision == obs.status.revision and rolled_back(obs.status):
        return _finish(obs, _stay_rolled_back(obs, model_cond, plan, previous))
    return _finish(obs, _build(obs, model, model_cond, plan, previous))


def _previous_revision(status: v1alpha1.ModelDeploymentStatus, target: str) -> str | None:
    """The revision to roll back to while ``target`` is rolled out.

    While the target is unchanged it is the recorded previousRevision. When the target changes,
    the old target becomes the previous revision if it passed its smoke test; otherwise (it was
    still rolling out, or was itself rolled back) the recorded previous revision stays.
    """
    if target == status.revision:
        return status.previous_revision
    candidate = status.previous_revision
    if status.revision and conds.is_true(status.conditions, reasons.SMOKE_TESTED):
        candidate = status.revision
    return None if candidate == target else candidate


def _waiting_conditions(reason: str, message: str) -> dict[str, ConditionValue]:
    """EngineBuilt, Progressing, SmokeTested and Ready while nothing can be built."""
    return {
        reasons.ENGINE_BUILT: (UNKNOWN, reasons.WAITING_FOR_MODEL, "the model is not known yet"),
        reasons.PROGRESSING: (TRUE, reason, message),
        reasons.SMOKE_TESTED: (UNKNOWN, reasons.WAITING_FOR_MODEL, "the model is not known yet"),
        reasons.READY: (FALSE, reason, message),
    }


def _without_model(obs: Observed, model: ModelResolution) -> _Outcome:
    """The model is not known: keep serving what is served, wait (or fail if the job failed)."""
    status = obs.status
    serving = _serving_plan(obs, obs.deployment.revision if obs.deployment else None)
    conditions = _waiting_conditions(model.reason, model.message)
    conditions[reasons.MODEL_READY] = (FALSE, model.reason, model.message)
    degraded: ConditionValue = (FALSE, reasons.AS_EXPECTED, "")
    phase = Phase.WAITING_FOR_MODEL
    if model.failed:
        conditions[reasons.PROGRESSING] = (FALSE, model.reason, model.message)
        phase = Phase.DEGRADED if serving else Phase.FAILED
        degraded = (TRUE, model.reason, model.message)
    conditions[reasons.DEGRADED] = degraded
    return _Outcome(phase, conditions, status.revision, status.previous_revision, serve=serving)


def _no_engine_storage(obs: Observed, model_cond: ConditionValue, revision: str, model_uri: str) -> _Outcome:
    """A model off a PersistentVolumeClaim, and no spec.engineStorage: fail with an explanation."""
    message = (
        f"{model_uri} is not on a PersistentVolumeClaim: set spec.engineStorage to a pvc:// location "
        "to copy the model to and write its engines into"
    )
    conditions = _waiting_conditions(reasons.ENGINE_STORAGE_UNAVAILABLE, message)
    conditions[reasons.MODEL_READY] = model_cond
    conditions[reasons.ENGINE_BUILT] = (FALSE, reasons.ENGINE_STORAGE_UNAVAILABLE, message)
    conditions[reasons.PROGRESSING] = (FALSE, reasons.ENGINE_STORAGE_UNAVAILABLE, message)
    conditions[reasons.DEGRADED] = (TRUE, reasons.ENGINE_STORAGE_UNAVAILABLE, message)
    serving = _serving_plan(obs, obs.deployment.revision if obs.deployment else None)
    phase = Phase.DEGRADED if serving else Phase.FAILED
    return _Outcome(phase, conditions, revision, obs.status.previous_revision, serve=serving)


def _build(
    obs: Observed, model: ModelResolution, model_cond: ConditionValue, plan: Plan, previous: str | None
) -> _Outcome:
    """Make sure the target revision's engine exists, then deploy it."""
    record = obs.engines.get(plan.revision)
    build_job = _job(obs, observed.COMPONENT_BUILD, plan.revision)
    keep = frozenset(r for r in (plan.revision, previous, obs.deployment.revision if obs.deployment else None) if r)
    if record is not None:
        reason = reasons.BUILD_SUCCEEDED if build_job is not None else reasons.ENGINE_CACHED
        built: ConditionValue = (TRUE, reason, f"engine {record.uri}")
        return _deploy(obs, model_cond, built, plan_from_record(obs, record), previous, None, keep)
    if build_job is not None and build_job.state == job_observed.JobState.SUCCEEDED:
        record = _new_record(obs, plan, model)
        engines = _pruned({**obs.engines, plan.revision: record}, keep)
        built = (TRUE, reasons.BUILD_SUCCEEDED, f"engine {record.uri}")
        return _deploy(obs, model_cond, built, plan_from_record(obs, record), previous, engines, keep)
    if build_job is not None and build_job.state == job_observed.JobState.FAILED:
        message = f"build Job {build_job.name} of revision {plan.revision} failed: {build_job.message}"
        return _failed_build(obs, model_cond, plan, previous, message, keep)
    started = build_job is not None
    reason = reasons.BUILDING if started else reasons.BUILD_STARTED
    message = f"building revision {plan.revision} into {plan.engine_uri}"
    conditions = {
        reasons.MODEL_READY: model_cond,
        reasons.ENGINE_BUILT: (FALSE, reason, message),
        reasons.PROGRESSING: (TRUE, reason, message),
        reasons.DEGRADED: (FALSE, reasons.AS_EXPECTED, ""),
        reasons.SMOKE_TESTED: (FALSE, reasons.SMOKE_TEST_PENDING, "the engine is being built"),
        reasons.READY: (FALSE, reason, message),
    }
    serving = _serving_plan(obs, obs.deployment.revision if obs.deployment else None)
    return _Outcome(
        Phase.BUILDING, conditions, plan.revision, previous, build=None if started else plan,
        serve=serving, keep_revisions=keep, gc=True,
    )  # fmt: skip


def _failed_build(
    obs: Observed, model_cond: ConditionValue, plan: Plan, previous: str | None, message: str, keep: frozenset[str]
) -> _Outcome:
    """The build failed: an older revision keeps serving (Degraded), or there is none (Failed)."""
    serving = _serving_plan(obs, obs.deployment.revision if obs.deployment else None)
    conditions = {
        reasons.MODEL_READY: model_cond,
        reasons.ENGINE_BUILT: (FALSE, reasons.BUILD_FAILED, message),
        reasons.PROGRESSING: (FALSE, reasons.BUILD_FAILED, message),
        reasons.DEGRADED: (TRUE, reasons.BUILD_FAILED, message),
        reasons.SMOKE_TESTED: (FALSE, reasons.BUILD_FAILED, "the engine could not be built"),
        reasons.READY: (FALSE, reasons.BUILD_FAILED, message),
    }
    phase = Phase.DEGRADED if serving else Phase.FAILED
    return _Outcome(phase, conditions, plan.revision, previous, serve=serving, keep_revisions=keep, gc=True)


def _deploy(
    obs: Observed,
    model_cond: ConditionValue,
    built: ConditionValue,
    plan: Plan,
    previous: str | None,
    engines: Mapping[str, observed.EngineRecord] | None,
    keep: frozenset[str],
) -> _Outcome:
    """Roll the Deployment to the target revision, smoke-test it, and roll back on failure."""
    conditions: dict[str, ConditionValue] = {
        reasons.MODEL_READY: model_cond,
        reasons.ENGINE_BUILT: built,
        reasons.DEGRADED: (FALSE, reasons.AS_EXPECTED, ""),
    }
    out = _Outcome(
        Phase.DEPLOYING, conditions, plan.revision, previous, serve=plan, engines=engines, keep_revisions=keep, gc=True
    )
    dep = obs.deployment
    on_target = dep is not None and dep.revision == plan.revision and dep.observed
    if on_target and dep is not None and dep.deadline_exceeded:
        message = f"revision {plan.revision} not ready within progressDeadlineSeconds: {dep.progress_message}"
        return _roll_back(obs, out, reasons.ROLLOUT_TIMED_OUT, message)
    if not (on_target and dep is not None and dep.rolled_out):
        message = f"rolling out revision {plan.revision}" + (
            f" (replacing {dep.revision})" if dep and dep.revision else ""
        )
        conditions[reasons.PROGRESSING] = (TRUE, reasons.ROLLING_OUT, message)
        conditions[reasons.SMOKE_TESTED] = (FALSE, reasons.SMOKE_TEST_PENDING, "waiting for the rollout")
        conditions[reasons.READY] = (FALSE, reasons.ROLLING_OUT, message)
        return out
    return _smoke_test(obs, out, plan)


def _smoke_test(obs: Observed, out: _Outcome, plan: Plan) -> _Outcome:
    """The target revision is rolled out: test it, then declare it Ready."""
    conditions = out.conditions
    smoke_spec = obs.spec.rollout.smoke_test
    scaled_to_zero = obs.deployment is not None and obs.deployment.desired == 0
    if not smoke_spec.enabled or scaled_to_zero:
        reason = reasons.SMOKE_TEST_DISABLED if not smoke_spec.enabled else reasons.SCALED_TO_ZERO
        conditions[reasons.SMOKE_TESTED] = (TRUE, reason, "no smoke test was run")
        return _ready(obs, out, plan)
    job = _job(obs, observed.COMPONENT_SMOKE, plan.revision)
    if job is not None and job.state == job_observed.JobState.SUCCEEDED:
        conditions[reasons.SMOKE_TESTED] = (TRUE, reasons.SMOKE_TEST_PASSED, f"smoke test {job.name} passed")
        return _ready(obs, out, plan)
    if job is not None and job.state == job_observed.JobState.FAILED:
        message = f"smoke test {job.name} of revision {plan.revision} failed: {job.message}"
        return _roll_back(obs, out, reasons.SMOKE_TEST_FAILED, message)
    message = f"smoke-testing revision {plan.revision}"
    conditions[reasons.PROGRESSING] = (TRUE, reasons.SMOKE_TESTING, message)
    conditions[reasons.SMOKE_TESTED] = (FALSE, reasons.SMOKE_TESTING, message)
    conditions[reasons.READY] = (FALSE, reasons.SMOKE_TESTING, message)
    out.smoke = plan if job is None else None
    return out


def _ready(obs: Observed, out: _Outcome, plan: Plan) -> _Outcome:
    """The target revision is rolled out and tested: Ready, or Degraded if its pods are all gone."""
    conditions = out.conditions
    conditions[reasons.PROGRESSING] = (FALSE, reasons.ROLLOUT_COMPLETE, f"revision {plan.revision} is serving")
    available = _available(obs)
    conditions[reasons.AVAILABLE] = available
    if available[0] == FALSE and available[1] == reasons.REPLICAS_UNAVAILABLE:
        conditions[reasons.DEGRADED] = (TRUE, reasons.REPLICAS_UNAVAILABLE, available[2])
        conditions[reasons.READY] = (FALSE, reasons.REPLICAS_UNAVAILABLE, available[2])
        out.phase = Phase.DEGRADED
        return out
    conditions[reasons.READY] = (TRUE, reasons.SERVING, f"revision {plan.revision} is serving")
    out.phase = Phase.READY
    return out


def _roll_back(obs: Observed, out: _Outcome, reason: str, message: str) -> _Outcome:
    """The target failed: serve previousRevision again (Degraded), or stay as is if there is none (Failed)."""
    conditions = out.conditions
    fallback = _serving_plan(obs, out.previous)
    if fallback is not None:
        message = f"{message}; rolled back to revision {fallback.revision}"
        out.serve, out.phase = fallback, Phase.DEGRADED
        conditions[reasons.PROGRESSING] = (FALSE, reasons.ROLLED_BACK, message)
    else:
        message = f"{message}; no previous revision to roll back to"
        out.phase = Phase.FAILED
        conditions[reasons.PROGRESSING] = (FALSE, reasons.NO_PREVIOUS_REVISION, message)
    conditions[reasons.DEGRADED] = (TRUE, reason, message)
    conditions[reasons.SMOKE_TESTED] = (
        FALSE, reason if reason == reasons.SMOKE_TEST_FAILED else reasons.SMOKE_TEST_PENDING, message,
    )  # fmt: skip
    conditions[reasons.READY] = (FALSE, reason, message)
    out.smoke = None
    return out


def _stay_rolled_back(obs: Observed, model_cond: ConditionValue, plan: Plan, previous: str | None) -> _Outcome:
    """The target failed before: keep serving the previous revision until the target changes."""
    old = {c.type: (c.status.value, c.reason, c.message) for c in obs.status.conditions}
    conditions: dict[str, ConditionValue] = {
        t: old[t] for t in reasons.CONDITION_TYPES if t in old and t != reasons.AVAILABLE
    }
    conditions[reasons.MODEL_READY] = model_cond
    fallback = _serving_plan(obs, previous)
    keep = frozenset(r for r in (plan.revision, previous) if r)
    phase = Phase.DEGRADED if fallback else Phase.FAILED
    serve = fallback if fallback else _serving_plan(obs, plan.revision)
    for type_ in reasons.CONDITION_TYPES:
        if type_ != reasons.AVAILABLE:
            conditions.setdefault(type_, (UNKNOWN, reasons.ROLLED_BACK, ""))
    return _Outcome(phase, conditions, plan.revision, previous, serve=serve, keep_revisions=keep, gc=True)
