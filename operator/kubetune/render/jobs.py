"""The prepare, train and evaluate Jobs of a FineTuneJob, and the train Service.

Topology follows the method and ``spec.resources``: one process for a single-GPU run, one pod
with ``torchrun --nproc_per_node=G`` for a multi-GPU node, and for ``nodes > 1`` an Indexed
Job whose completion index is the node rank, with the rendezvous on pod 0 reached through a
headless Service. Every Job has ``backoffLimit: 0``: retries are the operator's, because only
it knows which checkpoint the next attempt resumes from.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1 import labels
from kubetune.render import config, names, pods
from kubetune.render.context import Context

#: torchrun's rendezvous port on pod 0 of a multi-node train Job.
RENDEZVOUS_PORT = 29500
#: The annotation Kubernetes sets on each pod of an Indexed Job to its completion index.
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

TRAINER = ["python", "-m", "kubetune_trainer"]


def _job(
    ctx: Context,
    name: str,
    component: str,
    template: dict[str, Any],
    deadline_seconds: int | None,
    job_labels: dict[str, str] | None = None,
    spec_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Wrap a pod template into a Job with our metadata, Kueue label and deadline."""
    metadata = names.metadata(ctx.owner, name, component)
    metadata["labels"].update(job_labels or {})
    spec: dict[str, Any] = {"backoffLimit": 0, "template": template, **(spec_extra or {})}
    if deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = max(1, int(deadline_seconds))
    if ctx.spec.queue_name:
        # Kueue admits a Job by unsuspending it; it must be created suspended.
        metadata["labels"][labels.KUEUE_QUEUE_NAME] = ctx.spec.queue_name
        spec["suspend"] = True
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def prepare_job(ctx: Context, deadline_seconds: int | None = None) -> dict[str, Any]:
    """The CPU-only Job that cleans, redacts, deduplicates, balances, splits and tokenizes.

    Args:
        ctx: the job being rendered.
        deadline_seconds: ``activeDeadlineSeconds`` (what is left of the FineTuneJob's deadline).

    Returns:
        The Job ``<name>-prepare``.
    """
    container = {
        "name": names.PREPARE,
        "command": [*TRAINER, "prepare", "--config", config.CONFIG_PATH],
        "env": pods.base_env(ctx, names.PREPARE),
        "resources": {
            "requests": {"cpu": ctx.prepare_cpu, "memory": ctx.prepare_memory},
            "limits": {"memory": ctx.prepare_memory},
        },
    }
    template = pods.pod_template(ctx, names.PREPARE, container, shared_memory=False)
    return _job(ctx, names.prepare_job(ctx.name), names.PREPARE, template, deadline_seconds)


def train_command(ctx: Context, job_name: str, resume_from: str | None) -> list[str]:
    """The train container's command line for the spec's topology.

    Args:
        ctx: the job being rendered.
        job_name: the train Job's name (pod 0's hostname derives from it).
        resume_from: ``--resume`` value: a checkpoint path, ``auto``, or None for a fresh start.

    Returns:
        ``python -m kubetune_trainer train ...`` for one process, else a ``torchrun`` command.
    """
    resources = ctx.spec.resources
    trainer_args = ["train", "--config", config.CONFIG_PATH]
    if resume_from:
        trainer_args += ["--resume", resume_from]
    if ctx.spec.world_size() == 1:
        return [*TRAINER, *trainer_args]
    per_node = max(1, resources.gpus_per_node)
    if resources.nodes == 1:
        launcher = ["torchrun", "--standalone", "--nnodes=1", f"--nproc_per_node={per_node}"]
    else:
        launcher = [
            "torchrun",
            f"--nnodes={resources.nodes}",
            f"--nproc_per_node={per_node}",
            "--node_rank=$(NODE_RANK)",
            f"--master_addr={job_name}-0.{names.train_service(ctx.name)}",
            f"--master_port={RENDEZVOUS_PORT}",
        ]
    return [*launcher, "-m", "kubetune_trainer", *trainer_args]


