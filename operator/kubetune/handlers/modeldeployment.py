"""kopf handlers of ModelDeployments and the reconcile each key goes through.

Same shape as :mod:`kubetune.handlers.finetunejob`: a watch event on a ModelDeployment, on one of
its Jobs or its Triton Deployment, or on a FineTuneJob it waits for, only puts the deployment's key
on a work queue. A worker reconciles the key the same way every time: read the ModelDeployment and
its children fresh from the API server, let :func:`kubetune.reconcile.modeldeployment.decide`
choose, render what it asks for (:mod:`kubetune.render.modeldeployment`), apply it, write the
status subresource, post events. No kopf annotations or finalizers are written on the user's object,
so a ModelDeployment kept in Git stays in sync with it.

The controller is created by a kopf startup handler from the operator's memo (``api`` and
``settings``), which also starts its workers, so importing this module is all the operator does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic

from kubetune import metrics
from kubetune.api import v1alpha1
from kubetune.api.v1alpha1 import labels
from kubetune.handlers.workqueue import WorkQueue, worker
from kubetune.kube import client as kube_client
from kubetune.kube import errors, events
from kubetune.reconcile import modeldeployment as rollout
from kubetune.reconcile import observed as job_observed
from kubetune.reconcile import reasons
from kubetune.reconcile import serving_observed as serving
from kubetune.render import modeldeployment as render
from kubetune.render import serving_meta
from kubetune.settings import Settings

log = logging.getLogger(__name__)

#: (namespace, name) of a ModelDeployment.
Key = tuple[str, str]
#: Field manager of the objects the operator server-side applies.
FIELD_MANAGER = "kubetune-operator"
#: Concurrent ModelDeployment reconciles (they are short: a few reads and applies each).
WORKERS = 4
#: While something is in progress, look again this often even without a watch event.
RESYNC_IN_PROGRESS_SECONDS = 30.0
#: Seconds before retrying when a child's name is taken by an object we do not control.
CONFLICT_RETRY_SECONDS = 30.0
#: Seconds before retrying when a child of the same name is still being deleted.
DELETION_RETRY_SECONDS = 2.0
#: Container of the build pod whose termination message carries the repository digest.
REPOSITORY_CONTAINER = "repository"


class ChildPending(Exception):  # noqa: N818 - a state, not an error
    """A child cannot be created or applied yet; reconcile again later."""

    def __init__(self, message: str, retry_after: float, conflict: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.conflict = conflict


def default_images(settings: Settings) -> rollout.Images:
    """The operator's default images: Triton, engine build, and the trainer (repository writer, smoke test).

    ``Settings`` may carry ``triton_image`` and ``engine_build_image``; until it does, the
    constants of this module apply.
    """
    return rollout.Images(
        server=settings.triton_image,
        build=settings.engine_build_image,
        trainer=settings.trainer_image,
    )


def _lenient_status(raw: Mapping[str, Any] | None) -> v1alpha1.ModelDeploymentStatus:
    """The stored status as a model; fields that do not validate are dropped, not fatal."""
    values = dict(raw or {})
    while True:
        try:
            return v1alpha1.ModelDeploymentStatus.model_validate(values)
        except pydantic.ValidationError as err:
            bad = {str(problem["loc"][0]) for problem in err.errors() if problem["loc"]}
            if not bad & set(values):
                return v1alpha1.ModelDeploymentStatus()
            log.warning("ignoring invalid status fields %s", sorted(bad))
            values = {k: v for k, v in values.items() if k not in bad}


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return job_observed.controlled_by(obj, uid)


def to_revision(plan: rollout.Plan, settings: Settings) -> render.Revision:
    """The renderer's view of one of the reconciler's plans."""
    return render.Revision(
        revision=plan.revision,
        spec=plan.spec,
        model_uri=plan.model_uri,
        engine_uri=plan.engine_uri,
        server_image=plan.images.server,
        build_image=plan.images.build,
        trainer_image=plan.images.trainer,
        image_pull_policy=settings.image_pull_policy,
        secret_name=plan.secret_name,
    )


@dataclasses.dataclass
class ModelDeploymentController:
    """Reconciles ModelDeployments from a work queue.

    Attributes:
        api: the API client.
        settings: the operator settings.
        queue: keys of ModelDeployments to reconcile.
        workers: the worker tasks (started by :meth:`start`).
    """

    api: kube_client.Client
    settings: Settings
    queue: WorkQueue[Key] = dataclasses.field(default_factory=WorkQueue)
    workers: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)

    def start(self, count: int = WORKERS) -> None:
        """Start the workers (in the running event loop)."""
        self.workers = [
            asyncio.create_task(worker(self.queue, self.reconcile), name=f"modeldeployment-worker-{i}")
            for i in range(count)
        ]

    async def stop(self) -> None:
        """Stop handing out keys and wait for the workers to end."""
        self.queue.shut_down()
        for task in self.workers:
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)

    async def reconcile(self, key: Key) -> float | None:
        """Reconcile one ModelDeployment (the work queue's reconciler).

        Args:
            key: (namespace, name).

        Returns:
            Seconds until it must be reconciled again, or None.
        """
        started = time.perf_counter()
        result = "error"
        try:
            requeue = await self._reconcile(*key)
            result = "success"
            return requeue
        except ChildPending as pending:
            result = "pending"
            log.info("%s/%s: %s", *key, pending)
            return pending.retry_after
        finally:
            metrics.RECONCILE_DURATION.labels("ModelDeployment", result).observe(time.perf_counter() - started)
            metrics.WORKQUEUE_DEPTH.labels("ModelDeployment").set(len(self.queue))

    async def _reconcile(self, namespace: str, name: str) -> float | None:
        try:
            body = await self.api.get(kube_client.MODELDEPLOYMENTS, name, namespace)
        except errors.NotFound:
            return None
        metadata = body.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            return None  # the garbage collector removes the children
        now = datetime.now(UTC).replace(microsecond=0)
        status = _lenient_status(body.get("status"))
        generation = int(metadata.get("generation") or 1)
        try:
            spec = v1alpha1.ModelDeploymentSpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError as err:
            invalid = rollout.invalid_spec(status, generation, v1alpha1.describe_errors(err, prefix="spec."), now)
            await self._write(body, rollout.Decision(status=invalid))
            return None
        parent = serving_meta.Parent(name, namespace, metadata["uid"], metadata.get("annotations") or {})
        for key in serving_meta.malformed_pod_label_annotations(parent.annotations):
            log.warning("%s/%s: annotation %s is not a JSON object of strings; ignored", namespace, name, key)
        try:
            decision = rollout.decide(await self._observe(parent, spec, status, generation, now))
            await self._act(parent, decision)
        except ChildPending as pending:
            if pending.conflict:
                await events.post(self.api, body, "Warning", reasons.CHILD_CONFLICT, str(pending))
            raise
        await self._write(body, decision)
        in_progress = decision.status.phase in (v1alpha1.DeploymentPhase.BUILDING, v1alpha1.DeploymentPhase.DEPLOYING)
        return RESYNC_IN_PROGRESS_SECONDS if in_progress else None

    # -- observing ---------------------------------------------------------------------

    async def _observe(
        self,
        parent: serving_meta.Parent,
        spec: v1alpha1.ModelDeploymentSpec,
        status: v1alpha1.ModelDeploymentStatus,
        generation: int,
        now: datetime,
    ) -> rollout.Observed:
        engines = await self._engine_records(parent)
        jobs = await self.api.list(
            kube_client.JOBS,
            parent.namespace,
            label_selector=f"{serving_meta.MODELDEPLOYMENT_LABEL}={serving_meta.label_value(parent.name)}",
        )
        ours = [job for job in jobs if _owned_by(job, parent.uid)]
        return rollout.Observed(
            name=parent.name,
            generation=generation,
            spec=spec,
            status=status,
            default_images=default_images(self.settings),
            endpoint=render.endpoint(parent, spec),
            now=now,
            fine_tune_job=await self._fine_tune_job(parent.namespace, spec),
            jobs=serving.job_views(ours, parent.uid, await self._failed_job_pods(parent.namespace, ours)),
            deployment=await self._deployment(parent),
            engines=engines,
            build_reports=await self._build_reports(parent.namespace, ours, engines),
        )

    async def _fine_tune_job(
        self, namespace: str, spec: v1alpha1.ModelDeploymentSpec
    ) -> serving.FineTuneJobView | None:
        ref = spec.model.fine_tune_job_ref
        if ref is None:
            return None
        try:
            return serving.finetunejob_view(await self.api.get(kube_client.FINETUNEJOBS, ref.name, namespace))
        except errors.NotFound:
            return None

    async def _deployment(self, parent: serving_meta.Parent) -> serving.DeploymentView | None:
        try:
            found = await self.api.get(kube_client.DEPLOYMENTS, serving_meta.server_name(parent.name), parent.namespace)
        except errors.NotFound:
            return None
        if not _owned_by(found, parent.uid):
            name = serving_meta.server_name(parent.name)
            raise ChildPending(
                f"Deployment {name} exists but is not controlled by this ModelDeployment; delete or rename it",
                CONFLICT_RETRY_SECONDS,
                conflict=True,
            )
        return serving.deployment_view(found)

    async def _engine_records(self, parent: serving_meta.Parent) -> dict[str, serving.EngineRecord]:
        name = serving_meta.engines_configmap_name(parent.name)
        try:
            found = await self.api.get(kube_client.CONFIGMAPS, name, parent.namespace)
        except errors.NotFound:
            return {}
        if not _owned_by(found, parent.uid):
            return {}  # a namesake of a deleted ModelDeployment: its records are not ours
        return serving.engine_records(found.get("data"))

    async def _pods_of(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        return await self.api.list(kube_client.PODS, namespace, label_selector=f"{labels.JOB_NAME}={job_name}")

    async def _failed_job_pods(self, namespace: str, jobs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Pods of the failed Jobs, to say why they failed."""
        failed = [j for j in jobs if job_observed.job_state(j)[0] == job_observed.JobState.FAILED]
        return {j["metadata"]["name"]: await self._pods_of(namespace, j["metadata"]["name"]) for j in failed}

    async def _build_reports(
        self, namespace: str, jobs: list[dict[str, Any]], engines: Mapping[str, serving.EngineRecord]
    ) -> dict[str, dict[str, str]]:
        """Termination reports of completed build Jobs whose engine is not recorded yet."""
        reports: dict[str, dict[str, str]] = {}
        for job in jobs:
            view = serving.job_view(job)
            if view is None or view.component != serving.COMPONENT_BUILD or view.revision in engines:
                continue
            if view.state != job_observed.JobState.SUCCEEDED:
                continue
            for pod in await self._pods_of(namespace, view.name):
                for container in (pod.get("status") or {}).get("containerStatuses") or []:
                    if container.get("name") == REPOSITORY_CONTAINER:
                        message = ((container.get("state") or {}).get("terminated") or {}).get("message")
                        reports[view.revision] = reports.get(view.revision) or serving.build_report(message)
        return reports

    # -- acting ------------------------------------------------------------------------

    async def _act(self, parent: serving_meta.Parent, decision: rollout.Decision) -> None:
        """Apply the decision: record engines, create Jobs, apply the serving objects, delete stale Jobs."""
        if decision.engines is not None:
            data = {revision: record.to_json() for revision, record in decision.engines.items()}
            await self._apply(render.engines_configmap(parent, data))
        if decision.build is not None:
            await self._ensure(render.build_job(parent, to_revision(decision.build, self.settings)), parent.uid)
        if decision.serve is not None:
            await self._serve(parent, decision.serve)
        if decision.smoke is not None:
            await self._ensure(render.smoke_job(parent, to_revision(decision.smoke, self.settings)), parent.uid)
        for name in decision.delete_jobs:
            await self._delete(kube_client.JOBS, name, parent.namespace)

    async def _serve(self, parent: serving_meta.Parent, plan: rollout.Plan) -> None:
        """The Deployment at the plan's revision, the Service, and the HPA (or its removal)."""
        await self._apply(render.deployment(parent, to_revision(plan, self.settings)))
        await self._apply(render.service(parent, plan.spec))
        autoscaler = render.autoscaler(parent, plan.spec)
        if autoscaler is not None:
            await self._apply(autoscaler)
        else:
            await self._delete(kube_client.HPAS, serving_meta.server_name(parent.name), parent.namespace)

    async def _apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply a child (Deployment, Service, HPA, engine ConfigMap), never taking over a foreign one.

        Raises:
            ChildPending: an object of that name exists and another owner (or nobody) controls it.
        """
        resource = kube_client.resource_of(manifest)
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        try:
            existing = await self.api.get(resource, name, namespace)
        except errors.NotFound:
            existing = None
        owner_uid = manifest["metadata"]["ownerReferences"][0]["uid"]
        if existing is not None and not _owned_by(existing, owner_uid):
            raise ChildPending(
                f"{resource.kind} {name} exists but is not controlled by this ModelDeployment; delete or rename it",
                CONFLICT_RETRY_SECONDS,
                conflict=True,
            )
        await self.api.patch(
            resource,
            manifest["metadata"]["name"],
            manifest,
            manifest["metadata"]["namespace"],
            patch_type="apply",
            field_manager=FIELD_MANAGER,
            force=True,
        )

    async def _ensure(self, manifest: dict[str, Any], owner_uid: str) -> None:
        """Create a Job (Jobs are immutable), or accept the existing one if we control it.

        Raises:
            ChildPending: a Job of that name is being deleted, or belongs to another owner.
        """
        resource = kube_client.resource_of(manifest)
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        try:
            await self.api.create(resource, manifest)
            log.info("created %s %s/%s", resource.kind, namespace, name)
            return
        except errors.AlreadyExists:
            pass
        existing = await self.api.get(resource, name, namespace)
        if (existing.get("metadata") or {}).get("deletionTimestamp"):
            raise ChildPending(f"{resource.kind} {name} is being deleted", DELETION_RETRY_SECONDS)
        if not _owned_by(existing, owner_uid):
            raise ChildPending(
                f"{resource.kind} {name} exists but is not controlled by this ModelDeployment; delete or rename it",
                CONFLICT_RETRY_SECONDS,
                conflict=True,
            )

    async def _delete(self, resource: kube_client.Resource, name: str, namespace: str) -> None:
        try:
            await self.api.delete(resource, name, namespace, propagation="Background")
            log.info("deleted %s %s/%s", resource.kind, namespace, name)
        except errors.NotFound:
            pass

    async def _write(self, body: Mapping[str, Any], decision: rollout.Decision) -> None:
        """Write the status (changed fields only), then post the decision's events."""
        metadata = body["metadata"]
        patch = rollout.status_patch(body.get("status"), decision.status)
        if patch:
            await self.api.patch(
                kube_client.MODELDEPLOYMENTS, metadata["name"], patch, metadata["namespace"], subresource="status"
            )
        for event in decision.events:
            await events.post(self.api, body, event.type, event.reason, event.message)


# -- kopf handlers ---------------------------------------------------------------------


def controller_of(memo: Any) -> ModelDeploymentController:
    """The controller the startup handler put into kopf's memo."""
    controller = memo.get("modeldeployments")
    if not isinstance(controller, ModelDeploymentController):
        raise RuntimeError("the ModelDeployment controller is missing from the operator memo")
    return controller


def _owner_name(metadata: Mapping[str, Any]) -> str | None:
    """Name of the ModelDeployment controlling a child, from its owner references."""
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("kind") == "ModelDeployment" and ref.get("controller") and ref.get("name"):
            return str(ref["name"])
    return None


@kopf.on.startup()
async def start_modeldeployment_controller(memo: kopf.Memo, **_: Any) -> None:
    """Create the ModelDeployment controller from the operator's client and settings; start its workers."""
    controller = ModelDeploymentController(api=memo["api"], settings=memo["settings"])
    controller.start()
    memo["modeldeployments"] = controller


@kopf.on.cleanup()
async def stop_modeldeployment_controller(memo: kopf.Memo, **_: Any) -> None:
    """Stop the workers when the operator stops."""
    controller = memo.get("modeldeployments")
    if isinstance(controller, ModelDeploymentController):
        await controller.stop()


@kopf.index(v1alpha1.GROUP, v1alpha1.VERSION, "modeldeployments")
def modeldeployments_by_job(spec: kopf.Spec, name: str, namespace: str | None, **_: Any) -> dict[Key, str] | None:
    """Index: (namespace, FineTuneJob name) -> ModelDeployments serving its artifact."""
    ref = (spec.get("model") or {}).get("fineTuneJobRef") or {}
    return {(namespace or "", ref["name"]): name} if ref.get("name") else None


@kopf.on.event(v1alpha1.GROUP, v1alpha1.VERSION, "modeldeployments")
async def modeldeployment_event(type: str, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """A ModelDeployment was created, changed (spec, annotations) or deleted: queue it."""
    controller = controller_of(memo)
    key = (namespace or "", name)
    if type == "DELETED":
        controller.queue.discard(key)
    else:
        controller.queue.add(key)


@kopf.on.event("batch", "v1", "jobs", labels={serving_meta.MODELDEPLOYMENT_LABEL: kopf.PRESENT})
async def modeldeployment_job_event(meta: kopf.Meta, namespace: str | None, memo: Any, **_: Any) -> None:
    """A build or smoke-test Job changed (started, completed, failed): queue its ModelDeployment."""
    owner = _owner_name(meta)
    if owner:
        controller_of(memo).queue.add((namespace or "", owner))


@kopf.on.event("apps", "v1", "deployments", labels={serving_meta.MODELDEPLOYMENT_LABEL: kopf.PRESENT})
async def modeldeployment_triton_event(meta: kopf.Meta, namespace: str | None, memo: Any, **_: Any) -> None:
    """The Triton Deployment changed (pods ready, rollout done or stuck): queue its ModelDeployment."""
    owner = _owner_name(meta)
    if owner:
        controller_of(memo).queue.add((namespace or "", owner))


@kopf.on.event(v1alpha1.GROUP, v1alpha1.VERSION, "finetunejobs")
async def modeldeployment_model_event(
    name: str,
    namespace: str | None,
    memo: Any,
    modeldeployments_by_job: kopf.Index[Key, str] | None = None,
    **_: Any,
) -> None:
    """A FineTuneJob changed (e.g. it succeeded): queue the ModelDeployments that serve it."""
    if modeldeployments_by_job is None:
        return
    key = (namespace or "", name)
    controller = controller_of(memo)
    for deployment in modeldeployments_by_job.get(key, []):
        controller.queue.add((key[0], deployment))
