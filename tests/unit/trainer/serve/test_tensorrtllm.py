from __future__ import annotations

from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.serve import pbtxt, tensorrtllm

ENGINE_DIR = "/models/tensorrt_llm/1"


def _spec(quantization: str = "fp16", **engine: object) -> v1alpha1.ServingSpec:
    return v1alpha1.ServingSpec.model_validate(
        {"backend": "tensorrtllm", "quantization": quantization, "engine": engine}
    )


def _configs(spec: v1alpha1.ServingSpec, name: str = "llm") -> dict[str, Any]:
    files = tensorrtllm.files(spec, name, engine_dir=ENGINE_DIR)
    return {path.split("/")[0]: pbtxt.validate_config(text) for path, text in files.items() if path.endswith(".pbtxt")}


@pytest.mark.parametrize("quantization", [q.value for q in v1alpha1.Quantization])
@pytest.mark.parametrize("dynamic", [True, False])
def test_every_config_parses_for_every_quantization(quantization: str, dynamic: bool) -> None:
    configs = _configs(_spec(quantization, dynamicBatching=dynamic, maxBatchSize=16))
    assert set(configs) == {"preprocessing", "tensorrt_llm", "postprocessing", "llm"}
    assert {c.max_batch_size for c in configs.values()} == {16}


def test_tensorrt_llm_model_uses_inflight_batching_and_the_spec_limits() -> None:
    spec = _spec(maxBatchSize=8, maxInputLen=1000, maxOutputLen=24, kvCacheFreeGpuMemFraction=0.6)
    config = _configs(spec)["tensorrt_llm"]
    assert config.backend == "tensorrtllm"
    assert config.model_transaction_policy.decoupled is True
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters["gpt_model_type"] == "inflight_fused_batching"
    assert parameters["gpt_model_path"] == ENGINE_DIR
    assert parameters["kv_cache_free_gpu_mem_fraction"] == "0.6"
    assert parameters["max_tokens_in_paged_kv_cache"] == str(8 * (1000 + 24))
    assert parameters["batch_scheduler_policy"] == "guaranteed_no_evict"
    assert not any(value.startswith("${") for value in parameters.values())  # no template left unfilled


def test_decoupled_can_be_switched_off() -> None:
    text = tensorrtllm.tensorrt_llm_config(_spec(), ENGINE_DIR, decoupled=False)
    assert pbtxt.validate_config(text).model_transaction_policy.decoupled is False


def test_preprocessing_parameters_follow_the_spec() -> None:
    config = _configs(_spec(maxInputLen=77, maxOutputLen=9))["preprocessing"]
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters == {
        "tokenizer_dir": "tokenizer",
        "max_input_len": "77",
        "max_output_len": "9",
        "default_max_tokens": "9",
        "apply_chat_template": "true",
    }


def test_ensemble_steps_connect_existing_tensors_in_order() -> None:
    """Every mapped tensor exists on its model, and intermediate tensors are produced before use."""
    configs = _configs(_spec(), "chat")
    ensemble = configs["chat"]
    assert ensemble.platform == "ensemble"
    available = {tensor.name for tensor in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        inputs = {tensor.name for tensor in model.input}
        outputs = {tensor.name for tensor in model.output}
        assert set(step.input_map) <= inputs, step.model_name
        assert set(step.input_map.values()) <= available, step.model_name
        required = {tensor.name for tensor in model.input if not tensor.optional}
        assert required <= set(step.input_map), step.model_name
        assert set(step.output_map) <= outputs, step.model_name
        available |= set(step.output_map.values())
    assert {tensor.name for tensor in ensemble.output} <= available


def test_ensemble_keeps_the_generate_extension_names() -> None:
    ensemble = _configs(_spec())["llm"]
    assert [t.name for t in ensemble.input][:2] == ["text_input", "max_tokens"]
    assert [t.name for t in ensemble.output] == ["text_output"]


def test_files_include_the_python_steps_and_version_dirs() -> None:
    files = tensorrtllm.files(_spec(), engine_dir=ENGINE_DIR)
    for step in ("preprocessing", "postprocessing"):
        compile(files[f"{step}/1/model.py"], f"{step}.py", "exec")
    assert "tensorrt_llm/1/.keep" in files and "llm/1/.keep" in files


@pytest.mark.parametrize("name", ["preprocessing", "tensorrt_llm", "postprocessing"])
def test_entry_name_must_not_collide_with_a_step(name: str) -> None:
    with pytest.raises(ValueError, match="collides"):
        tensorrtllm.files(_spec(), name, engine_dir=ENGINE_DIR)


def test_kv_cache_tokens_is_a_full_batch_of_longest_sequences() -> None:
    engine = v1alpha1.EngineSpec.model_validate({"maxBatchSize": 4, "maxInputLen": 100, "maxOutputLen": 28})
    assert tensorrtllm.kv_cache_tokens(engine) == 512
