from __future__ import annotations

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.serve import pbtxt, python_backend


def _spec(**engine: object) -> v1alpha1.ServingSpec:
    return v1alpha1.ServingSpec.model_validate({"backend": "python", "engine": engine})


@pytest.mark.parametrize("dynamic", [True, False])
def test_config_parses_and_follows_the_engine_settings(dynamic: bool) -> None:
    spec = _spec(maxBatchSize=8, dynamicBatching=dynamic, maxInputLen=300, maxOutputLen=40)
    config = pbtxt.validate_config(python_backend.config(spec, "chat"))
    assert config.name == "chat"
    assert config.backend == "python"
    assert config.max_batch_size == 8
    assert config.HasField("dynamic_batching") is dynamic
    if dynamic:
        assert config.dynamic_batching.max_queue_delay_microseconds == python_backend.DEFAULT_QUEUE_DELAY_US
    assert [t.name for t in config.input] == ["text_input", "max_tokens", "temperature"]
    assert [t.optional for t in config.input] == [False, True, True]
    assert [t.name for t in config.output] == ["text_output"]
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters["max_input_len"] == "300"
    assert parameters["max_output_len"] == "40"
    assert parameters["default_max_tokens"] == "40"  # capped by maxOutputLen
    assert parameters["model_dir"] == python_backend.WEIGHTS_DIR
    assert parameters["num_threads"] == "0"  # decided by the model at load time from its CPU quota


def test_config_options_reach_the_file() -> None:
    text = python_backend.config(
        _spec(), model_dir="/abs/model", queue_delay_us=250, instance_count=2, device="cpu", num_threads=3
    )
    config = pbtxt.validate_config(text)
    assert config.parameters["num_threads"].string_value == "3"
    assert config.parameters["model_dir"].string_value == "/abs/model"
    assert config.parameters["device"].string_value == "cpu"
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert config.instance_group[0].count == 2


def test_files_hold_the_config_and_a_model_py_that_compiles() -> None:
    files = python_backend.files(_spec(), "llm")
    assert set(files) == {"llm/config.pbtxt", "llm/1/model.py"}
    source = files["llm/1/model.py"]
    compile(source, "model.py", "exec")
    assert "class TritonPythonModel" in source
    assert "kubetune" not in source.split('"""', 2)[2]  # self-contained: no kubetune imports in the code
