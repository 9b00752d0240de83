"""The FineTuneJob API: data cleaning, fine-tuning, evaluation and export of a causal LM.

Defaults follow the fine-tuning guide the project is built around: LoRA r=16, alpha=32,
dropout 0.1 on q_proj/v_proj; a cosine schedule from 1e-4 down to 1e-6; gradient
accumulation 4; a quality threshold of 0.7; at least 500 samples per intent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from kubetune.api.v1alpha1.base import (
    HF_URI,
    MODEL_URI_PATTERN,
    PVC_URI,
    S3_URI,
    STORAGE_URI_PATTERN,
    Condition,
    KubeModel,
    LocalObjectReference,
    Rule,
    StrEnum,
    conditions_field,
    immutable,
    section,
    uri_pattern,
)
from kubetune.api.v1alpha1.serving import DeployTemplate


class Method(StrEnum):
    """Fine-tuning method."""

    LORA = "lora"
    QLORA = "qlora"
    PREFIX = "prefix"
    FREEZE = "freeze"
    FULL = "full"


#: Methods that may span several nodes (QLoRA and prefix tuning train on one node).
MULTI_NODE_METHODS = (Method.LORA, Method.FREEZE, Method.FULL)


class DatasetFormat(StrEnum):
    """Layout of one JSONL record."""

    TRIPLE = "triple"
    CHAT = "chat"
    ALPACA = "alpaca"


class PIIEntity(StrEnum):
    """Kinds of personal data the redactor recognises."""

    CN_ID_CARD = "cnIdCard"
    CN_MOBILE = "cnMobile"
    EMAIL = "email"
    BANK_CARD = "bankCard"
    IP_ADDRESS = "ipAddress"


class Scheduler(StrEnum):
    """Learning-rate schedule."""

    COSINE = "cosine"
    LINEAR = "linear"
    CONSTANT = "constant"


class Precision(StrEnum):
    """Numeric precision of training."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


class LoraBias(StrEnum):
    """Which biases LoRA trains (peft LoraConfig.bias)."""

    NONE = "none"
    ALL = "all"
    LORA_ONLY = "lora_only"


class QuantType(StrEnum):
    """4-bit quantization data type (bitsandbytes)."""

    NF4 = "nf4"
    FP4 = "fp4"


class Metric(StrEnum):
    """Evaluation metric."""

    PERPLEXITY = "perplexity"
    BLEU = "bleu"
    ROUGE = "rouge"


class BaseModelSource(KubeModel):
    """The model to start from: a checkpoint URI or another FineTuneJob's artifact."""

    cel_rules = [
        Rule(
            "has(self.uri) != has(self.fineTuneJobRef)",
            "spec.baseModel: set exactly one of spec.baseModel.uri and spec.baseModel.fineTuneJobRef",
        )
    ]

    uri: str | None = Field(
        default=None,
        pattern=MODEL_URI_PATTERN,
        description="hf://org/name@revision, pvc://claim/path or s3://bucket/prefix.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with an HF token (key HF_TOKEN) or S3 credentials (AWS_* keys).",
    )
    fine_tune_job_ref: LocalObjectReference | None = Field(
        default=None,
        description="Continue from this FineTuneJob's artifact (continual learning on new data).",
    )


class PIIRedactionSpec(KubeModel):
    """Replace personal data with typed placeholders such as <CN_ID>."""

    enabled: bool = Field(default=True, description="Redact PII before training.")
    entities: list[PIIEntity] = Field(
        default_factory=lambda: list(PIIEntity),
        min_length=1,
        description="Entities to redact: cnIdCard (checksum-verified), cnMobile, email, bankCard (Luhn-checked), "
        "ipAddress.",
        json_schema_extra={"default": [e.value for e in PIIEntity]},
    )


class QualityFilterSpec(KubeModel):
    """Drop records that are empty, too short or long, repetitive, echoed or not text."""

    enabled: bool = Field(default=True, description="Filter low-quality records.")
    threshold: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="Minimum quality score (0-1) a record needs to be kept.",
    )
    min_chars: int = Field(default=2, ge=0, description="Responses shorter than this are dropped.")
    max_chars: int = Field(default=4096, ge=1, description="Responses longer than this are dropped.")
    classifier_uri: str | None = Field(
        default=None,
        pattern=MODEL_URI_PATTERN,
        description="Optional sequence-classification model scoring quality; records under threshold are dropped.",
    )


class DedupSpec(KubeModel):
    """Remove exact and near-duplicate records."""

    enabled: bool = Field(default=True, description="Deduplicate.")
    near_duplicates: bool = Field(default=True, description="Also drop near duplicates (MinHash LSH).")
    similarity_threshold: float = Field(
        default=0.85,
        gt=0,
        le=1,
        description="Jaccard similarity above which two records are near duplicates.",
    )


