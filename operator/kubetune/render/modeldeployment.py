"""Manifests of a ModelDeployment's children: build Job, Triton Deployment, Service, HPA, smoke test.

Why this module exists: what runs in the cluster for a revision is a pure function of the spec,
the revision and where its engine lives, so it is rendered here as plain dicts, without I/O, and
unit-tested field by field. The reconciler decides *which* revision to build, serve or test; the
handler calls these functions with its decision and applies the result.

Storage: a revision's Triton model repository is written to ``engines/<revision>`` next to the model
on the model's PersistentVolumeClaim, or under ``spec.engineStorage``. The claim is mounted at
``/mnt/pvc/<claim>`` in the build pod (read-write) and in the Triton pods (read-only), so the
absolute engine path written into the TensorRT-LLM configuration is valid in both.

The build Job first copies a model given by hf:// or s3:// next to the repository (an init
container running ``python -m kubetune_trainer serve fetch`` with the credentials of
``spec.model.secretRef``), then runs, for ``tensorrtllm``, an init container in the TensorRT-LLM build image (GPUs)
that converts/quantizes the checkpoint and runs ``trtllm-build`` (the script comes from
``kubetune_trainer.serve.engine``), then, for both backends, ``python -m kubetune_trainer serve build``
in the trainer image, which writes the repository atomically and reports its digest in the
container's termination message.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from kubetune_trainer.serve import engine as engine_commands

from kubetune.api import v1alpha1
from kubetune.render import pods
from kubetune.render import serving_meta as meta

#: Container ports of Triton (the Service maps spec.service ports onto these names).
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
#: Entry model of every repository kubetune writes (the ensemble for tensorrtllm).
MODEL_NAME = "llm"
#: Where the build pod finds the serving settings (a downward-API file of a pod annotation).
SPEC_ANNOTATION = "kubetune.dev/serving-spec"
SPEC_DIR = "/etc/kubetune"
SPEC_FILE = "serving-spec.json"
#: Scratch space; the root filesystem of every container is read-only.
SCRATCH_DIR = "/tmp"
#: Size of the memory-backed /dev/shm of Triton pods (python backend and MPI use shared memory).
SHARED_MEMORY = "1Gi"
#: Revisions of the Deployment kept as ReplicaSets (rollback uses the engine records, not these).
REVISION_HISTORY_LIMIT = 5
#: Retries of a failing build pod (engine builds are expensive and rarely flaky).
BUILD_BACKOFF_LIMIT = 1
#: Seconds added to the smoke test's own timeout for pod start-up before the Job is killed.
SMOKE_STARTUP_SECONDS = 60


@dataclass(frozen=True)
class Revision:
    """One revision as the renderers need it (the handler fills it from the reconciler's plan).

    Attributes:
        revision: the content hash.
        spec: the spec to render with (the revision's backend, quantization and engine settings).
        model_uri: the merged model the engine is built from (pvc://, hf:// or s3://).
        engine_uri: where the revision's model repository is written (pvc://).
        server_image: Triton image.
        build_image: TensorRT-LLM build image.
        trainer_image: kubetune trainer image (repository writer and smoke test).
        image_pull_policy: pull policy of every container.
        secret_name: Secret with the credentials to read an hf:// or s3:// model.
    """

    revision: str
    spec: v1alpha1.ModelDeploymentSpec
    model_uri: str
    engine_uri: str
    server_image: str
    build_image: str
    trainer_image: str
    image_pull_policy: str = "IfNotPresent"
    secret_name: str | None = None

    @property
    def repository(self) -> str:
        """The model repository's path inside the pods."""
        return v1alpha1.parse_uri(self.engine_uri).local_path()

    @property
    def fetches_model(self) -> bool:
        """Whether the build pod copies the model first (it is not on a claim)."""
        return v1alpha1.parse_uri(self.model_uri).scheme != "pvc"

    @property
    def model_dir(self) -> str:
        """The merged model's path inside the build pod (for hf:// and s3://, its copy next to the repository)."""
        if self.fetches_model:
            return self.repository.rstrip("/") + ".model"
        return v1alpha1.parse_uri(self.model_uri).local_path()

    @property
    def uses_gpus(self) -> bool:
        """Whether pods request GPUs: tensorrtllm revisions do; the python backend serves on CPU."""
        return self.spec.backend is v1alpha1.Backend.TENSORRTLLM and self.spec.resources.gpus > 0


# --- shared pod pieces --------------------------------------------------------------------------


def _claims(*uris: str) -> list[str]:
    """PersistentVolumeClaims of pvc:// URIs, each once, in order."""
    claims: list[str] = []
    for uri in uris:
        parsed = v1alpha1.parse_uri(uri)
        if parsed.scheme == "pvc" and parsed.authority not in claims:
            claims.append(parsed.authority)
    return claims


def _storage(claims: list[str], read_only: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts of the claims at ``/mnt/pvc/<claim>``, plus the scratch directory."""
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": SCRATCH_DIR}]
    for index, claim in enumerate(claims):
        name = f"pvc-{index}"
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        mounts.append({"name": name, "mountPath": f"{v1alpha1.PVC_MOUNT_ROOT}/{claim}", "readOnly": read_only})
    return volumes, mounts


def _gpu_resources(rev: Revision, gpus: int) -> dict[str, Any]:
    """CPU and memory of a replica, plus ``gpus`` GPUs (tensorrtllm only)."""
    res = rev.spec.resources
    amounts: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    if rev.uses_gpus:
        amounts[res.gpu_resource_name] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _scheduling(rev: Revision) -> dict[str, Any]:
    """Node selector, and a toleration of the usual GPU taint when GPUs are requested."""
    out: dict[str, Any] = {}
    if rev.spec.resources.node_selector:
        out["nodeSelector"] = dict(rev.spec.resources.node_selector)
    if rev.uses_gpus:
        out["tolerations"] = [
            {"key": rev.spec.resources.gpu_resource_name, "operator": "Exists", "effect": "NoSchedule"}
        ]
    return out


def _pod_metadata(
    parent: meta.Parent, component: str, revision: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """Pod template metadata: the pass-through labels and annotations, overridden by kubetune's own."""
    labels = {**meta.extra_pod_labels(parent, component), **meta.child_labels(parent.name, component, revision)}
    merged = {**meta.extra_pod_annotations(parent, component), **(annotations or {})}
    return {"labels": labels, "annotations": merged} if merged else {"labels": labels}


def _common_env() -> list[dict[str, Any]]:
    """HOME and caches on the writable scratch directory."""
    return [
        {"name": "HOME", "value": SCRATCH_DIR},
        {"name": "HF_HOME", "value": f"{SCRATCH_DIR}/huggingface"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def _container(name: str, image: str, pull_policy: str, **fields: Any) -> dict[str, Any]:
    """A container with the restricted security context."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy,
        **fields,
        "securityContext": pods.container_security_context(),
    }


def _job(parent: meta.Parent, name: str, component: str, revision: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A batch/v1 Job around a pod spec."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta.metadata(parent, name, component, revision),
        "spec": spec,
    }


# --- build Job ----------------------------------------------------------------------------------


def engine_scratch_dir(rev: Revision) -> str:
    """Where the TensorRT-LLM engine is compiled before it is placed into the repository."""
    return rev.repository.rstrip("/") + ".engine"


def engine_script(rev: Revision) -> str:
    """The shell script of the engine-build init container (tensorrtllm only)."""
    return engine_commands.build_script(rev.spec, rev.model_dir, engine_scratch_dir(rev))


def repository_command(rev: Revision) -> list[str]:
    """``python -m kubetune_trainer serve build`` for the revision, as argv."""
    argv = [
        "python", "-m", "kubetune_trainer", "serve", "build",
        "--model", rev.model_dir,
        "--output", rev.repository,
        "--spec", f"{SPEC_DIR}/{SPEC_FILE}",
        "--model-name", MODEL_NAME,
    ]  # fmt: skip
    if rev.spec.backend is v1alpha1.Backend.TENSORRTLLM:
        argv += ["--engine-dir", f"{rev.repository}/tensorrt_llm/1", "--engine-source", engine_scratch_dir(rev)]
    return argv


def repository_script(rev: Revision) -> str:
    """Write the repository, report it in the termination log, and drop the engine scratch directory.

    The JSON line that ``serve build`` prints (repository, backend, model, digest) is copied to
    ``/dev/termination-log`` so the operator reads the digest from the pod status.
    """
    lines = [
        "set -eu",
        f"report=$({shlex.join(repository_command(rev))})",
        'printf "%s\\n" "$report"',
        'printf "%s\\n" "$report" > /dev/termination-log',
    ]
    if rev.spec.backend is v1alpha1.Backend.TENSORRTLLM:
        lines.append(shlex.join(["rm", "-rf", engine_scratch_dir(rev)]))
    return "\n".join(lines) + "\n"


def serving_spec_json(spec: v1alpha1.ModelDeploymentSpec) -> str:
    """The serving settings the build pod reads (the spec without ``model``), as JSON."""
    settings = spec.to_k8s()
    settings.pop("model", None)
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def fetch_command(rev: Revision) -> list[str]:
    """``python -m kubetune_trainer serve fetch``: copy an hf:// or s3:// model next to the repository."""
    return ["python", "-m", "kubetune_trainer", "serve", "fetch", "--uri", rev.model_uri, "--output", rev.model_dir]


def _fetch_container(rev: Revision, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The init container that copies the model (credentials by Secret reference only)."""
    return _container(
        "fetch",
        rev.trainer_image,
        rev.image_pull_policy,
        command=fetch_command(rev),
        env=_common_env() + pods.source_credential_env(rev.model_uri, rev.secret_name),
        resources={"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        volumeMounts=mounts,
        terminationMessagePolicy="FallbackToLogsOnError",
    )


def build_job(parent: meta.Parent, rev: Revision) -> dict[str, Any]:
    """The Job ``<name>-build-<revision>`` that writes the revision's model repository (and engine).

    Args:
        parent: the ModelDeployment.
        rev: the revision to build.

    Returns:
        The Job manifest.
    """
    volumes, mounts = _storage(_claims(rev.model_uri, rev.engine_uri), read_only=False)
    volumes.append(
        {
            "name": "serving-spec",
            "downwardAPI": {
                "items": [{"path": SPEC_FILE, "fieldRef": {"fieldPath": f"metadata.annotations['{SPEC_ANNOTATION}']"}}]
            },
        }
    )
    spec_mount = {"name": "serving-spec", "mountPath": SPEC_DIR, "readOnly": True}
    writer = _container(
        "repository",
        rev.trainer_image,
        rev.image_pull_policy,
        command=["sh", "-c", repository_script(rev)],
        env=_common_env(),
        resources={"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        volumeMounts=[*mounts, spec_mount],
        terminationMessagePolicy="FallbackToLogsOnError",
    )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pods.pod_security_context(),
        "containers": [writer],
        "volumes": volumes,
    }
    init_containers = [_fetch_container(rev, mounts)] if rev.fetches_model else []
    if rev.spec.backend is v1alpha1.Backend.TENSORRTLLM:
        init_containers.append(
            _container(
                "engine",
                rev.build_image,
                rev.image_pull_policy,
                command=["sh", "-c", engine_script(rev)],
                env=_common_env(),
                # One GPU per tensor-parallel rank: what the engine is sharded over (a replica may have more).
                resources=_gpu_resources(rev, rev.spec.engine.tensor_parallelism),
                volumeMounts=mounts,
                terminationMessagePolicy="FallbackToLogsOnError",
            )
        )
        pod_spec.update(_scheduling(rev))
    if init_containers:
        pod_spec["initContainers"] = init_containers
    template = {
        "metadata": _pod_metadata(parent, meta.BUILD, rev.revision, {SPEC_ANNOTATION: serving_spec_json(rev.spec)}),
        "spec": pod_spec,
    }
    job_spec = {"backoffLimit": BUILD_BACKOFF_LIMIT, "template": template}
    return _job(parent, meta.build_job_name(parent.name, rev.revision), meta.BUILD, rev.revision, job_spec)


# --- Triton Deployment --------------------------------------------------------------------------


def engine_env(rev: Revision) -> list[dict[str, Any]]:
    """The revision and its engine settings as environment variables of the Triton container.

    They document in the pod what its repository was built with (and let custom entrypoints
    read them); the authoritative values are in the repository's config.pbtxt files.
    """
    engine = rev.spec.engine
    values = {
        "KUBETUNE_REVISION": rev.revision,
        "KUBETUNE_BACKEND": rev.spec.backend.value,
        "KUBETUNE_QUANTIZATION": rev.spec.quantization.value,
        "KUBETUNE_MODEL_NAME": MODEL_NAME,
        "KUBETUNE_MAX_BATCH_SIZE": engine.max_batch_size,
        "KUBETUNE_MAX_NUM_TOKENS": engine.max_num_tokens,
        "KUBETUNE_MAX_INPUT_LEN": engine.max_input_len,
        "KUBETUNE_MAX_OUTPUT_LEN": engine.max_output_len,
        "KUBETUNE_TENSOR_PARALLELISM": engine.tensor_parallelism,
        "KUBETUNE_KV_CACHE_FREE_GPU_MEM_FRACTION": engine.kv_cache_free_gpu_mem_fraction,
        "KUBETUNE_DYNAMIC_BATCHING": str(engine.dynamic_batching).lower(),
    }
    return [{"name": key, "value": str(value)} for key, value in values.items()]


def _tritonserver_args(rev: Revision, rank: int) -> list[str]:
    """Arguments of one tritonserver process (rank > 0 only loads the TensorRT-LLM model)."""
    args = [
        "tritonserver",
        f"--model-repository={rev.repository}",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        "--allow-metrics=true",
        f"--allow-gpu-metrics={str(rev.uses_gpus).lower()}",
        "--disable-auto-complete-config",
    ]
    if rev.spec.backend is v1alpha1.Backend.TENSORRTLLM:
        args.append(f"--backend-config=python,shm-region-prefix-name=prefix{rank}_")
    if rank > 0:
        args += ["--model-control-mode=explicit", "--load-model=tensorrt_llm"]
    return args


def server_command(rev: Revision) -> list[str]:
    """The Triton command line: one tritonserver, or one MPI rank per GPU for tensor parallelism.

    With ``tensorParallelism`` N > 1 the TensorRT-LLM backend runs in leader mode under
    ``mpirun``, as tensorrtllm_backend's ``launch_triton_server.py`` does: rank 0 serves every
    model, the other ranks only load ``tensorrt_llm``.
    """
    tp = rev.spec.engine.tensor_parallelism
    if rev.spec.backend is not v1alpha1.Backend.TENSORRTLLM or tp == 1:
        return _tritonserver_args(rev, 0)
    argv = ["mpirun", "--allow-run-as-root"]
    for rank in range(tp):
        argv += ["-n", "1", *_tritonserver_args(rev, rank)]
        if rank < tp - 1:
            argv.append(":")
    return argv


def _probes(rev: Revision) -> dict[str, Any]:
    """Startup (engine loading may take minutes), liveness and readiness probes on the HTTP port."""

    def http_get(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        }

    startup_failures = max(3, rev.spec.rollout.progress_deadline_seconds // 10)
    return {
        "startupProbe": http_get("/v2/health/live", 10, startup_failures),
        "livenessProbe": http_get("/v2/health/live", 10, 3),
        "readinessProbe": http_get("/v2/health/ready", 5, 3),
    }


def deployment(parent: meta.Parent, rev: Revision) -> dict[str, Any]:
    """The Triton Deployment ``<name>`` serving one revision.

    A new revision changes the pod template (revision annotation and label, command, env), so
    applying it starts a rolling update; with ``maxUnavailable: 0`` the old ReplicaSet keeps
    serving until new pods are ready. With ``spec.autoscaling`` the replica count is left out so
    the HPA owns it.

    Args:
        parent: the ModelDeployment.
        rev: the revision to serve.

    Returns:
        The Deployment manifest.
    """
    spec = rev.spec
    volumes, mounts = _storage(_claims(rev.engine_uri), read_only=True)
    volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHARED_MEMORY}})
    mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    container = _container(
        "triton",
        rev.server_image,
        rev.image_pull_policy,
        command=server_command(rev),
        env=[*_common_env(), *engine_env(rev)],
        ports=[
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        resources=_gpu_resources(rev, rev.spec.resources.gpus),
        volumeMounts=mounts,
        **_probes(rev),
    )
    template = {
        "metadata": _pod_metadata(
            parent,
            meta.SERVER,
            rev.revision,
            {
                meta.REVISION_LABEL: rev.revision,
                "kubetune.dev/engine-uri": rev.engine_uri,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
            },
        ),
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pods.pod_security_context(),
            "containers": [container],
            "volumes": volumes,
            **_scheduling(rev),
        },
    }
    body: dict[str, Any] = {
        "selector": {"matchLabels": meta.selector(parent.name)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": spec.rollout.max_surge, "maxUnavailable": spec.rollout.max_unavailable},
        },
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
        "template": template,
    }
    if spec.autoscaling is None:
        body = {"replicas": spec.replicas, **body}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta.metadata(parent, meta.server_name(parent.name), meta.SERVER, rev.revision),
        "spec": body,
    }


# --- Service, HPA, endpoint ---------------------------------------------------------------------


def service(parent: meta.Parent, spec: v1alpha1.ServingSpec) -> dict[str, Any]:
    """The Service ``<name>`` in front of every Triton pod of the ModelDeployment (all revisions)."""
    ports = spec.service
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta.metadata(parent, meta.server_name(parent.name), meta.SERVER),
        "spec": {
            "type": ports.type.value,
            "selector": meta.selector(parent.name),
            "ports": [
                {"name": "http", "port": ports.http_port, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": ports.grpc_port, "targetPort": "grpc", "protocol": "TCP"},
                {"name": "metrics", "port": ports.metrics_port, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def autoscaler(parent: meta.Parent, spec: v1alpha1.ServingSpec) -> dict[str, Any] | None:
    """The autoscaling/v2 HorizontalPodAutoscaler ``<name>``, or None without ``spec.autoscaling``."""
    scaling = spec.autoscaling
    if scaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta.metadata(parent, meta.server_name(parent.name), meta.SERVER),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta.server_name(parent.name)},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization},
                    },
                }
            ],
        },
    }


def service_host(parent: meta.Parent) -> str:
    """The Service's fully qualified in-cluster DNS name."""
    return f"{meta.server_name(parent.name)}.{parent.namespace}.svc.cluster.local"


def endpoint(parent: meta.Parent, spec: v1alpha1.ServingSpec) -> dict[str, str]:
    """``status.endpoint``: the in-cluster HTTP URL and gRPC address."""
    host = service_host(parent)
    return {"http": f"http://{host}:{spec.service.http_port}", "grpc": f"{host}:{spec.service.grpc_port}"}


# --- smoke test ---------------------------------------------------------------------------------


def smoke_command(parent: meta.Parent, rev: Revision) -> list[str]:
    """``python -m kubetune_trainer serve smoke`` against the Service, as argv."""
    smoke = rev.spec.rollout.smoke_test
    return [
        "python", "-m", "kubetune_trainer", "serve", "smoke",
        "--url", f"http://{service_host(parent)}:{rev.spec.service.http_port}",
        "--model", MODEL_NAME,
        "--prompt", smoke.prompt,
        "--max-tokens", str(smoke.max_tokens),
        "--timeout", str(smoke.timeout_seconds),
    ]  # fmt: skip


def smoke_job(parent: meta.Parent, rev: Revision) -> dict[str, Any]:
    """The Job ``<name>-smoke-<revision>``: one prompt through the Service, a non-empty answer or failure.

    It runs once the revision is rolled out (every Service endpoint serves it). The command
    itself waits for readiness and retries until its timeout, so the Job does not retry.

    Args:
        parent: the ModelDeployment.
        rev: the revision being tested.

    Returns:
        The Job manifest.
    """
    volumes, mounts = _storage([], read_only=True)
    container = _container(
        "smoke-test",
        rev.trainer_image,
        rev.image_pull_policy,
        command=smoke_command(parent, rev),
        env=_common_env(),
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        volumeMounts=mounts,
        terminationMessagePolicy="FallbackToLogsOnError",
    )
    template = {
        "metadata": _pod_metadata(parent, meta.SMOKE, rev.revision),
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pods.pod_security_context(),
            "containers": [container],
            "volumes": volumes,
        },
    }
    job_spec = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": rev.spec.rollout.smoke_test.timeout_seconds + SMOKE_STARTUP_SECONDS,
        "template": template,
    }
    return _job(parent, meta.smoke_job_name(parent.name, rev.revision), meta.SMOKE, rev.revision, job_spec)


# --- engine cache -------------------------------------------------------------------------------


def engines_configmap(parent: meta.Parent, data: dict[str, str]) -> dict[str, Any]:
    """The ConfigMap ``<name>-engines``: one JSON engine record per built revision."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta.metadata(parent, meta.engines_configmap_name(parent.name), meta.ENGINES),
        "data": dict(sorted(data.items())),
    }
