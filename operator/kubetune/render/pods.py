"""Pod templates of the prepare, train and evaluate Jobs: what every trainer pod shares.

All pods run the same trainer image as a non-root user with a read-only root filesystem, read
the ConfigMap at ``/etc/kubetune``, see pvc:// locations mounted under
``v1alpha1.PVC_MOUNT_ROOT`` and get credentials only by reference (``secretKeyRef`` env vars
and Secret volumes), so no secret value ever appears in a manifest the operator writes.
"""

from __future__ import annotations

from typing import Any

from kubetune.api import v1alpha1
from kubetune.render import config, names
from kubetune.render.context import Context

#: uid/gid the trainer runs as (the image's non-root user).
USER_ID = 1000
#: Where Secret volumes of baseModel/dataset/output secretRefs are mounted (one directory each).
SECRETS_ROOT = "/var/run/secrets/kubetune"
#: Writable scratch space (HOME, Hugging Face and torch caches); the root filesystem is read-only.
SCRATCH_DIR = "/tmp"
#: Seconds a pod may take to save a checkpoint after SIGTERM (suspend, deletion).
TERMINATION_GRACE_SECONDS = 120

#: Env var -> key of a Hugging Face token Secret; all required.
HF_SECRET_KEYS = {"HF_TOKEN": "HF_TOKEN"}
#: Env var -> (key of an S3 credentials Secret, optional).
S3_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": ("AWS_ACCESS_KEY_ID", False),
    "AWS_SECRET_ACCESS_KEY": ("AWS_SECRET_ACCESS_KEY", False),
    "AWS_SESSION_TOKEN": ("AWS_SESSION_TOKEN", True),
    "AWS_REGION": ("AWS_REGION", True),
    "AWS_ENDPOINT_URL": ("AWS_ENDPOINT_URL", True),
}


def pod_security_context() -> dict[str, Any]:
    """Pod-level security: non-root, RuntimeDefault seccomp (passes Pod Security 'restricted')."""
    return {
        "runAsNonRoot": True,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "fsGroup": USER_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Container-level security: no privilege escalation, no capabilities, read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }


def _secret_refs(ctx: Context) -> list[tuple[str, str, str]]:
    """(role, Secret name, URI scheme) of every secretRef in the spec."""
    spec = ctx.spec
    refs = [
        ("base-model", spec.base_model.secret_ref, ctx.base_model_uri),
        ("dataset", spec.dataset.secret_ref, spec.dataset.uri),
        ("output", spec.output.secret_ref, spec.output.uri),
    ]
    return [(role, ref.name, v1alpha1.parse_uri(uri).scheme) for role, ref, uri in refs if ref is not None]


def credential_env(ctx: Context) -> list[dict[str, Any]]:
    """Credentials as env vars read from Secrets by reference.

    ``HF_TOKEN`` comes from the base model's Secret (else the dataset's) when that source is
    hf://; ``AWS_*`` from the output's Secret (else the dataset's, else the base model's) when
    that location is s3://. Required keys use ``optional: false``, so a missing key stops the
    pod before it starts instead of failing later with a confusing authentication error.

    Args:
        ctx: the job being rendered.

    Returns:
        ``env`` entries with ``valueFrom.secretKeyRef`` only.
    """
    refs = _secret_refs(ctx)
    env: list[dict[str, Any]] = []
    hf = [name for role, name, scheme in refs if scheme == "hf" and role in ("base-model", "dataset")]
    if hf:
        env += [_secret_env(var, hf[0], key, optional=False) for var, key in HF_SECRET_KEYS.items()]
    by_role = {role: name for role, name, scheme in refs if scheme == "s3"}
    s3 = [by_role[role] for role in ("output", "dataset", "base-model") if role in by_role]
    if s3:
        env += [_secret_env(var, s3[0], key, optional) for var, (key, optional) in S3_SECRET_KEYS.items()]
    return env


def source_credential_env(uri: str, secret: str | None) -> list[dict[str, Any]]:
    """Credentials to read one hf:// or s3:// location, from its Secret by reference.

    Args:
        uri: the location.
        secret: the Secret named by its ``secretRef`` (None: anonymous access).

    Returns:
        ``HF_TOKEN`` for hf://, ``AWS_*`` for s3:// (``valueFrom.secretKeyRef`` only); nothing
        for pvc:// or without a Secret.
    """
    scheme = v1alpha1.parse_uri(uri).scheme
    if secret is None:
        return []
    if scheme == "hf":
        return [_secret_env(var, secret, key, optional=False) for var, key in HF_SECRET_KEYS.items()]
    if scheme == "s3":
        return [_secret_env(var, secret, key, optional) for var, (key, optional) in S3_SECRET_KEYS.items()]
    return []


def _secret_env(var: str, secret: str, key: str, optional: bool) -> dict[str, Any]:
    return {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}}}


