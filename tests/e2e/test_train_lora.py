"""LoRA end to end on CPU: prepare -> train -> evaluate -> export, on a tiny Llama that memorises.

The prepared data comes from the real prepare step (conftest); training, evaluation and export
run through the same CLI a pod runs.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from kubetune.api import v1alpha1
from kubetune_trainer import cli
from kubetune_trainer.config import load_config
from kubetune_trainer.evaluate.perplexity import token_loss
from kubetune_trainer.export import manifest
from kubetune_trainer.recipes import batching, trained

#: Adapt every linear layer, the LM head included: the tiny model's randomly initialised head is
#: too small for its logits to move far unless it is adapted too.
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, prepared_dir: Path) -> dict[str, Any]:
    """Train, evaluate and export once; the tests below inspect the results."""
    import shutil

    from kubetune_trainer.config import save_config

    from tests.e2e.conftest import trainer_config

    root = tmp_path_factory.mktemp("lora")
    shutil.copytree(prepared_dir, root / "work" / "data")
    config = trainer_config(
        tiny_model_dir,
        root / "work",
        training={"maxSteps": 40, "loggingSteps": 10, "checkpointSteps": 20},
        lora={"r": 16, "alpha": 32, "dropout": 0.0, "targetModules": ALL_LINEAR},
        evaluation={"compareBaseModel": True, "maxNewTokens": 24, "thresholds": {"maxPerplexity": 1.0}},
    )
    path = str(save_config(config, root / "config.json"))
    codes = {step: cli.main([step, "--config", path]) for step in ("train", "evaluate")}
    codes["export"] = cli.main(["export", "--config", path, "--dtype", "fp32"])
    return {"config": load_config(path), "codes": codes}


def test_every_step_succeeds(lora_run: dict[str, Any]) -> None:
    assert lora_run["codes"] == {"train": 0, "evaluate": 0, "export": 0}


def test_training_loss_on_the_training_set_falls_by_a_third(lora_run: dict[str, Any]) -> None:
    config: v1alpha1.TrainerConfig = lora_run["config"]
    train, _ = batching.load_splits(config.paths.prepared_dir)
    examples = batching.unpack(train)
    loaded = trained.load_trained(config.paths, dtype=torch.float32)
    pad = loaded.tokenizer.pad_token_id
    tuned = token_loss(loaded.model, examples, pad_token_id=pad)
    with loaded.model.disable_adapter():
        base = token_loss(loaded.model, examples, pad_token_id=pad)
    assert tuned.tokens == base.tokens > 0
    assert tuned.loss <= 0.7 * base.loss, f"loss {base.loss:.3f} -> {tuned.loss:.3f}"


def test_training_report_and_checkpoints(lora_run: dict[str, Any]) -> None:
    paths = lora_run["config"].paths
    report = json.loads(Path(paths.reports_dir, "training.json").read_text())
    assert report["recipe"] == "lora_single_device"
    assert (report["step"], report["totalSteps"], report["interrupted"]) == (40, 40, False)
    assert [step for step, _ in report["losses"]] == [1, 10, 20, 30, 40]
    markers = sorted(p.parent.name for p in Path(paths.checkpoints_dir).glob("checkpoint-*/kubetune-complete.json"))
    assert markers == ["checkpoint-20", "checkpoint-40"]


def test_metrics_are_sane_and_the_gate_is_reported_not_enforced(
    lora_run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = v1alpha1.Metrics.model_validate(
        json.loads(Path(lora_run["config"].paths.reports_dir, "metrics.json").read_text())
    )
    assert metrics.perplexity is not None and math.isfinite(metrics.perplexity) and metrics.perplexity > 1
    assert metrics.eval_loss == pytest.approx(math.log(metrics.perplexity))
    assert metrics.base_perplexity is not None and metrics.base_perplexity > 1
    assert metrics.bleu is not None and 0 <= metrics.bleu <= 100
    assert metrics.rouge_l is not None and 0 <= metrics.rouge_l <= 1
    # maxPerplexity 1.0 can never be met: evaluate still exited 0 (the gate is the operator's).
    assert lora_run["codes"]["evaluate"] == 0


def test_merged_model_matches_the_adapter_model(lora_run: dict[str, Any]) -> None:
    config: v1alpha1.TrainerConfig = lora_run["config"]
    adapter = trained.load_trained(config.paths, dtype=torch.float32).model
    merged = trained.load_base_model(Path(config.paths.model_dir) / "merged", dtype=torch.float32)
    ids = torch.tensor([list(range(3, 40)), list(range(40, 77))])
    with torch.no_grad():
        expected, actual = adapter(input_ids=ids).logits, merged(input_ids=ids).logits
    assert (expected - actual).abs().max().item() < 1e-4
    with torch.no_grad(), adapter.disable_adapter():
        assert (adapter(input_ids=ids).logits - actual).abs().max().item() > 1e-2  # the merge changed the weights


def test_artifact_manifest_and_digest(lora_run: dict[str, Any]) -> None:
    config: v1alpha1.TrainerConfig = lora_run["config"]
    model_dir = Path(config.paths.model_dir)
    assert manifest.verify(model_dir) == []
    body = json.loads((model_dir / "manifest.json").read_text())
    assert body["method"] == "lora" and body["dtype"] == "fp32"
    assert body["layout"] == {"adapter": "adapter", "merged": "merged", "serve": "merged"}
    assert body["metrics"]["perplexity"] > 1
    paths = {entry["path"] for entry in body["files"]}
    assert {"adapter/adapter_model.safetensors", "merged/model.safetensors", "merged/tokenizer.json"} <= paths
    artifact = v1alpha1.Artifact.model_validate(json.loads(Path(config.paths.reports_dir, "artifact.json").read_text()))
    assert artifact.uri == "pvc://artifacts/work/model"
    assert artifact.digest == manifest.manifest_digest(model_dir)


def test_progress_lines_in_the_log(make_config: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kubetune_trainer")
    config = make_config(training={"maxSteps": 4, "loggingSteps": 2})
    assert cli.main(["train", "--config", str(config)]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "kubetune_trainer.train"]
    assert any(line.startswith("train:  50%|") and "2/4" in line and "loss=" in line for line in lines), lines
    assert any("4/4" in line for line in lines)
