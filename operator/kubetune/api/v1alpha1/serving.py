"""The ModelDeployment API: how a fine-tuned model is served by Triton Inference Server.

The serving fields live in :class:`ServingSpec` so that a FineTuneJob's ``spec.deploy`` (a
ModelDeployment without ``model``) and a stand-alone ModelDeployment share one definition.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from kubetune.api.v1alpha1.base import (
    MODEL_URI_PATTERN,
    PVC_URI,
    Condition,
    KubeModel,
    LocalObjectReference,
    Rule,
    StrEnum,
    conditions_field,
    section,
    uri_pattern,
)


class Backend(StrEnum):
    """How Triton runs the model."""

    TENSORRTLLM = "tensorrtllm"
    PYTHON = "python"


class Quantization(StrEnum):
    """Weight (and activation) precision of the serving engine."""

    FP16 = "fp16"
    INT8 = "int8"
    W4A16 = "w4a16"
    FP8 = "fp8"


class ServiceType(StrEnum):
    """Kubernetes Service type of the inference endpoint."""

    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


class ModelSource(KubeModel):
    """Where the served weights come from: a FineTuneJob's artifact or a checkpoint URI."""

    cel_rules = [
        Rule(
            "has(self.fineTuneJobRef) != has(self.uri)",
            "spec.model: set exactly one of spec.model.fineTuneJobRef and spec.model.uri",
        )
    ]

    fine_tune_job_ref: LocalObjectReference | None = Field(
        default=None,
        description="Serve the artifact of this FineTuneJob; the deployment waits until it Succeeded.",
    )
    uri: str | None = Field(
        default=None,
        pattern=MODEL_URI_PATTERN,
        description="Serve a given checkpoint: hf://org/name@revision, pvc://claim/path or s3://bucket/prefix.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret with the HF token or S3 credentials needed to read uri."
    )


class EngineSpec(KubeModel):
    """TensorRT-LLM engine limits and Triton batching settings."""

    max_batch_size: int = Field(default=32, ge=1, le=4096, description="Largest batch Triton schedules in flight.")
    max_num_tokens: int = Field(
        default=4096,
        ge=1,
        description="Token budget per engine step across the batch (trtllm-build --max_num_tokens).",
    )
    max_input_len: int = Field(default=2048, ge=1, description="Longest prompt, in tokens.")
    max_output_len: int = Field(default=512, ge=1, description="Most tokens generated per request.")
    tensor_parallelism: int = Field(default=1, ge=1, le=64, description="GPUs one engine is split across (--tp_size).")
    kv_cache_free_gpu_mem_fraction: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Fraction of GPU memory left after loading the engine that the KV cache may take.",
    )
    dynamic_batching: bool = Field(
        default=True, description="python backend: let Triton batch concurrent requests together."
    )


class AutoscalingSpec(KubeModel):
    """A HorizontalPodAutoscaler for the Triton Deployment."""

    cel_rules = [
        Rule(
            "self.minReplicas <= self.maxReplicas",
            "spec.autoscaling.minReplicas must not exceed spec.autoscaling.maxReplicas",
            field_path=".minReplicas",
        )
    ]

    min_replicas: int = Field(default=1, ge=1, description="Fewest replicas.")
    max_replicas: int = Field(default=4, ge=1, description="Most replicas.")
    target_cpu_utilization: int = Field(
        default=80, ge=1, le=100, description="Average CPU utilization (percent) the HPA aims for."
    )


class SmokeTestSpec(KubeModel):
    """A request sent to a new revision before it is declared Ready."""

    enabled: bool = Field(default=True, description="Run the smoke test on every new revision.")
    prompt: str = Field(
        default="Hello! How can I track my order?",
        min_length=1,
        description="Prompt sent with tritonclient.",
    )
    max_tokens: int = Field(default=16, ge=1, le=4096, description="Tokens to generate for the smoke test.")
    timeout_seconds: int = Field(default=120, ge=1, le=3600, description="How long the smoke test may take.")


class RolloutSpec(KubeModel):
    """How a new revision replaces the old one."""

    max_surge: int | str = Field(
        default=1,
        description="Extra pods during a rollout (number or percentage).",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )
    max_unavailable: int | str = Field(
        default=0,
        description="Pods that may be unavailable during a rollout; 0 keeps the old revision serving.",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )
    progress_deadline_seconds: int = Field(
        default=600, ge=30, description="A revision not ready in this time is rolled back."
    )
    smoke_test: SmokeTestSpec = section(SmokeTestSpec, "Request sent to every new revision.")


class ServingResources(KubeModel):
    """Resources of each Triton replica."""

    gpus: int = Field(default=1, ge=0, le=64, description="GPUs per replica (0 for the python backend on CPU).")
    gpu_resource_name: str = Field(default="nvidia.com/gpu", min_length=1, description="Extended resource of GPUs.")
    cpu: str = Field(default="4", description="CPU request and limit.")
    memory: str = Field(default="32Gi", description="Memory request and limit.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods must match.")


