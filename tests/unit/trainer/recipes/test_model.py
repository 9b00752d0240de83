"""_model and the QLoRA guard: what each method leaves trainable, and the errors users can hit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from kubetune.api import v1alpha1
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.recipes import _model
from kubetune_trainer.recipes._trainer import RunOptions
from kubetune_trainer.recipes.qlora_single_device import QLoRASingleDevice, check_qlora_supported

from tests.support import specs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kubetune_trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny", vocab_size=300, num_layers=3)


def job_spec(**changes: Any) -> v1alpha1.FineTuneJobSpec:
    return v1alpha1.FineTuneJobSpec.model_validate(specs.job(**changes))


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_freeze_trains_only_the_last_layers_the_norm_and_the_head(model_dir: Path) -> None:
    model = _model.load_base_model(model_dir, dtype=torch.float32)
    _model.freeze_all_but_last_layers(model, 2)
    trained = ("model.layers.1.", "model.layers.2.", "model.norm.", "lm_head.")
    expected = {name for name, _ in model.named_parameters() if name.startswith(trained)}
    assert trainable_names(model) == expected
    assert all(any(name.startswith(prefix) for name in expected) for prefix in trained)


def test_freeze_more_layers_than_the_model_has(model_dir: Path) -> None:
    model = _model.load_base_model(model_dir, dtype=torch.float32)
    with pytest.raises(TrainerError, match="trainableLayers is 4 but the model has only 3 decoder layers"):
        _model.freeze_all_but_last_layers(model, 4)


def test_lora_trains_only_the_adapter(model_dir: Path) -> None:
    spec = job_spec(lora={"r": 4, "targetModules": ["q_proj", "v_proj"]})
    model = _model.add_adapter(_model.load_base_model(model_dir, dtype=torch.float32), _model.lora_config(spec))
    names = trainable_names(model)
    assert names and all("lora_A" in n or "lora_B" in n for n in names)
    assert {n.split(".")[-4] for n in names} == {"q_proj", "v_proj"}


def test_lora_on_a_module_the_model_does_not_have(model_dir: Path) -> None:
    spec = job_spec(lora={"targetModules": ["query_key_value"]})
    with pytest.raises(TrainerError, match="cannot attach the adapter"):
        _model.add_adapter(_model.load_base_model(model_dir, dtype=torch.float32), _model.lora_config(spec))


def test_prefix_tuning_trains_only_the_virtual_tokens(model_dir: Path) -> None:
    spec = job_spec(method="prefix", prefix={"numVirtualTokens": 5})
    model = _model.add_adapter(_model.load_base_model(model_dir, dtype=torch.float32), _model.prefix_config(spec))
    trainable, _ = _model.count_parameters(model)
    layers, hidden = 3, 64
    assert trainable == 5 * layers * 2 * hidden  # a key and a value vector per layer and virtual token


def test_a_directory_without_config_is_not_a_base_model(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match=r"has no config\.json"):
        _model.load_base_model(tmp_path, dtype=torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_fp16_falls_back_to_fp32_on_cpu() -> None:
    assert _model.effective_precision(v1alpha1.Precision.FP16) == v1alpha1.Precision.FP32
    assert _model.effective_precision(v1alpha1.Precision.BF16) == v1alpha1.Precision.BF16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_qlora_is_refused_on_cpu_before_loading_anything(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="method qlora needs a CUDA GPU"):
        check_qlora_supported()
    config = v1alpha1.TrainerConfig.model_validate(
        {
            "spec": specs.job(method="qlora"),
            # Nothing exists at these paths: the refusal must come before any of them is read.
            "paths": {"dataset": "d.jsonl", "baseModel": str(tmp_path / "absent"), "workDir": str(tmp_path)},
        }
    )
    with pytest.raises(TrainerError, match="method qlora needs a CUDA GPU"):
        QLoRASingleDevice(config, RunOptions()).setup()


def test_freeze_needs_a_model_with_decoder_layers() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64))  # layers are in .h
    with pytest.raises(TrainerError, match="cannot find the decoder layers of GPT2LMHeadModel"):
        _model.freeze_all_but_last_layers(model, 1)
