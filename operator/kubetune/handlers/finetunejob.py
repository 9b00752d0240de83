"""kopf handlers of FineTuneJobs and the reconcile each key goes through.

The handlers are deliberately tiny: a watch event on a FineTuneJob, or on one of its Jobs,
only puts the job's key on the work queue. A worker then reconciles the key the same way
every time, whatever woke it: read the FineTuneJob and its child Jobs fresh from the API server,
let :func:`kubetune.reconcile.finetunejob.decide` choose, render what must be created
(:mod:`kubetune.render`), apply it, write the status subresource, post events. kopf's change
tracking (annotations, finalizers) is not used: every decision derives from observed state,
which is what survives a SIGKILL.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic

from kubetune import metrics
from kubetune.api import v1alpha1
from kubetune.api.v1alpha1 import labels
from kubetune.handlers.workqueue import WorkQueue
from kubetune.kube import client as kube_client
from kubetune.kube import errors, events
from kubetune.reconcile import finetunejob as lifecycle
from kubetune.reconcile import observed as observation
from kubetune.reconcile import reasons
from kubetune.reconcile import status as status_patch
from kubetune.render import config as render_config
from kubetune.render import context as render_context
from kubetune.render import deploy as render_deploy
from kubetune.render import jobs as render_jobs
from kubetune.render import names as render_names
from kubetune.render import rbac as render_rbac
from kubetune.settings import Settings

log = logging.getLogger(__name__)

#: (namespace, name) of a FineTuneJob.
Key = tuple[str, str]
#: Field manager of the objects the operator server-side applies.
FIELD_MANAGER = "kubetune-operator"
#: Annotation on the ConfigMap recording the resolved base model URI (for ``fineTuneJobRef``).
BASE_MODEL_ANNOTATION = "kubetune.dev/base-model-uri"
#: Seconds to wait before looking again at a child that is being deleted.
DELETION_RETRY_SECONDS = 2.0
#: Seconds before a key is looked at again by a replica that lost the Lease (it exits before).
NOT_LEADER_RETRY_SECONDS = 5.0
#: Seconds to wait before retrying when a child name is taken by an object we do not own.
CONFLICT_RETRY_SECONDS = 30.0


class ChildPending(Exception):  # noqa: N818 - a state, not an error
    """A child cannot be created yet; reconcile again later.

    Either its predecessor of the same name is being deleted, or the name is taken by an object
    another owner controls (a conflict the user must resolve).
    """

    def __init__(self, message: str, retry_after: float, conflict: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.conflict = conflict


class ChildRejected(Exception):  # noqa: N818 - a verdict, like the API's
    """The API server refused a child as malformed or invalid; only a spec change can help."""


def _lenient_status(raw: Mapping[str, Any] | None) -> v1alpha1.FineTuneJobStatus:
    """The status as a model; fields that do not validate (a buggy writer) are dropped, not fatal."""
    raw = dict(raw or {})
    while True:
        try:
            return v1alpha1.FineTuneJobStatus.model_validate(raw)
        except pydantic.ValidationError as err:
            bad = {str(problem["loc"][0]) for problem in err.errors() if problem["loc"]}
            if not bad or not bad & set(raw):
                return v1alpha1.FineTuneJobStatus()
            log.warning("ignoring invalid status fields %s", sorted(bad))
            raw = {k: v for k, v in raw.items() if k not in bad}


@dataclasses.dataclass
class FineTuneJobController:
    """Reconciles FineTuneJobs from a work queue.

    Attributes:
        api: the API client.
        settings: the operator settings.
        queue: keys of FineTuneJobs to reconcile.
    """

    api: kube_client.Client
    settings: Settings
    queue: WorkQueue[Key] = dataclasses.field(default_factory=WorkQueue)
    #: resourceVersion of each FineTuneJob as our last status write left it.
    written: dict[Key, str] = dataclasses.field(default_factory=dict)
    #: (state, deleting) of each child Job as last seen in a watch event, by (namespace, Job name).
    job_states: dict[Key, tuple[str, bool]] = dataclasses.field(default_factory=dict)
    #: Prepare pods seen succeeded in a watch event, by (namespace, pod name).
    succeeded_prepare_pods: set[Key] = dataclasses.field(default_factory=set)
    #: The last reconcile error reported as an Event, per FineTuneJob (one Event per distinct error).
    reported_errors: dict[Key, str] = dataclasses.field(default_factory=dict)
    #: Whether this replica may act now (it holds the leader Lease); checked before every reconcile.
    may_act: Callable[[], bool] = lambda: True

    def finetunejob_changed(self, key: Key, resource_version: str | None, deleted: bool) -> bool:
        """Record a FineTuneJob watch event; return whether it needs a reconcile.

        The event caused by our own status write shows exactly the state we decided on, so
        reconciling it again would only repeat the same reads.
        """
        if deleted:
            self.written.pop(key, None)
            self.queue.discard(key)
            return False
        return resource_version is None or self.written.get(key) != resource_version

    def job_changed(self, key: Key, body: Mapping[str, Any], deleted: bool) -> bool:
        """Record a child Job watch event; return whether its owner needs a reconcile.

        The Job controller updates a Job's status several times per pod (active counts, pod
        tracking); only a change of what the decision reads (queued/active/finished, deleting)
        matters.
        """
        if deleted:
            self.job_states.pop(key, None)
            return True
        state, _ = observation.job_state(body)
        summary = (state.value, bool((body.get("metadata") or {}).get("deletionTimestamp")))
        if self.job_states.get(key) == summary:
            return False
        self.job_states[key] = summary
        return True

    def prepare_pod_changed(self, key: Key, body: Mapping[str, Any], deleted: bool) -> bool:
        """Record a prepare pod watch event; return whether its owner needs a reconcile.

        Only the pod's success matters: the data is ready and the train Job can be created
        without waiting for the Job controller to count the pod.
        """
        if deleted:
            self.succeeded_prepare_pods.discard(key)
            return False
        if (body.get("status") or {}).get("phase") != "Succeeded" or key in self.succeeded_prepare_pods:
            return False
        self.succeeded_prepare_pods.add(key)
        return True

    async def reconcile(self, key: Key) -> float | None:
        """Reconcile one FineTuneJob (the work queue's reconciler).

        Args:
            key: (namespace, name).

        Returns:
            Seconds until it must be reconciled again, or None.
        """
        if not self.may_act():
            # A leader that was frozen (SIGSTOP, a long pause) past its renew deadline must not
            # act on what it queued before: another replica may lead now. It is about to exit.
            log.warning("not the leader any more; not reconciling %s/%s", *key)
            return NOT_LEADER_RETRY_SECONDS
        started = time.perf_counter()
        result = "error"
        try:
            requeue = await self._reconcile(*key)
            result = "success"
            self.reported_errors.pop(key, None)
            return requeue
        except ChildPending as pending:
            result = "pending"
            log.info("%s/%s: %s", *key, pending)
            return pending.retry_after
        except errors.ApiError as err:
            await self._report_error(key, err)
            raise  # retried with the work queue's back-off
        finally:
            metrics.RECONCILE_DURATION.labels("FineTuneJob", result).observe(time.perf_counter() - started)
            metrics.WORKQUEUE_DEPTH.labels("FineTuneJob").set(len(self.queue))

    async def _report_error(self, key: Key, err: errors.ApiError) -> None:
        """Post a Warning Event about a failing reconcile, once per distinct error."""
        message = f"reconciling failed, retrying with back-off: {err}"
        if self.reported_errors.get(key) == message:
            return
        self.reported_errors[key] = message
        involved = {
            "apiVersion": v1alpha1.API_VERSION,
            "kind": "FineTuneJob",
            "metadata": {"name": key[1], "namespace": key[0]},
        }
        await events.post(self.api, involved, "Warning", reasons.RECONCILE_ERROR, message)

    async def _reconcile(self, namespace: str, name: str) -> float | None:
        try:
            body = await self.api.get(kube_client.FINETUNEJOBS, name, namespace)
        except errors.NotFound:
            return None
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None  # the garbage collector removes the children
        now = datetime.now(UTC).replace(microsecond=0)
        current = _lenient_status(body.get("status"))
        generation = int(meta.get("generation") or 1)
        try:
            spec = v1alpha1.FineTuneJobSpec.model_validate(body.get("spec") or {})
            extra_labels, extra_annotations = render_context.pod_overrides(meta.get("annotations") or {})
        except (pydantic.ValidationError, render_context.PodOverrideError) as err:
            decision = lifecycle.invalid_spec(current, generation, v1alpha1.describe_errors(err, prefix="spec."), now)
            await self._write(body, decision)
            return None
        subject = lifecycle.Subject(name, namespace, generation, spec, current)
        decision = lifecycle.decide(subject, await self._observe(body, spec, current), now)
        ctx = render_context.Context(
            owner=render_names.Owner(name, namespace, meta["uid"]),
            spec=spec,
            image=spec.image or self.settings.trainer_image,
            base_model_uri=spec.base_model.uri or "",
            image_pull_policy=self.settings.image_pull_policy,
            prepare_cpu=self.settings.prepare_cpu,
            prepare_memory=self.settings.prepare_memory,
            extra_pod_labels=extra_labels,
            extra_pod_annotations=extra_annotations,
        )
        try:
            for action in decision.actions:
                if await self._act(action, ctx, body):
                    return None  # the FineTuneJob itself was deleted
        except ChildPending as pending:
            if pending.conflict:
                await events.post(self.api, body, "Warning", reasons.CHILD_CONFLICT, str(pending))
            raise
        except ChildRejected as err:
            # The API server rejects what the spec asks for (e.g. a malformed resource quantity):
            # retrying cannot help until the user changes the spec.
            rejected = lifecycle.invalid_spec(current, generation, str(err), now)
            await self._write(body, rejected)
            if not rejected.events:  # already finished (a spec.deploy edit): still say so
                await events.post(self.api, body, "Warning", reasons.INVALID_SPEC, str(err))
            return None
        await self._write(body, decision)
        return decision.requeue_after

    # -- observing ---------------------------------------------------------------------

    async def _observe(
        self, body: Mapping[str, Any], spec: v1alpha1.FineTuneJobSpec, status: v1alpha1.FineTuneJobStatus
    ) -> observation.Observed:
        meta = body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        jobs = await self.api.list(kube_client.JOBS, namespace, label_selector=f"{labels.FINETUNEJOB}={name}")
        pods_by_job: dict[str, list[dict[str, Any]]] = {}
        if status.phase not in lifecycle.TERMINAL_PHASES:
            for job_name in _jobs_whose_pods_matter(jobs, uid):
                pods_by_job[job_name] = await self.api.list(
                    kube_client.PODS, namespace, label_selector=f"{labels.JOB_NAME}={job_name}"
                )
        base_job = None
        ref = spec.base_model.fine_tune_job_ref
        if ref is not None and status.start_time is None:
            base_job = await self._base_job(namespace, ref.name)
        return observation.Observed(observation.summarise_jobs(jobs, uid, pods_by_job), base_job)

    async def _base_job(self, namespace: str, name: str) -> observation.BaseJob:
        try:
            base = await self.api.get(kube_client.FINETUNEJOBS, name, namespace)
        except errors.NotFound:
            return observation.BaseJob(found=False)
        status = base.get("status") or {}
        return observation.BaseJob(
            found=True, phase=status.get("phase"), artifact_uri=(status.get("artifact") or {}).get("uri")
        )

    # -- acting ------------------------------------------------------------------------

    async def _act(self, action: lifecycle.Action, ctx: render_context.Context, body: Mapping[str, Any]) -> bool:
        """Carry out one action; True when the FineTuneJob itself was deleted."""
        match action:
            case lifecycle.CreateJob(step=observation.Step.PREPARE):
                if action.base_model_uri is not None:
                    ctx = dataclasses.replace(ctx, base_model_uri=action.base_model_uri)
                    await self._ensure_base_children(ctx)
                else:
                    ctx = await self._with_recorded_base(ctx)
                await self._ensure(render_jobs.prepare_job(ctx, action.deadline_seconds))
            case lifecycle.CreateJob(step=observation.Step.TRAIN):
                ctx = await self._with_recorded_base(ctx)
                if ctx.spec.resources.nodes > 1:
                    await self._ensure(render_jobs.train_service(ctx))
                job = render_jobs.train_job(ctx, action.attempt, action.resume_from, action.deadline_seconds)
                await self._ensure(job)
            case lifecycle.CreateJob(step=observation.Step.EVALUATE):
                ctx = await self._with_recorded_base(ctx)
                await self._ensure(render_jobs.evaluate_job(ctx, action.deadline_seconds))
            case lifecycle.DeleteJob(name=job_name):
                await self._delete(kube_client.JOBS, job_name, ctx.namespace, "Foreground")
            case lifecycle.ApplyDeployment():
                await self._apply_deployment(ctx)
            case lifecycle.DeleteSelf():
                await self._delete(kube_client.FINETUNEJOBS, ctx.name, ctx.namespace, "Background", ctx.owner.uid)
                await events.post(
                    self.api, body, "Normal", reasons.TTL_EXPIRED, "deleted after ttlSecondsAfterFinished"
                )
                return True
        return False

    async def _ensure_base_children(self, ctx: render_context.Context) -> None:
        """The ConfigMap, ServiceAccount, Role and RoleBinding every pod of the job needs."""
        config_map = render_config.config_map(ctx)
        config_map["metadata"]["annotations"] = {BASE_MODEL_ANNOTATION: ctx.base_model_uri}
        for manifest in (
            config_map,
            render_rbac.service_account(ctx),
            render_rbac.role(ctx),
            render_rbac.role_binding(ctx),
        ):
            await self._ensure(manifest)

    async def _with_recorded_base(self, ctx: render_context.Context) -> render_context.Context:
        """For ``fineTuneJobRef``, the base model resolved at start, as recorded on the ConfigMap."""
        if ctx.spec.base_model.fine_tune_job_ref is None:
            return ctx
        try:
            config_map = await self.api.get(kube_client.CONFIGMAPS, render_names.config_map(ctx.name), ctx.namespace)
        except errors.NotFound as err:
            raise ChildPending(f"ConfigMap {render_names.config_map(ctx.name)} is missing", 30.0) from err
        recorded = ((config_map.get("metadata") or {}).get("annotations") or {}).get(BASE_MODEL_ANNOTATION)
        return dataclasses.replace(ctx, base_model_uri=recorded) if recorded else ctx

    async def _ensure(self, manifest: dict[str, Any]) -> None:
        """Create a child, or adopt the existing one if we control it (create-or-adopt).

        Raises:
            ChildPending: an object of that name is being deleted, or belongs to another owner.
            ChildRejected: the API server refused the manifest (400/422).
        """
        resource = kube_client.resource_of(manifest)
        meta = manifest["metadata"]
        try:
            await self.api.create(resource, manifest)
            log.info("created %s %s/%s", resource.kind, meta["namespace"], meta["name"])
            return
        except errors.AlreadyExists:
            pass
        except errors.REJECTED as err:
            raise ChildRejected(f"the API server rejected {resource.kind} {meta['name']}: {err.message}") from err
        existing = await self.api.get(resource, meta["name"], meta["namespace"])
        owner_uid = meta["ownerReferences"][0]["uid"]
        if existing.get("metadata", {}).get("deletionTimestamp"):
            raise ChildPending(f"{resource.kind} {meta['name']} is being deleted", DELETION_RETRY_SECONDS)
        if not observation.controlled_by(existing, owner_uid):
            raise ChildPending(
                f"{resource.kind} {meta['name']} exists but is not controlled by this FineTuneJob; delete or rename it",
                CONFLICT_RETRY_SECONDS,
                conflict=True,
            )

    async def _delete(
        self, resource: kube_client.Resource, name: str, namespace: str, propagation: str, uid: str | None = None
    ) -> None:
        try:
            await self.api.delete(resource, name, namespace, propagation=propagation, uid=uid)
            log.info("deleted %s %s/%s", resource.kind, namespace, name)
        except (errors.NotFound, errors.Conflict):
            pass  # already gone (or replaced by a new object with another uid)

    async def _apply_deployment(self, ctx: render_context.Context) -> None:
        manifest = render_deploy.model_deployment(ctx)
        if manifest is None:
            return
        try:
            await self._server_side_apply(manifest, ctx.namespace)
        except errors.REJECTED as err:
            name = manifest["metadata"]["name"]
            raise ChildRejected(f"the API server rejected ModelDeployment {name}: {err.message}") from err
        log.info("applied ModelDeployment %s/%s", ctx.namespace, manifest["metadata"]["name"])

    async def _server_side_apply(self, manifest: dict[str, Any], namespace: str) -> None:
        await self.api.patch(
            kube_client.MODELDEPLOYMENTS,
            manifest["metadata"]["name"],
            manifest,
            namespace,
            patch_type="apply",
            field_manager=FIELD_MANAGER,
            force=True,
        )

    async def _write(self, body: Mapping[str, Any], decision: lifecycle.Decision) -> None:
        """Write the status (only changed operator fields), then post the decision's events."""
        meta = body["metadata"]
        patch = status_patch.status_patch(body.get("status"), decision.status)
        if patch:
            written = await self.api.patch(
                kube_client.FINETUNEJOBS, meta["name"], patch, meta["namespace"], subresource="status"
            )
            version = (written.get("metadata") or {}).get("resourceVersion")
            if version:
                self.written[(meta["namespace"], meta["name"])] = version
        for event in decision.events:
            await events.post(self.api, body, event.type, event.reason, event.message)


def _jobs_whose_pods_matter(jobs: list[dict[str, Any]], owner_uid: str) -> list[str]:
    """Names of the Jobs whose pods the decision needs.

    The failed ones that explain the current state (prepare, evaluate, the latest train attempt),
    and a running prepare Job: its pod's success is the data being ready
    (:func:`kubetune.reconcile.observed.summarise_job`).
    """
    latest_train: tuple[int, str] | None = None
    names: list[str] = []
    for job in jobs:
        if not observation.controlled_by(job, owner_uid):
            continue
        meta = job.get("metadata") or {}
        job_labels = meta.get("labels") or {}
        state, _ = observation.job_state(job)
        if state == observation.JobState.ACTIVE and job_labels.get(labels.COMPONENT) == render_names.PREPARE:
            if not meta.get("deletionTimestamp"):
                names.append(meta["name"])
            continue
        if state != observation.JobState.FAILED:
            continue
        if job_labels.get(labels.COMPONENT) == render_names.TRAIN:
            attempt = int(job_labels.get(labels.ATTEMPT, "0") or 0)
            if latest_train is None or attempt > latest_train[0]:
                latest_train = (attempt, meta["name"])
        else:
            names.append(meta["name"])
    if latest_train is not None:
        names.append(latest_train[1])
    return names


# -- kopf handlers ---------------------------------------------------------------------


def controller_of(memo: Any) -> FineTuneJobController:
    """The controller the operator put into kopf's memo."""
    controller = memo.get("finetunejobs")
    if not isinstance(controller, FineTuneJobController):
        raise RuntimeError("the FineTuneJob controller is missing from the operator memo")
    return controller


@kopf.index(v1alpha1.GROUP, v1alpha1.VERSION, "finetunejobs")
def finetunejobs_by_base(spec: kopf.Spec, name: str, namespace: str | None, **_: Any) -> dict[Key, str] | None:
    """Index: (namespace, base job name) -> jobs that continue from it (``baseModel.fineTuneJobRef``)."""
    ref = (spec.get("baseModel") or {}).get("fineTuneJobRef") or {}
    return {(namespace or "", ref["name"]): name} if ref.get("name") else None


@kopf.on.event(v1alpha1.GROUP, v1alpha1.VERSION, "finetunejobs")
async def finetunejob_event(
    type: str,
    name: str,
    namespace: str | None,
    meta: kopf.Meta,
    status: kopf.Status,
    memo: Any,
    finetunejobs_by_base: kopf.Index[Key, str] | None = None,
    **_: Any,
) -> None:
    """A FineTuneJob changed: queue it, and the jobs waiting for it as their base model."""
    controller = controller_of(memo)
    key = (namespace or "", name)
    deleted = type == "DELETED"
    if deleted:
        metrics.FINETUNEJOB_PHASES.forget(*key)
    else:
        metrics.FINETUNEJOB_PHASES.set(*key, status.get("phase"))
    if controller.finetunejob_changed(key, meta.get("resourceVersion"), deleted):
        controller.queue.add(key)
    dependents: list[str] = list(finetunejobs_by_base.get(key, [])) if finetunejobs_by_base is not None else []
    for dependent in dependents:
        controller.queue.add((key[0], dependent))


@kopf.on.event("batch", "v1", "jobs", labels={labels.FINETUNEJOB: kopf.PRESENT, labels.MANAGED_BY: labels.APP})
async def child_job_event(
    type: str, body: kopf.Body, meta: kopf.Meta, namespace: str | None, memo: Any, **_: Any
) -> None:
    """One of a FineTuneJob's Jobs changed (pods started, finished, failed): queue its owner."""
    controller = controller_of(memo)
    if controller.job_changed((namespace or "", meta.name or ""), body, type == "DELETED"):
        controller.queue.add((namespace or "", meta.labels[labels.FINETUNEJOB]))


@kopf.on.event(
    "",
    "v1",
    "pods",
    labels={labels.FINETUNEJOB: kopf.PRESENT, labels.MANAGED_BY: labels.APP, labels.COMPONENT: render_names.PREPARE},
)
async def prepare_pod_event(
    type: str, body: kopf.Body, meta: kopf.Meta, namespace: str | None, memo: Any, **_: Any
) -> None:
    """A prepare pod changed: when it has succeeded, queue its owner (the data is ready)."""
    controller = controller_of(memo)
    if controller.prepare_pod_changed((namespace or "", meta.name or ""), body, type == "DELETED"):
        controller.queue.add((namespace or "", meta.labels[labels.FINETUNEJOB]))
