"""Errors a user can cause in the train, evaluate and export steps: exit code 2 and a message that says what to fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from kubetune_trainer import cli
from kubetune_trainer.config import load_config


def run(step: str, config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main([step, "--config", str(config)])
    return code, capsys.readouterr().err


def test_training_without_prepared_data(make_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config()
    shutil.rmtree(load_config(config).paths.prepared_dir)
    code, err = run("train", config, capsys)
    assert code == 2 and "no tokenized data" in err


def test_training_on_an_empty_training_split(
    make_config: Any, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubetune_trainer.data import tokenize

    config = make_config()
    paths, spec = load_config(config).paths, load_config(config).spec
    tokenized = Path(paths.prepared_dir) / tokenize.TOKENIZED_DIR
    shutil.rmtree(tokenized)
    tokenize.tokenize_splits(tokenize.load_tokenizer(str(tiny_model_dir)), {"train": [], "validation": []},
                             spec.training, tokenized)  # fmt: skip
    code, err = run("train", config, capsys)
    assert code == 2 and "training split" in err and "is empty" in err


def test_training_from_a_directory_that_is_not_a_model(make_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config()
    data = json.loads(config.read_text())
    data["paths"]["baseModel"] = str(config.parent / "no-model")
    config.write_text(json.dumps(data))
    code, err = run("train", config, capsys)
    assert code == 2 and "base model not found" in err and "config.json" in err


def test_freezing_more_layers_than_the_model_has(make_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run("train", make_config(method="freeze", freeze={"trainableLayers": 5}), capsys)
    assert code == 2 and "spec.freeze.trainableLayers is 5 but the model has only 2 decoder layers" in err


def test_lora_on_modules_the_model_does_not_have(make_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run("train", make_config(lora={"targetModules": ["c_attn"]}), capsys)
    assert code == 2 and "cannot attach the adapter" in err and "c_attn" in err


@pytest.mark.parametrize("step", ["evaluate", "export"])
def test_evaluate_and_export_need_a_trained_model(
    make_config: Any, step: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config()
    code, err = run(step, config, capsys)
    assert code == 2 and "run the train step first" in err
    assert not Path(load_config(config).paths.model_dir).exists()