class BalanceSpec(KubeModel):
    """Stratified sampling by a label field."""

    enabled: bool = Field(default=True, description="Balance the dataset by the field.")
    field: str = Field(default="intent", min_length=1, description="Record field to stratify by.")
    min_per_intent: int = Field(
        default=500,
        ge=0,
        description="Intents with fewer samples are kept but reported with a warning.",
    )
    max_per_intent: int | None = Field(default=None, ge=1, description="Down-sample intents above this many samples.")


class CleaningSpec(KubeModel):
    """Data cleaning applied by the prepare step."""

    pii_redaction: PIIRedactionSpec = section(PIIRedactionSpec, "PII redaction.")
    quality_filter: QualityFilterSpec = section(QualityFilterSpec, "Quality filter.")
    dedup: DedupSpec = section(DedupSpec, "Exact and near-duplicate removal.")
    balance: BalanceSpec = section(BalanceSpec, "Intent balancing.")


class DatasetSpec(KubeModel):
    """The dialogue dataset (JSONL)."""

    uri: str = Field(
        pattern=uri_pattern(HF_URI, PVC_URI, S3_URI),
        description="pvc://claim/path/file.jsonl, s3://bucket/key.jsonl or hf://org/dataset.",
    )
    format: DatasetFormat = Field(
        default=DatasetFormat.TRIPLE,
        description='triple ({"context","response","followup"}, optional intent), chat (messages) or alpaca.',
    )
    secret_ref: LocalObjectReference | None = Field(default=None, description="Credentials to read uri.")
    validation_split: float = Field(default=0.1, ge=0, le=0.5, description="Fraction held out for evaluation.")
    cleaning: CleaningSpec = section(CleaningSpec, "Cleaning steps.")


class LoraSpec(KubeModel):
    """LoRA adapter settings (peft LoraConfig)."""

    r: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Rank of the update matrices; higher: more capacity, more memory.",
    )
    alpha: int = Field(default=32, ge=1, description="Scaling numerator (alpha/r scales the update).")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        min_length=1,
        description="Module names to adapt, e.g. q_proj, k_proj, v_proj, o_proj.",
        json_schema_extra={"default": ["q_proj", "v_proj"]},
    )
    bias: LoraBias = Field(default=LoraBias.NONE, description="none, all or lora_only.")


class QLoraSpec(KubeModel):
    """Quantized base weights for QLoRA (bitsandbytes)."""

    bits: Literal[4, 8] = Field(default=4, description="Quantization bits of the frozen base model: 4 or 8.")
    quant_type: QuantType = Field(default=QuantType.NF4, description="4-bit data type: nf4 or fp4.")
    double_quant: bool = Field(default=True, description="Quantize the quantization constants too.")


class PrefixSpec(KubeModel):
    """Prefix tuning (peft PrefixTuningConfig)."""

    num_virtual_tokens: int = Field(default=20, ge=1, le=1024, description="Trainable virtual tokens per layer.")


class FreezeSpec(KubeModel):
    """Train only the last N decoder layers (and the LM head)."""

    trainable_layers: int = Field(default=2, ge=1, description="Number of last decoder layers to train.")


