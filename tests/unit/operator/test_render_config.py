"""The trainer ConfigMap (TrainerConfig + DeepSpeed JSON), the per-job RBAC and the deploy manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune.render import config, context, deploy, rbac

CtxOf = Callable[..., context.Context]


def test_trainer_config_round_trips_and_resolves_pod_paths(ctx_of: CtxOf) -> None:
    ctx = ctx_of("lora")
    cm = config.config_map(ctx)
    assert cm["metadata"]["name"] == "cs-lora-config"
    assert set(cm["data"]) == {"config.json"}  # LoRA on one GPU: no DeepSpeed
    loaded = v1alpha1.TrainerConfig.model_validate(json.loads(cm["data"]["config.json"]))
    assert loaded.spec == ctx.spec
    assert loaded.paths.dataset == "/mnt/pvc/kubetune-data/customer-service/dialogues.jsonl"
    assert loaded.paths.work_dir == "/mnt/pvc/kubetune-artifacts/cs-lora"
    assert loaded.paths.base_model == "hf://deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert loaded.status_target == v1alpha1.StatusTarget(name="cs-lora", namespace="ns")
    assert loaded.attempt == 1 and loaded.resume_from is None


def test_base_model_from_another_job_is_resolved(ctx_of: CtxOf, spec_of: Callable[..., Any]) -> None:
    spec = spec_of({"baseModel": {"fineTuneJobRef": {"name": "first"}}})
    ctx = ctx_of(spec, base_model_uri="pvc://artifacts/first/model")
    loaded = v1alpha1.TrainerConfig.model_validate(json.loads(config.config_map(ctx)["data"]["config.json"]))
    assert loaded.paths.base_model == "/mnt/pvc/artifacts/first/model"


def test_zero3_config_of_the_full_example_is_accepted_by_deepspeed(ctx_of: CtxOf) -> None:
    from deepspeed.runtime.config import DeepSpeedConfig

    ctx = ctx_of("full")
    data = config.config_map(ctx)["data"]
    ds = json.loads(data["deepspeed.json"])
    parsed = DeepSpeedConfig(ds)
    assert parsed.zero_optimization_stage == 3
    assert parsed.bfloat16_config.enabled
    assert parsed.gradient_accumulation_steps == 4
    assert parsed.train_micro_batch_size_per_gpu == 4


def test_per_job_role_allows_only_its_own_status(ctx_of: CtxOf) -> None:
    ctx = ctx_of("lora")
    role = rbac.role(ctx)
    assert role["rules"] == [
        {
            "apiGroups": ["kubetune.dev"],
            "resources": ["finetunejobs/status"],
            "resourceNames": ["cs-lora"],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": ["kubetune.dev"], "resources": ["finetunejobs"], "resourceNames": ["cs-lora"], "verbs": ["get"]},
    ]
    binding = rbac.role_binding(ctx)
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cs-lora-trainer", "namespace": "ns"}]
    assert rbac.service_account(ctx)["metadata"]["name"] == "cs-lora-trainer"


def test_deploy_renders_a_model_deployment_referencing_the_job(ctx_of: CtxOf, spec_of: Callable[..., Any]) -> None:
    serving = {"backend": "python", "resources": {"gpus": 0}, "replicas": 2, "engineStorage": "pvc://engines"}
    spec = spec_of({"deploy": serving})
    manifest = deploy.model_deployment(ctx_of(spec, name="tuned"))
    assert manifest is not None
    assert manifest["kind"] == "ModelDeployment"
    assert manifest["metadata"]["name"] == "tuned"
    assert manifest["metadata"]["ownerReferences"][0]["name"] == "tuned"
    assert manifest["spec"]["model"] == {"fineTuneJobRef": {"name": "tuned"}}
    assert manifest["spec"]["backend"] == "python"
    assert manifest["spec"]["replicas"] == 2
    assert manifest["spec"]["engineStorage"] == "pvc://engines"  # for an artifact written to s3://
    v1alpha1.ModelDeploymentSpec.model_validate(manifest["spec"])


def test_deploy_name_override_and_absence(ctx_of: CtxOf, spec_of: Callable[..., Any]) -> None:
    named = spec_of({"deploy": {"name": "chat-bot", "backend": "python", "resources": {"gpus": 0}}})
    manifest = deploy.model_deployment(ctx_of(named, name="tuned"))
    assert manifest is not None and manifest["metadata"]["name"] == "chat-bot"
    assert deploy.model_deployment(ctx_of(spec_of())) is None
    assert deploy.deployment_name(ctx_of(spec_of())) is None


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("pvc://claim/a/b", "/mnt/pvc/claim/a/b"),
        ("pvc://claim", "/mnt/pvc/claim"),
        ("s3://bucket/key", "s3://bucket/key"),
        ("hf://org/name@rev", "hf://org/name@rev"),
    ],
)
def test_pod_path(uri: str, path: str) -> None:
    assert config.pod_path(uri) == path
