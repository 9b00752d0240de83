"""Prefix tuning, layer freezing and full fine-tuning train on CPU; QLoRA is refused there.

Full fine-tuning runs under DeepSpeed ZeRO-3 for real: DeepSpeed's CPU accelerator with the gloo
backend, in a subprocess as in a pod (one process, its own one-member process group).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from kubetune_trainer import cli
from kubetune_trainer.config import load_config
from kubetune_trainer.evaluate.perplexity import token_loss
from kubetune_trainer.export import manifest
from kubetune_trainer.recipes import batching, checkpoints, trained
from safetensors.torch import load_file

FEW_STEPS: dict[str, Any] = {"maxSteps": 6, "loggingSteps": 1, "checkpointSteps": 1000}


def work_dir(config: Path) -> Path:
    return config.parent / config.stem


def training_report(config: Path) -> dict[str, Any]:
    return json.loads((work_dir(config) / "reports" / "training.json").read_text())


def losses(config: Path) -> list[float]:
    return [loss for _, loss in training_report(config)["losses"]]


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def test_prefix_tuning_trains_evaluates_and_exports_an_adapter(make_config: Any) -> None:
    config = make_config(method="prefix", prefix={"numVirtualTokens": 4}, training=FEW_STEPS)
    assert cli.main(["train", "--config", str(config)]) == 0
    report = training_report(config)
    assert (report["recipe"], report["step"]) == ("prefix_single_device", 6)
    # Logged losses are per batch of unpacked examples (noisy); the loss on the whole training set
    # must fall. Little, on a tiny random model whose LM head the prefix cannot change.
    loaded = trained.load_trained(load_config(config).paths, dtype=torch.float32)
    train, _ = batching.load_splits(load_config(config).paths.prepared_dir)
    examples = batching.unpack(train)
    tuned = token_loss(loaded.model, examples, pad_token_id=loaded.tokenizer.pad_token_id)
    with loaded.model.disable_adapter():
        base = token_loss(loaded.model, examples, pad_token_id=loaded.tokenizer.pad_token_id)
    assert tuned.loss < base.loss - 1e-3, (base.loss, tuned.loss)
    assert cli.main(["evaluate", "--config", str(config)]) == 0
    assert cli.main(["export", "--config", str(config)]) == 0
    body = json.loads((work_dir(config) / "model" / "manifest.json").read_text())
    assert body["layout"] == {"adapter": "adapter", "merged": None, "serve": "adapter"}  # nothing to merge
    assert manifest.verify(work_dir(config) / "model") == []


def test_freeze_trains_only_the_last_layer_and_exports_a_full_model(make_config: Any, tiny_model_dir: Path) -> None:
    config = make_config(method="freeze", freeze={"trainableLayers": 1}, training=FEW_STEPS)
    assert cli.main(["train", "--config", str(config)]) == 0
    assert training_report(config)["recipe"] == "freeze_distributed"
    assert losses(config)[-1] < losses(config)[0]
    base, tuned = weights(tiny_model_dir), weights(work_dir(config) / "checkpoints" / "final")
    changed = {name for name in base if not torch.equal(base[name], tuned[name])}
    assert changed and all(name.startswith(("model.layers.1.", "model.norm.", "lm_head.")) for name in changed)
    assert any(name.startswith("model.layers.1.") for name in changed)
    assert cli.main(["export", "--config", str(config), "--dtype", "bf16"]) == 0
    merged = weights(work_dir(config) / "model" / "merged")
    assert {t.dtype for t in merged.values()} == {torch.bfloat16}


def test_full_fine_tuning_under_deepspeed_zero3_on_cpu(make_config: Any, tiny_model_dir: Path) -> None:
    config = make_config(
        method="full",
        deepspeed={"zeroStage": 3},
        training={**FEW_STEPS, "maxSteps": 4, "checkpointSteps": 2, "precision": "bf16"},
    )
    result = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer", "train", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DeepSpeed ZeRO stage 3" in result.stderr
    report = training_report(config)
    assert (report["recipe"], report["step"]) == ("full_distributed", 4)
    assert losses(config)[-1] < losses(config)[0]
    # A DeepSpeed checkpoint: ZeRO-partitioned optimizer state under global_step<N>/, with the marker.
    checkpoint = checkpoints.latest_complete(work_dir(config) / "checkpoints")
    assert checkpoint is not None and checkpoint.name == "checkpoint-4"
    assert list((checkpoint / "global_step4").glob("*zero_pp_rank_0*optim_states.pt"))
    # The final weights were gathered from the shards into an ordinary, changed, full model.
    base, tuned = weights(tiny_model_dir), weights(work_dir(config) / "checkpoints" / "final")
    assert base.keys() == tuned.keys()
    assert all(tuned[name].shape == base[name].shape for name in base)
    assert not torch.equal(
        base["model.layers.0.self_attn.q_proj.weight"], tuned["model.layers.0.self_attn.q_proj.weight"].float()
    )


def test_lora_under_deepspeed_zero2_uses_the_distributed_recipe(make_config: Any) -> None:
    config = make_config(deepspeed={"zeroStage": 2}, training={**FEW_STEPS, "maxSteps": 3})
    result = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer", "train", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DeepSpeed ZeRO stage 2" in result.stderr
    assert training_report(config)["recipe"] == "lora_distributed"
    assert (work_dir(config) / "checkpoints" / "final" / "adapter_model.safetensors").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA runs where there is a GPU")
def test_qlora_is_refused_on_cpu_with_a_clear_message(make_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(method="qlora", training=FEW_STEPS)
    assert cli.main(["train", "--config", str(config)]) == 2
    assert "method qlora needs a CUDA GPU" in capsys.readouterr().err
    assert not (work_dir(config) / "checkpoints").exists()
    assert load_config(config).spec.method.value == "qlora"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks bf16 on the CPU")
def test_lora_in_bf16_on_cpu(make_config: Any) -> None:
    config = make_config(training={**FEW_STEPS, "maxSteps": 3, "precision": "bf16"})
    assert cli.main(["train", "--config", str(config)]) == 0
    summary = json.loads((work_dir(config) / "checkpoints" / "final" / "kubetune-training.json").read_text())
    assert summary["precision"] == "bf16"
    assert all(math.isfinite(loss) for loss in losses(config))