class TrainingSpec(KubeModel):
    """Optimisation settings (transformers TrainingArguments)."""

    cel_rules = [
        Rule(
            # Guarded: the API server also checks this rule against the section's default, {}.
            "!has(self.minLearningRate) || !has(self.learningRate) || self.minLearningRate <= self.learningRate",
            "spec.training.minLearningRate must not exceed spec.training.learningRate",
            field_path=".minLearningRate",
        )
    ]

    epochs: float = Field(default=3, gt=0, le=1000, description="Passes over the training set.")
    max_steps: int | None = Field(
        default=None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    learning_rate: float = Field(default=1e-4, gt=0, le=1, description="Peak learning rate.")
    min_learning_rate: float = Field(default=1e-6, ge=0, le=1, description="Learning rate at the end of the schedule.")
    scheduler: Scheduler = Field(default=Scheduler.COSINE, description="cosine, linear or constant.")
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Fraction of steps spent warming up.")
    per_device_batch_size: int = Field(default=4, ge=1, le=4096, description="Micro-batch per GPU.")
    gradient_accumulation_steps: int = Field(default=4, ge=1, le=4096, description="Micro-batches per optimizer step.")
    max_seq_length: int = Field(default=2048, ge=16, le=1048576, description="Tokens per (packed) sequence.")
    precision: Precision = Field(default=Precision.BF16, description="bf16, fp16 or fp32.")
    gradient_checkpointing: bool = Field(default=True, description="Trade compute for activation memory.")
    packing: bool = Field(default=True, description="Pack several samples into one sequence.")
    seed: int = Field(default=42, ge=0, description="Random seed.")
    checkpoint_steps: int = Field(default=500, ge=1, description="Save a checkpoint every this many steps.")
    logging_steps: int = Field(default=10, ge=1, description="Report progress every this many steps.")


class DeepSpeedSpec(KubeModel):
    """DeepSpeed ZeRO settings (default: ZeRO-3 for full fine-tuning, none otherwise)."""

    zero_stage: int | None = Field(default=None, ge=0, le=3, description="ZeRO stage 0-3.")
    offload_optimizer: bool = Field(default=False, description="Keep optimizer state in CPU memory.")
    offload_params: bool = Field(default=False, description="Keep parameters in CPU memory (ZeRO-3 only).")


class Toleration(KubeModel):
    """A pod toleration (core/v1 Toleration)."""

    key: str | None = Field(default=None, description="Taint key.")
    operator: str | None = Field(
        default=None,
        description="Exists or Equal.",
        json_schema_extra={"enum": ["Exists", "Equal"]},
    )
    value: str | None = Field(default=None, description="Taint value.")
    effect: str | None = Field(
        default=None,
        description="NoSchedule, PreferNoSchedule or NoExecute.",
        json_schema_extra={"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
    )
    toleration_seconds: int | None = Field(default=None, description="How long a NoExecute taint is tolerated.")


class ResourcesSpec(KubeModel):
    """Compute for the train pods."""

    nodes: int = Field(default=1, ge=1, le=1024, description="Nodes (pods) of the train Job.")
    gpus_per_node: int = Field(default=1, ge=0, le=16, description="GPUs per node (0 trains on CPU).")
    gpu_resource_name: str = Field(default="nvidia.com/gpu", min_length=1, description="Extended resource of GPUs.")
    cpu: str = Field(default="8", description="CPU request per pod.")
    memory: str = Field(default="64Gi", description="Memory request and limit per pod.")
    shared_memory: str = Field(default="16Gi", description="Size of /dev/shm (NCCL needs plenty).")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the train pods must match.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations of the train pods.")
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the train pods.")


class OutputSpec(KubeModel):
    """Where checkpoints, the adapter, the merged model and reports go."""

    uri: str = Field(pattern=STORAGE_URI_PATTERN, description="pvc://claim/path or s3://bucket/prefix.")
    secret_ref: LocalObjectReference | None = Field(default=None, description="Credentials to write uri.")
    merge_adapter: bool = Field(default=True, description="Also write merged fp16/bf16 weights for serving.")


class ThresholdsSpec(KubeModel):
    """The evaluation gate: a job that misses any threshold ends Failed and is not deployed."""

    max_perplexity: float | None = Field(default=None, gt=0, description="Highest acceptable validation perplexity.")
    min_bleu: float | None = Field(default=None, ge=0, le=100, description="Lowest acceptable BLEU (0-100).")
    min_rouge_l: float | None = Field(default=None, ge=0, le=1, description="Lowest acceptable ROUGE-L F1 (0-1).")


class EvaluationSpec(KubeModel):
    """Evaluation after training."""

    enabled: bool = Field(default=True, description="Evaluate the tuned model.")
    metrics: list[Metric] = Field(
        default_factory=lambda: list(Metric),
        description="perplexity, bleu, rouge.",
        json_schema_extra={"default": [m.value for m in Metric]},
    )
    thresholds: ThresholdsSpec | None = Field(default=None, description="Gate before deploy.")
    compare_base_model: bool = Field(default=False, description="Also evaluate the base model.")
    max_samples: int = Field(default=200, ge=1, description="Validation samples used for generation metrics.")
    max_new_tokens: int = Field(default=64, ge=1, description="Tokens generated per sample.")


class RetriesSpec(KubeModel):
    """Retries of the train step, each resuming from the latest checkpoint."""

    max_retries: int = Field(default=3, ge=0, le=100, description="Retries after the first attempt fails.")
    backoff_seconds: int = Field(default=30, ge=0, le=3600, description="Base of the exponential back-off.")


class FineTuneJobSpec(KubeModel):
    """Desired state of a FineTuneJob."""

    cel_rules = [
        Rule(
            "!has(self.lora) || self.method in ['lora', 'qlora']",
            "spec.lora is only allowed when spec.method is lora or qlora",
            field_path=".lora",
        ),
        Rule(
            "!has(self.qlora) || self.method == 'qlora'",
            "spec.qlora is only allowed when spec.method is qlora",
            field_path=".qlora",
        ),
        Rule(
            "!has(self.prefix) || self.method == 'prefix'",
            "spec.prefix is only allowed when spec.method is prefix",
            field_path=".prefix",
        ),
        Rule(
            "!has(self.freeze) || self.method == 'freeze'",
            "spec.freeze is only allowed when spec.method is freeze",
            field_path=".freeze",
        ),
        Rule(
            "self.method != 'full' || self.resources.gpusPerNode >= 1",
            "spec.resources.gpusPerNode must be at least 1 when spec.method is full",
            field_path=".resources.gpusPerNode",
        ),
        Rule(
            "self.method != 'qlora' || self.resources.gpusPerNode >= 1",
            "spec.resources.gpusPerNode must be at least 1 when spec.method is qlora (bitsandbytes needs a GPU)",
            field_path=".resources.gpusPerNode",
        ),
        Rule(
            "self.resources.nodes == 1 || self.method in ['lora', 'freeze', 'full']",
            "spec.resources.nodes > 1 needs a distributed method (lora, freeze or full); "
            "qlora and prefix train on one node",
            field_path=".resources.nodes",
        ),
        Rule(
            "!has(self.deepspeed) || !has(self.deepspeed.zeroStage) || self.method != 'qlora'",
            "spec.deepspeed is not supported with spec.method qlora",
            field_path=".deepspeed",
        ),
        Rule(
            "!has(self.deepspeed) || !self.deepspeed.offloadParams || !has(self.deepspeed.zeroStage) "
            "|| self.deepspeed.zeroStage == 3",
            "spec.deepspeed.offloadParams needs spec.deepspeed.zeroStage 3",
            field_path=".deepspeed.offloadParams",
        ),
    ]

    base_model: BaseModelSource = immutable("The model to fine-tune.", "spec.baseModel")
    dataset: DatasetSpec = immutable("The training data and how to clean it.", "spec.dataset")
    method: Method = immutable("lora, qlora, prefix, freeze or full.", "spec.method", default=Method.LORA)
    lora: LoraSpec | None = Field(default=None, description="LoRA settings (method lora or qlora).")
    qlora: QLoraSpec | None = Field(default=None, description="Quantization settings (method qlora).")
    prefix: PrefixSpec | None = Field(default=None, description="Prefix tuning settings (method prefix).")
    freeze: FreezeSpec | None = Field(default=None, description="Layer freezing settings (method freeze).")
    training: TrainingSpec = section(TrainingSpec, "Optimisation settings.")
    deepspeed: DeepSpeedSpec | None = Field(default=None, description="DeepSpeed ZeRO settings.")
    resources: ResourcesSpec = section(ResourcesSpec, "Compute for the train pods.")
    queue_name: str | None = Field(default=None, max_length=63, description="Kueue LocalQueue to submit the Jobs to.")
    output: OutputSpec = Field(description="Where checkpoints, adapters, merged weights and reports go.")
    evaluation: EvaluationSpec = section(EvaluationSpec, "Evaluation and the gate before deploy.")
    retries: RetriesSpec = section(RetriesSpec, "Retries of the train step.")
    active_deadline_seconds: int | None = Field(default=None, ge=1, description="Fail the job after this long.")
    suspend: bool = Field(default=False, description="Stop the pods; resume later from the latest checkpoint.")
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description="Delete the finished FineTuneJob (and its children) after this long.",
    )
    image: str | None = Field(default=None, description="Trainer image override (default: operator setting).")
    deploy: DeployTemplate | None = Field(default=None, description="ModelDeployment to create when the job succeeds.")

    # Effective settings: what the trainer and the renderers use when a block is omitted.
    def effective_lora(self) -> LoraSpec:
        """The LoRA block, defaulted when omitted."""
        return self.lora or LoraSpec()

    def effective_qlora(self) -> QLoraSpec:
        """The QLoRA block, defaulted when omitted."""
        return self.qlora or QLoraSpec()

    def effective_prefix(self) -> PrefixSpec:
        """The prefix tuning block, defaulted when omitted."""
        return self.prefix or PrefixSpec()

    def effective_freeze(self) -> FreezeSpec:
        """The layer-freezing block, defaulted when omitted."""
        return self.freeze or FreezeSpec()

    def effective_zero_stage(self) -> int:
        """ZeRO stage: as asked, else 3 for full fine-tuning and 0 otherwise."""
        if self.deepspeed and self.deepspeed.zero_stage is not None:
            return self.deepspeed.zero_stage
        return 3 if self.method == Method.FULL else 0

    def uses_deepspeed(self) -> bool:
        """Whether the train step runs under DeepSpeed."""
        return self.effective_zero_stage() > 0

    def world_size(self) -> int:
        """Number of training processes (one per GPU, or one per node on CPU)."""
        return self.resources.nodes * max(1, self.resources.gpus_per_node)


class Phase(StrEnum):
    """Where a FineTuneJob is in its life."""

    PENDING = "Pending"
    PREPARING = "Preparing"
    TRAINING = "Training"
    EVALUATING = "Evaluating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class Progress(KubeModel):
    """Live training progress, reported by the trainer."""

    step: int | None = Field(default=None, ge=0, description="Optimizer steps done.")
    total_steps: int | None = Field(default=None, ge=0, description="Optimizer steps planned.")
    epoch: float | None = Field(default=None, ge=0, description="Epochs done (fractional).")
    loss: float | None = Field(default=None, description="Latest training loss.")
    learning_rate: float | None = Field(default=None, description="Current learning rate.")
    tokens_per_second: float | None = Field(default=None, description="Training throughput.")
    eta: str | None = Field(default=None, description="Estimated time left, e.g. 1h02m.")
    percent: int | None = Field(default=None, ge=0, le=100, description="step/totalSteps in percent.")
    summary: str | None = Field(default=None, description="step/totalSteps (percent), for kubectl get.")
    updated: datetime | None = Field(default=None, description="When the trainer last reported.")


class DataReport(KubeModel):
    """What the prepare step did to the dataset."""

    records_in: int | None = Field(default=None, description="Records read.")
    records_out: int | None = Field(default=None, description="Records kept.")
    train_records: int | None = Field(default=None, description="Records in the training split.")
    validation_records: int | None = Field(default=None, description="Records in the validation split.")
    malformed: int | None = Field(default=None, description="Lines that could not be parsed.")
    dropped: dict[str, int] = Field(default_factory=dict, description="Records dropped, by reason.")
    redactions: dict[str, int] = Field(default_factory=dict, description="PII redacted, by entity.")
    intents_before: dict[str, int] = Field(default_factory=dict, description="Intent distribution before balancing.")
    intents_after: dict[str, int] = Field(default_factory=dict, description="Intent distribution after balancing.")
    warnings: list[str] = Field(default_factory=list, description="E.g. intents below minPerIntent.")
    digest: str | None = Field(default=None, description="sha256 of the processed dataset.")


class Metrics(KubeModel):
    """Evaluation results."""

    perplexity: float | None = Field(default=None, description="Validation perplexity of the tuned model.")
    bleu: float | None = Field(default=None, description="BLEU (0-100) of generated responses.")
    rouge_l: float | None = Field(default=None, description="ROUGE-L F1 (0-1) of generated responses.")
    eval_loss: float | None = Field(default=None, description="Validation loss.")
    base_perplexity: float | None = Field(default=None, description="Validation perplexity of the base model.")


class CheckpointStatus(KubeModel):
    """The latest checkpoint a retry or resume starts from."""

    uri: str | None = Field(default=None, description="Where the checkpoint is.")
    step: int | None = Field(default=None, description="Step it was taken at.")


class Artifact(KubeModel):
    """The exported model."""

    uri: str | None = Field(default=None, description="Where the artifact (adapter and/or merged model) is.")
    digest: str | None = Field(default=None, description="sha256 of the artifact manifest.")


class FineTuneJobStatus(KubeModel):
    """Observed state of a FineTuneJob, written by the operator and the trainer."""

    phase: Phase | None = Field(default=None, description="Summary of the state.")
    conditions: list[Condition] = conditions_field()
    observed_generation: int | None = Field(default=None, description="Generation last acted on.")
    progress: Progress | None = Field(default=None, description="Live training progress.")
    data_report: DataReport | None = Field(default=None, description="Data cleaning report.")
    metrics: Metrics | None = Field(default=None, description="Evaluation results.")
    checkpoint: CheckpointStatus | None = Field(default=None, description="Latest checkpoint.")
    attempts: int | None = Field(default=None, ge=0, description="Train attempts started.")
    artifact: Artifact | None = Field(default=None, description="The exported model.")
    start_time: datetime | None = Field(default=None, description="When the job started.")
    completion_time: datetime | None = Field(default=None, description="When the job finished.")


class FineTuneJob(KubeModel):
    """Clean a dialogue dataset, fine-tune a causal LM, evaluate and export it."""

    api_version: str = Field(default="kubetune.dev/v1alpha1")
    kind: str = Field(default="FineTuneJob")
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: FineTuneJobSpec
    status: FineTuneJobStatus | None = None
