"""deepspeed_config: every stage, precision and offload combination is accepted by DeepSpeed itself."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.recipes.deepspeed_config import MAX_GRAD_NORM, deepspeed_config

from tests.support import specs

COMBINATIONS = [
    (stage, precision, offload_optimizer, offload_params)
    for stage, precision, offload_optimizer, offload_params in itertools.product(
        range(4), ["bf16", "fp16", "fp32"], [False, True], [False, True]
    )
    if not offload_params or stage == 3  # the API rejects offloadParams below ZeRO-3
]


def job_spec(**changes: Any) -> v1alpha1.FineTuneJobSpec:
    return v1alpha1.FineTuneJobSpec.model_validate(specs.job(**changes))


def spec_for(stage: int, precision: str, offload_optimizer: bool, offload_params: bool) -> v1alpha1.FineTuneJobSpec:
    return job_spec(
        method="full",
        deepspeed={"zeroStage": stage, "offloadOptimizer": offload_optimizer, "offloadParams": offload_params},
        training={"precision": precision, "perDeviceBatchSize": 2, "gradientAccumulationSteps": 8},
    )


def all_values(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in all_values(value)]
    if isinstance(node, list):
        return [v for value in node for v in all_values(value)]
    return [node]


@pytest.mark.parametrize(("stage", "precision", "offload_optimizer", "offload_params"), COMBINATIONS)
def test_deepspeed_accepts_every_combination(
    stage: int, precision: str, offload_optimizer: bool, offload_params: bool
) -> None:
    from deepspeed.runtime.config import DeepSpeedConfig

    config = deepspeed_config(spec_for(stage, precision, offload_optimizer, offload_params), hidden_size=64)
    parsed = DeepSpeedConfig(json.loads(json.dumps(config)))  # JSON round trip: what the operator renders

    assert parsed.zero_optimization_stage == stage
    assert parsed.train_micro_batch_size_per_gpu == 2
    assert parsed.gradient_accumulation_steps == 8
    assert parsed.train_batch_size == 2 * 8  # derived by DeepSpeed: one config for any world size
    assert parsed.gradient_clipping == MAX_GRAD_NORM
    assert parsed.bfloat16_config.enabled == (precision == "bf16")
    assert parsed.float16_config.enabled == (precision == "fp16")
    zero = parsed.zero_config
    assert (zero.offload_optimizer is not None and zero.offload_optimizer.device == "cpu") == (
        offload_optimizer and stage > 0
    )
    assert (zero.offload_param is not None and zero.offload_param.device == "cpu") == offload_params
    assert "auto" not in all_values(config)


def test_offloading_the_optimizer_uses_deepspeeds_adamw_with_the_spec_learning_rate() -> None:
    spec = job_spec(
        method="full", deepspeed={"zeroStage": 2, "offloadOptimizer": True}, training={"learningRate": 3e-5}
    )
    config = deepspeed_config(spec)
    assert config["optimizer"]["type"] == "AdamW"
    assert config["optimizer"]["params"]["lr"] == 3e-5
    assert "optimizer" not in deepspeed_config(job_spec(method="full", deepspeed={"zeroStage": 2}))


def test_full_fine_tuning_defaults_to_zero3_gathering_weights_on_save() -> None:
    zero = deepspeed_config(job_spec(method="full"))["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True


def test_bucket_sizes_follow_the_hidden_size_like_the_hf_auto_values() -> None:
    zero = deepspeed_config(job_spec(method="full"), hidden_size=4096)["zero_optimization"]
    assert zero["reduce_bucket_size"] == 4096 * 4096
    assert zero["stage3_prefetch_bucket_size"] == int(0.9 * 4096 * 4096)
    assert zero["stage3_param_persistence_threshold"] == 10 * 4096
    assert "reduce_bucket_size" not in deepspeed_config(job_spec(method="full"))["zero_optimization"]


def test_stage_zero_has_no_zero_options() -> None:
    assert deepspeed_config(job_spec())["zero_optimization"] == {"stage": 0}


def test_the_module_imports_neither_torch_nor_deepspeed() -> None:
    code = (
        "import sys, kubetune_trainer.recipes.deepspeed_config, kubetune_trainer.recipes.registry; "
        "heavy = [m for m in ('torch', 'deepspeed', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_offload_is_ignored_without_a_zero_stage() -> None:
    config = deepspeed_config(job_spec(deepspeed={"zeroStage": 0, "offloadOptimizer": True}))
    assert config["zero_optimization"] == {"stage": 0}
    assert "optimizer" not in config