class ServiceSpec(KubeModel):
    """The Service in front of Triton."""

    type: ServiceType = Field(default=ServiceType.CLUSTER_IP, description="Kubernetes Service type.")
    http_port: int = Field(default=8000, ge=1, le=65535, description="HTTP/REST port (KServe v2 protocol).")
    grpc_port: int = Field(default=8001, ge=1, le=65535, description="gRPC port.")
    metrics_port: int = Field(default=8002, ge=1, le=65535, description="Prometheus metrics port.")


class ServingSpec(KubeModel):
    """Everything about serving except which model: shared by ModelDeployment and spec.deploy."""

    cel_rules = [
        Rule(
            "self.backend == 'tensorrtllm' || self.quantization == 'fp16'",
            "spec.quantization int8, w4a16 and fp8 need spec.backend tensorrtllm; the python backend serves fp16",
            field_path=".quantization",
        ),
        Rule(
            "self.backend != 'tensorrtllm' || self.resources.gpus >= self.engine.tensorParallelism",
            "spec.resources.gpus must be at least spec.engine.tensorParallelism for the tensorrtllm backend",
            field_path=".resources.gpus",
        ),
    ]

    backend: Backend = Field(
        default=Backend.TENSORRTLLM,
        description="tensorrtllm (GPU) or python (transformers, CPU ok).",
    )
    quantization: Quantization = Field(default=Quantization.FP16, description="fp16, int8, w4a16 or fp8 (Hopper/Ada).")
    engine: EngineSpec = section(EngineSpec, "TensorRT-LLM engine and batching limits.")
    replicas: int = Field(default=1, ge=0, le=1000, description="Triton replicas (ignored when autoscaling is set).")
    autoscaling: AutoscalingSpec | None = Field(default=None, description="Scale replicas with an HPA.")
    resources: ServingResources = section(ServingResources, "Resources of each replica.")
    rollout: RolloutSpec = section(RolloutSpec, "Rolling update, smoke test and rollback.")
    service: ServiceSpec = section(ServiceSpec, "The Service in front of Triton.")
    image: str | None = Field(default=None, description="Triton image override (default: operator setting).")
    build_image: str | None = Field(
        default=None, description="Engine-build image override (default: operator setting)."
    )
    engine_storage: str | None = Field(
        default=None,
        pattern=uri_pattern(PVC_URI),
        description="pvc://claim/path under which each revision's Triton repository (and engine) is written, "
        "and where a model given by hf:// or s3:// is copied first. Default: next to a pvc:// model; "
        "required for hf:// and s3:// models.",
    )


class ModelDeploymentSpec(ServingSpec):
    """Desired state of a ModelDeployment."""

    cel_rules = [
        Rule(
            "has(self.engineStorage) || !has(self.model.uri) || self.model.uri.startsWith('pvc://')",
            "spec.engineStorage (a pvc:// location) is required when spec.model.uri is hf:// or s3://: "
            "the model is copied there and its engines are written there",
            field_path=".engineStorage",
        ),
    ]

    model: ModelSource = Field(description="The model to serve.")


class DeployTemplate(ServingSpec):
    """A ModelDeployment created or updated when the FineTuneJob succeeds."""

    name: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name of the ModelDeployment (default: the FineTuneJob's name).",
    )


class DeploymentPhase(StrEnum):
    """Where a ModelDeployment is in its life."""

    PENDING = "Pending"
    WAITING_FOR_MODEL = "WaitingForModel"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class Endpoint(KubeModel):
    """In-cluster URLs of the inference service."""

    http: str | None = Field(default=None, description="HTTP URL, e.g. http://name.ns.svc:8000.")
    grpc: str | None = Field(default=None, description="gRPC address, e.g. name.ns.svc:8001.")


class EngineStatus(KubeModel):
    """The built model repository / engine of the current revision."""

    uri: str | None = Field(default=None, description="Where the model repository was written.")
    digest: str | None = Field(default=None, description="Content digest of the repository.")


class ModelDeploymentStatus(KubeModel):
    """Observed state of a ModelDeployment, written by the operator only."""

    phase: DeploymentPhase | None = Field(default=None, description="Summary of the state.")
    conditions: list[Condition] = conditions_field()
    observed_generation: int | None = Field(default=None, description="Generation last acted on.")
    revision: str | None = Field(default=None, description="Content hash of model digest and engine settings.")
    previous_revision: str | None = Field(default=None, description="Revision served before the current one.")
    endpoint: Endpoint | None = Field(default=None, description="Where to send requests.")
    replicas: int | None = Field(default=None, description="Triton pods.")
    ready_replicas: int | None = Field(default=None, description="Triton pods that are ready.")
    ready: str | None = Field(default=None, description="readyReplicas/replicas, for kubectl get.")
    engine: EngineStatus | None = Field(default=None, description="The engine of the current revision.")
    last_updated: datetime | None = Field(default=None, description="Last status change.")


class ModelDeployment(KubeModel):
    """Serve a model with Triton Inference Server."""

    api_version: str = Field(default="kubetune.dev/v1alpha1")
    kind: str = Field(default="ModelDeployment")
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None
