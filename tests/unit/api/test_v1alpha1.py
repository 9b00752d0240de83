"""Unit tests of the v1alpha1 models: defaults, round trips and every validation, without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from kubetune.api import v1alpha1

from tests.support.specs import INVALID_DEPLOYMENTS, INVALID_JOBS, MINIMAL_DEPLOYMENT, MINIMAL_JOB, job

EXAMPLES = Path(__file__).parents[3] / "examples"


def validate_job(spec: dict[str, Any]) -> v1alpha1.FineTuneJobSpec:
    return v1alpha1.FineTuneJobSpec.model_validate(spec, context={"cel": True})


def validate_deployment(spec: dict[str, Any]) -> v1alpha1.ModelDeploymentSpec:
    return v1alpha1.ModelDeploymentSpec.model_validate(spec, context={"cel": True})


class TestDefaults:
    def test_finetunejob_defaults_follow_the_guide(self) -> None:
        spec = validate_job(MINIMAL_JOB)
        lora = spec.effective_lora()
        assert (lora.r, lora.alpha, lora.dropout, lora.target_modules) == (16, 32, 0.1, ["q_proj", "v_proj"])
        assert lora.bias == v1alpha1.finetunejob.LoraBias.NONE
        training = spec.training
        assert training.learning_rate == 1e-4
        assert training.min_learning_rate == 1e-6
        assert training.scheduler == v1alpha1.Scheduler.COSINE
        assert training.gradient_accumulation_steps == 4
        assert spec.dataset.cleaning.quality_filter.threshold == 0.7
        assert spec.dataset.cleaning.balance.min_per_intent == 500
        assert spec.dataset.cleaning.balance.field == "intent"
        assert set(spec.dataset.cleaning.pii_redaction.entities) == set(v1alpha1.PIIEntity)
        assert spec.method == v1alpha1.Method.LORA
        assert spec.resources.gpu_resource_name == "nvidia.com/gpu"

    def test_qlora_defaults(self) -> None:
        qlora = validate_job(job(method="qlora")).effective_qlora()
        assert (qlora.bits, qlora.quant_type, qlora.double_quant) == (4, v1alpha1.finetunejob.QuantType.NF4, True)

    def test_deployment_defaults(self) -> None:
        spec = validate_deployment(MINIMAL_DEPLOYMENT)
        assert spec.engine.max_batch_size == 32
        assert spec.engine.max_num_tokens == 4096
        assert spec.engine.kv_cache_free_gpu_mem_fraction == 0.8
        assert spec.backend == v1alpha1.Backend.TENSORRTLLM
        assert spec.rollout.max_unavailable == 0
        assert (spec.service.http_port, spec.service.grpc_port, spec.service.metrics_port) == (8000, 8001, 8002)

    @pytest.mark.parametrize(("method", "stage"), [("full", 3), ("lora", 0), ("freeze", 0), ("prefix", 0)])
    def test_zero_stage_defaults_to_three_for_full(self, method: str, stage: int) -> None:
        assert validate_job(job(method=method)).effective_zero_stage() == stage

    def test_explicit_zero_stage_wins(self) -> None:
        spec = validate_job(job(method="lora", deepspeed={"zeroStage": 2}))
        assert spec.effective_zero_stage() == 2
        assert spec.uses_deepspeed()


class TestRoundTrip:
    @pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
    def test_examples_round_trip(self, path: Path) -> None:
        manifest = yaml.safe_load(path.read_text())
        model_class = v1alpha1.FineTuneJob if manifest["kind"] == "FineTuneJob" else v1alpha1.ModelDeployment
        obj = model_class.model_validate(manifest, context={"cel": True})
        again = model_class.model_validate(obj.to_k8s())
        assert again == obj
        # What the user wrote survives unchanged (defaults are only added).
        dumped = obj.to_k8s()
        assert _is_subset(manifest["spec"], dumped["spec"])

    def test_camel_case_on_the_wire(self) -> None:
        dumped = validate_job(job(training={"learningRate": 5e-5})).to_k8s()
        assert dumped["training"]["learningRate"] == 5e-5
        assert "learning_rate" not in dumped["training"]
        assert dumped["method"] == "lora"

    def test_trainer_config_round_trip(self) -> None:
        config = v1alpha1.TrainerConfig(
            spec=validate_job(MINIMAL_JOB),
            paths=v1alpha1.TrainerPaths(dataset="/d.jsonl", base_model="/m", work_dir="/w"),
            attempt=2,
            resume_from="/w/checkpoints/checkpoint-10",
        )
        again = v1alpha1.TrainerConfig.model_validate(config.to_k8s())
        assert again == config
        assert again.paths.checkpoints_dir == "/w/checkpoints"


def _is_subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _is_subset(v, big[k]) for k, v in small.items())
    if isinstance(small, float) or isinstance(big, float):
        return float(small) == float(big)
    return bool(small == big)


@pytest.mark.parametrize(("spec", "field"), [c[1:] for c in INVALID_JOBS], ids=[c[0] for c in INVALID_JOBS])
def test_invalid_finetunejob_is_rejected_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        validate_job(spec)
    assert field in _error_text(err.value)


@pytest.mark.parametrize(
    ("spec", "field"), [c[1:] for c in INVALID_DEPLOYMENTS], ids=[c[0] for c in INVALID_DEPLOYMENTS]
)
def test_invalid_deployment_is_rejected_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        validate_deployment(spec)
    assert field in _error_text(err.value)


def test_a_model_off_a_volume_is_valid_with_engine_storage() -> None:
    for uri in ("hf://org/name@main", "s3://bucket/model"):
        spec = validate_deployment({"model": {"uri": uri}, "engineStorage": "pvc://engines/cache"})
        assert spec.engine_storage == "pvc://engines/cache"


def _error_text(err: pydantic.ValidationError) -> str:
    return "; ".join(".".join(map(str, e["loc"])) + ": " + e["msg"] for e in err.errors())


def test_cel_rules_are_skipped_without_the_context() -> None:
    # The operator reads admitted objects: it does not pay for evaluating CEL again.
    spec = v1alpha1.FineTuneJobSpec.model_validate(job(method="full", lora={"r": 8}))
    assert spec.lora is not None


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("hf://org/name@v1.0", v1alpha1.ParsedURI("hf", "org/name", "", "v1.0")),
        ("hf://org/name", v1alpha1.ParsedURI("hf", "org/name", "", None)),
        ("pvc://claim/a/b.jsonl", v1alpha1.ParsedURI("pvc", "claim", "a/b.jsonl")),
        ("s3://bucket/prefix/", v1alpha1.ParsedURI("s3", "bucket", "prefix")),
    ],
)
def test_parse_uri(uri: str, parsed: v1alpha1.ParsedURI) -> None:
    assert v1alpha1.parse_uri(uri) == parsed


def test_pvc_local_path_and_errors() -> None:
    assert v1alpha1.parse_uri("pvc://claim/a/b").local_path() == "/mnt/pvc/claim/a/b"
    with pytest.raises(ValueError, match="pvc://"):
        v1alpha1.parse_uri("s3://bucket/key").local_path()
    with pytest.raises(ValueError, match="unsupported URI"):
        v1alpha1.parse_uri("ftp://host/file")


def test_describe_errors_names_fields_by_yaml_path() -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        v1alpha1.FineTuneJobSpec.model_validate(job(lora={"r": 0}))
    assert v1alpha1.describe_errors(err.value, prefix="spec.").startswith("spec.lora.r: ")
    assert v1alpha1.describe_errors(ValueError("plain")) == "plain"