def _gpu_resources(ctx: Context, gpus: int) -> dict[str, Any]:
    resources = ctx.spec.resources
    requests: dict[str, Any] = {"cpu": resources.cpu, "memory": resources.memory}
    limits: dict[str, Any] = {"memory": resources.memory}
    if gpus > 0:
        requests[resources.gpu_resource_name] = gpus
        limits[resources.gpu_resource_name] = gpus
    return {"requests": requests, "limits": limits}


def train_job(
    ctx: Context, attempt: int, resume_from: str | None = None, deadline_seconds: int | None = None
) -> dict[str, Any]:
    """The Job of one train attempt.

    Args:
        ctx: the job being rendered.
        attempt: 1 for the first attempt; retries and resumes count up.
        resume_from: checkpoint to resume from (``auto``: the latest the trainer finds).
        deadline_seconds: ``activeDeadlineSeconds`` (what is left of the FineTuneJob's deadline).

    Returns:
        The Job ``<name>-train-<attempt>``; an Indexed Job when ``nodes > 1``.
    """
    resources = ctx.spec.resources
    name = names.train_job(ctx.name, attempt, resources.nodes)
    env = pods.base_env(ctx, names.TRAIN)
    env.append({"name": "KUBETUNE_ATTEMPT", "value": str(attempt)})
    pod_spec = pods.scheduling(ctx)
    spec_extra: dict[str, Any] = {}
    if resources.nodes > 1:
        env.append(
            {
                "name": "NODE_RANK",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}},
            }
        )
        pod_spec["subdomain"] = names.train_service(ctx.name)
        spec_extra = {"completionMode": "Indexed", "completions": resources.nodes, "parallelism": resources.nodes}
    container = {
        "name": names.TRAIN,
        "command": train_command(ctx, name, resume_from),
        "env": env,
        "resources": _gpu_resources(ctx, resources.gpus_per_node),
    }
    if resources.nodes > 1:
        container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}]
    attempt_label = {labels.ATTEMPT: str(attempt)}
    template = pods.pod_template(
        ctx, names.TRAIN, container, shared_memory=True, pod_labels=attempt_label, pod_spec=pod_spec
    )
    return _job(ctx, name, names.TRAIN, template, deadline_seconds, attempt_label, spec_extra)


def evaluate_job(ctx: Context, deadline_seconds: int | None = None) -> dict[str, Any]:
    """The Job that evaluates the trained model and exports it, on one GPU.

    Evaluation runs in its own Job (phase Evaluating) rather than at the end of training, so
    a full fine-tune does not hold all its GPUs while one is enough to score the model.

    Args:
        ctx: the job being rendered.
        deadline_seconds: ``activeDeadlineSeconds`` (what is left of the FineTuneJob's deadline).

    Returns:
        The Job ``<name>-evaluate``.
    """
    steps = ["export"]
    if ctx.spec.evaluation.enabled:
        steps.insert(0, "evaluate")
    commands = [f"{' '.join(TRAINER)} {step} --config {config.CONFIG_PATH}" for step in steps]
    commands[-1] = f"exec {commands[-1]}"  # the last step's exit code is the pod's
    container = {
        "name": names.EVALUATE,
        "command": ["/bin/sh", "-c", " && ".join(commands)],
        "env": pods.base_env(ctx, names.EVALUATE),
        "resources": _gpu_resources(ctx, min(1, ctx.spec.resources.gpus_per_node)),
    }
    template = pods.pod_template(ctx, names.EVALUATE, container, shared_memory=True, pod_spec=pods.scheduling(ctx))
    return _job(ctx, names.evaluate_job(ctx.name), names.EVALUATE, template, deadline_seconds)


def train_service(ctx: Context) -> dict[str, Any]:
    """Headless Service giving multi-node train pods DNS names (``<job>-<index>.<service>``).

    ``publishNotReadyAddresses`` makes the names resolve while pods are still starting, which
    is exactly when torchrun's rendezvous needs them.

    Args:
        ctx: the job being rendered.

    Returns:
        The Service ``<name>-train``.
    """
    selector = {labels.FINETUNEJOB: ctx.name, labels.COMPONENT: names.TRAIN}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": names.metadata(ctx.owner, names.train_service(ctx.name), names.TRAIN),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
        },
    }