def _claims(ctx: Context) -> list[tuple[str, bool]]:
    """(claim, read_only) of every pvc:// location, in a stable order, each claim once."""
    output_claim = _claim_of(ctx.spec.output.uri)
    claims: list[tuple[str, bool]] = []
    for uri in (ctx.base_model_uri, ctx.spec.dataset.uri, ctx.spec.output.uri):
        claim = _claim_of(uri)
        if claim and claim not in [c for c, _ in claims]:
            claims.append((claim, claim != output_claim))
    return claims


def _claim_of(uri: str) -> str | None:
    parsed = v1alpha1.parse_uri(uri)
    return parsed.authority if parsed.scheme == "pvc" else None


def volumes_and_mounts(ctx: Context, shared_memory: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes of a trainer pod and where its container mounts them.

    Args:
        ctx: the job being rendered.
        shared_memory: mount a memory-backed ``/dev/shm`` of ``spec.resources.sharedMemory``
            (NCCL and data loader workers need more than the runtime's 64 MiB default).

    Returns:
        ``(volumes, volumeMounts)``.
    """
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": names.config_map(ctx.name)}},
        {"name": "scratch", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": config.CONFIG_DIR, "readOnly": True},
        {"name": "scratch", "mountPath": SCRATCH_DIR},
    ]
    if shared_memory:
        volumes.append(
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": ctx.spec.resources.shared_memory}}
        )
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    for index, (claim, read_only) in enumerate(_claims(ctx)):
        volume = f"pvc-{index}"
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        mounts.append({"name": volume, "mountPath": f"{v1alpha1.PVC_MOUNT_ROOT}/{claim}", "readOnly": read_only})
    for role, secret, _ in _secret_refs(ctx):
        volume = f"secret-{role}"
        volumes.append({"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440}})
        mounts.append({"name": volume, "mountPath": f"{SECRETS_ROOT}/{role}", "readOnly": True})
    return volumes, mounts


def base_env(ctx: Context, component: str) -> list[dict[str, Any]]:
    """Environment shared by every trainer container.

    Args:
        ctx: the job being rendered.
        component: prepare, train or evaluate.

    Returns:
        ``env`` entries: config locations, scratch directories, the pod's identity, credentials.
    """
    env: list[dict[str, Any]] = [
        {"name": "KUBETUNE_CONFIG", "value": config.CONFIG_PATH},
        {"name": "KUBETUNE_COMPONENT", "value": component},
        {"name": "HOME", "value": SCRATCH_DIR},
        {"name": "HF_HOME", "value": f"{SCRATCH_DIR}/huggingface"},
        {"name": "TORCH_EXTENSIONS_DIR", "value": f"{SCRATCH_DIR}/torch_extensions"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    if ctx.spec.uses_deepspeed():
        env.append({"name": "KUBETUNE_DEEPSPEED_CONFIG", "value": config.DEEPSPEED_PATH})
    return env + credential_env(ctx)


def scheduling(ctx: Context) -> dict[str, Any]:
    """Node selector, tolerations and priority class of the GPU pods (train and evaluate)."""
    resources = ctx.spec.resources
    out: dict[str, Any] = {}
    if resources.node_selector:
        out["nodeSelector"] = dict(resources.node_selector)
    if resources.tolerations:
        out["tolerations"] = [t.to_k8s() for t in resources.tolerations]
    if resources.priority_class_name:
        out["priorityClassName"] = resources.priority_class_name
    return out


def pod_template(
    ctx: Context,
    component: str,
    container: dict[str, Any],
    *,
    shared_memory: bool,
    pod_labels: dict[str, str] | None = None,
    pod_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The pod template of one of the job's Jobs.

    Args:
        ctx: the job being rendered.
        component: prepare, train or evaluate.
        container: the container's name, command, args, env and resources; volume mounts,
            image and security context are added here.
        shared_memory: whether to mount a memory-backed /dev/shm.
        pod_labels: labels beyond the standard ones (e.g. the attempt).
        pod_spec: extra pod spec fields (scheduling, subdomain).

    Returns:
        A ``template`` for a Job spec.
    """
    volumes, mounts = volumes_and_mounts(ctx, shared_memory)
    full_container = {
        "image": ctx.image,
        "imagePullPolicy": ctx.image_pull_policy,
        **container,
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
    }
    meta_labels = {**ctx.extra_pod_labels.get(component, {}), **names.child_labels(ctx.name, component)}
    meta_labels.update(pod_labels or {})
    metadata: dict[str, Any] = {"labels": meta_labels}
    if ctx.extra_pod_annotations.get(component):
        metadata["annotations"] = dict(ctx.extra_pod_annotations[component])
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": names.service_account(ctx.name),
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security_context(),
        "containers": [full_container],
        "volumes": volumes,
        **(pod_spec or {}),
    }
    return {"metadata": metadata, "spec": spec}
