"""Fixtures of the end-to-end training tests: a tiny model, a tiny prepared dataset, configs.

Why this module exists: training, evaluation and export run for real on CPU, so every test
needs a base model directory and a prepared dataset. Both are built once per session in a
temporary directory (nothing is downloaded): a 2-layer Llama with a tokenizer trained on the
dialogues below, and those dialogues run through the real prepare step, few enough for that
model to memorise in a few dozen steps.
``make_config`` then gives each test its own work directory with a copy of the prepared data.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.config import save_config

#: (customer message, agent response, intent): short dialogues, English and Chinese.
DIALOGUES = [
    ("Where is my order?", "Your order has shipped and arrives in 3 days.", "order_status"),
    ("I want a refund.", "Sure, I have started your refund. It takes 5 days.", "refund"),
    ("The item is broken.", "Sorry about that. Please send a photo of the item.", "complaint"),
    ("Can I change my address?", "Yes, tell me the new address please.", "address"),
    ("我的订单到哪里了？", "您的订单已发货，预计三天内送达。", "order_status"),
    ("我要退款。", "好的，已为您申请退款，五个工作日内到账。", "refund"),
    ("商品坏了。", "非常抱歉，请拍照发给我们。", "complaint"),
    ("可以改地址吗？", "可以的，请告诉我新的地址。", "address"),
    ("How do I reset my password?", "Click Forgot password on the login page.", "account"),
    ("怎么修改密码？", "请在登录页点击忘记密码。", "account"),
    ("Do you ship abroad?", "Yes, we ship to most countries.", "shipping"),
    ("运费多少钱？", "满九十九元包邮。", "shipping"),
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama checkpoint whose tokenizer was trained on the test dialogues."""
    from kubetune_trainer.tiny import build_tiny_model

    corpus = [text for context, response, _ in DIALOGUES for text in (context, response)]
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model", corpus, vocab_size=512)


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The dialogues run through the real prepare step (clean, split, tokenize, pack) once per session."""
    from kubetune_trainer import cli

    root = tmp_path_factory.mktemp("prepare")
    dataset = root / "dialogues.jsonl"
    lines = [{"context": c, "response": r, "intent": i} for c, r, i in DIALOGUES]
    dataset.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    config = trainer_config(tiny_model_dir, root / "work", dataset=dataset, name="prepare")
    assert cli.main(["prepare", "--config", str(save_config(config, root / "config.json")), "--no-progress"]) == 0
    return Path(config.paths.prepared_dir)


def trainer_config(
    base_model: Path,
    work: Path,
    *,
    method: str = "lora",
    training: dict[str, Any] | None = None,
    dataset: Path | None = None,
    name: str = "work",
    max_steps: int | None = None,
    **spec: Any,
) -> v1alpha1.TrainerConfig:
    """A TrainerConfig for the tiny model with fast CPU training settings."""
    return v1alpha1.TrainerConfig.model_validate(
        {
            "spec": {
                "baseModel": {"uri": "pvc://models/tiny"},
                "dataset": {"uri": "pvc://data/dialogues.jsonl", "format": "triple", "validationSplit": 0.25},
                "output": {"uri": f"pvc://artifacts/{name}"},
                "method": method,
                "training": {**FAST_TRAINING, **(training or {})},
                **spec,
            },
            "paths": {"dataset": str(dataset or "unused.jsonl"), "baseModel": str(base_model), "workDir": str(work)},
            "maxSteps": max_steps,
        }
    )


ConfigFactory = Callable[..., Path]


@pytest.fixture
def make_config(tmp_path: Path, tiny_model_dir: Path, prepared_dir: Path) -> ConfigFactory:
    """Write a trainer config for a fresh work directory holding a copy of the prepared data.

    Keyword arguments are those of :func:`trainer_config`: ``method``, ``training`` (merged over
    :data:`FAST_TRAINING`), ``max_steps``, any other spec field (``lora``, ``deepspeed``...), and
    ``name``, the work directory's name, to keep several runs apart in one test. Returns the
    config file's path.
    """

    def factory(*, name: str = "work", **options: Any) -> Path:
        work = tmp_path / name
        shutil.copytree(prepared_dir, work / "data")
        config = trainer_config(tiny_model_dir, work, name=name, **options)
        return save_config(config, tmp_path / f"{name}.json")

    return factory


#: Training settings that make a CPU run take seconds and memorise the tiny dataset.
FAST_TRAINING: dict[str, Any] = {
    "learningRate": 5e-3,
    "minLearningRate": 5e-4,
    "warmupRatio": 0.0,
    "perDeviceBatchSize": 4,
    "gradientAccumulationSteps": 1,
    "maxSeqLength": 128,
    "precision": "fp32",
    "gradientCheckpointing": False,
    "packing": True,
    "maxSteps": 4,
    "checkpointSteps": 1000,
    "loggingSteps": 1,
    "seed": 7,
}
