"""What the ModelDeployment controller sees of the cluster, reduced to the facts it decides on.

Why this module exists: the decision logic in :mod:`kubetune.reconcile.modeldeployment` should
read like the state machine it is, not like dictionary plumbing. The handler fetches raw objects
(Jobs, the Deployment, the FineTuneJob, the ``<name>-engines`` ConfigMap) and these pure functions
turn them into small frozen views, each unit-tested against the shapes the API server returns.

The engine cache lives here too (:class:`EngineRecord`): one JSON document per built revision in
the ConfigMap ``<name>-engines``, owned by the ModelDeployment. It remembers where each revision's
Triton repository was written and the serving settings that produced it, so that an unchanged
revision is never rebuilt and a rollback can re-render the Deployment of an older revision exactly,
without the controller ever writing to the user's spec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from kubetune.api import v1alpha1
from kubetune.api.v1alpha1 import labels as well_known
from kubetune.reconcile import diagnose, observed

MODELDEPLOYMENT_LABEL = well_known.MODELDEPLOYMENT
REVISION_LABEL = well_known.REVISION
REVISION_ANNOTATION = well_known.REVISION

#: ``app.kubernetes.io/component`` of the engine-build and smoke-test Jobs.
COMPONENT_BUILD = "build"
COMPONENT_SMOKE = "smoke"


@dataclass(frozen=True)
class JobView:
    """A build or smoke-test Job of one revision.

    Attributes:
        name: metadata.name of the Job.
        component: :data:`COMPONENT_BUILD` or :data:`COMPONENT_SMOKE`.
        revision: the revision label.
        state: queued, active, succeeded or failed.
        message: why it failed (container, exit code, reason), empty otherwise.
        deleting: the Job has a deletionTimestamp (it is going away).
    """

    name: str
    component: str
    revision: str
    state: observed.JobState
    message: str = ""
    deleting: bool = False


def job_view(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] = ()) -> JobView | None:
    """Reduce a batch/v1 Job to a :class:`JobView`.

    Args:
        job: the Job as returned by the API server.
        pods: its pods, to explain a failure (may be empty).

    Returns:
        The view, or None when the Job lacks the component or revision label (not one of ours).
    """
    metadata = job.get("metadata") or {}
    job_labels = metadata.get("labels") or {}
    component, revision = job_labels.get(well_known.COMPONENT), job_labels.get(REVISION_LABEL)
    if component not in (COMPONENT_BUILD, COMPONENT_SMOKE) or not revision:
        return None
    state, _ = observed.job_state(job)
    failure = diagnose.job_failure(job, pods) if state == observed.JobState.FAILED else None
    return JobView(
        name=metadata.get("name", ""),
        component=component,
        revision=revision,
        state=state,
        message=failure.message if failure else "",
        deleting=bool(metadata.get("deletionTimestamp")),
    )


def job_views(
    jobs: Sequence[Mapping[str, Any]],
    owner_uid: str,
    pods_by_job: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> tuple[JobView, ...]:
    """Views of the build and smoke-test Jobs a ModelDeployment controls, ignoring any other.

    Args:
        jobs: Jobs listed by the ``kubetune.dev/modeldeployment`` label.
        owner_uid: the ModelDeployment's uid (a deleted namesake's Jobs are not ours).
        pods_by_job: pods of failed Jobs, by Job name.

    Returns:
        The views.
    """
    pods_by_job = pods_by_job or {}
    views = []
    for job in jobs:
        if not observed.controlled_by(job, owner_uid):
            continue
        view = job_view(job, pods_by_job.get((job.get("metadata") or {}).get("name", ""), ()))
        if view is not None:
            views.append(view)
    return tuple(views)


@dataclass(frozen=True)
class DeploymentView:
    """The Triton Deployment as far as rollouts are concerned.

    Attributes:
        revision: the revision annotation of its pod template (None if missing).
        generation: metadata.generation.
        observed_generation: status.observedGeneration (0 before the controller saw it).
        desired: spec.replicas.
        replicas: status.replicas (pods of all ReplicaSets).
        updated: status.updatedReplicas (pods of the current template).
        ready: status.readyReplicas.
        available: status.availableReplicas.
        progress_reason: the reason of the Progressing condition (NewReplicaSetAvailable once a
            rollout completed, kept when pods fail later).
        progress_message: the message of the Progressing condition.
    """

    revision: str | None
    generation: int
    observed_generation: int
    desired: int
    replicas: int
    updated: int
    ready: int
    available: int
    progress_reason: str = ""
    progress_message: str = ""

    @property
    def observed(self) -> bool:
        """Whether the Deployment controller has acted on the latest template."""
        return self.observed_generation >= self.generation

    @property
    def deadline_exceeded(self) -> bool:
        """The rollout of the current template made no progress within progressDeadlineSeconds."""
        return self.progress_reason == "ProgressDeadlineExceeded"

    @property
    def rolled_out(self) -> bool:
        """Every pod runs the current template and no old pod is left; the new pods became available.

        Availability counts once: a revision whose pods all became available stays rolled out when
        pods fail later (the Deployment keeps reason NewReplicaSetAvailable), so a lost pod reads as
        a degraded serving revision, not as a rollout in progress.
        """
        became_available = self.available >= self.desired or self.progress_reason == "NewReplicaSetAvailable"
        return self.observed and self.updated == self.desired and self.replicas == self.updated and became_available


def deployment_view(deployment: Mapping[str, Any]) -> DeploymentView:
    """Reduce an apps/v1 Deployment to a :class:`DeploymentView`.

    Args:
        deployment: the Deployment as returned by the API server.

    Returns:
        The view.
    """
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    template_annotations = spec.get("template", {}).get("metadata", {}).get("annotations") or {}
    progressing: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"),
        {},
    )
    return DeploymentView(
        revision=template_annotations.get(REVISION_ANNOTATION),
        generation=int(deployment.get("metadata", {}).get("generation", 0)),
        observed_generation=int(status.get("observedGeneration", 0)),
        desired=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas", 0)),
        updated=int(status.get("updatedReplicas", 0)),
        ready=int(status.get("readyReplicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        progress_reason=progressing.get("reason", ""),
        progress_message=progressing.get("message", ""),
    )


@dataclass(frozen=True)
class FineTuneJobView:
    """The parts of a FineTuneJob a ModelDeployment waits for.

    Attributes:
        name: metadata.name.
        phase: status.phase (None before the operator first wrote it).
        artifact_uri: status.artifact.uri once exported.
        artifact_digest: status.artifact.digest once exported.
        secret_name: spec.output.secretRef.name: the credentials that read the artifact.
    """

    name: str
    phase: str | None
    artifact_uri: str | None = None
    artifact_digest: str | None = None
    secret_name: str | None = None


def finetunejob_view(job: Mapping[str, Any]) -> FineTuneJobView:
    """Reduce a FineTuneJob to a :class:`FineTuneJobView`.

    Args:
        job: the FineTuneJob as returned by the API server.

    Returns:
        The view.
    """
    status = job.get("status") or {}
    artifact = status.get("artifact") or {}
    secret_ref = (job.get("spec", {}).get("output") or {}).get("secretRef") or {}
    return FineTuneJobView(
        name=job.get("metadata", {}).get("name", ""),
        phase=status.get("phase"),
        artifact_uri=artifact.get("uri"),
        artifact_digest=artifact.get("digest"),
        secret_name=secret_ref.get("name"),
    )


class EngineRecord(BaseModel):
    """One built revision, as remembered in the ``<name>-engines`` ConfigMap (key: the revision).

    Unknown keys are ignored so that records written by a newer operator still load.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    revision: str
    uri: str
    digest: str | None = None
    model_uri: str
    model_digest: str
    fine_tune_job: str | None = None
    secret_name: str | None = None
    backend: v1alpha1.Backend
    quantization: v1alpha1.Quantization
    engine: v1alpha1.EngineSpec
    image: str
    build_image: str
    built_at: datetime | None = None

    def to_json(self) -> str:
        """Serialize for the ConfigMap (camelCase, stable key order)."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)


def engine_records(data: Mapping[str, str] | None) -> dict[str, EngineRecord]:
    """Parse the data of the ``<name>-engines`` ConfigMap.

    A corrupt entry (edited by hand, or from an incompatible version) is dropped: the revision
    is then simply rebuilt, which is always safe.

    Args:
        data: the ConfigMap's ``data`` (revision -> JSON), or None when it does not exist.

    Returns:
        The records by revision.
    """
    records: dict[str, EngineRecord] = {}
    for revision, text in (data or {}).items():
        try:
            record = EngineRecord.model_validate_json(text)
        except ValidationError:
            continue
        if record.revision == revision:
            records[revision] = record
    return records


def build_report(message: str | None) -> dict[str, str]:
    """Parse what a build pod wrote to its termination log: a JSON object with uri and digest.

    Args:
        message: ``state.terminated.message`` of the build container (may be empty or not JSON).

    Returns:
        The string fields of the JSON object, or {} when there is none.
    """
    if not message:
        return {}
    for line in reversed(message.strip().splitlines()):
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict):
            return {k: v for k, v in report.items() if isinstance(v, str)}
    return {}
