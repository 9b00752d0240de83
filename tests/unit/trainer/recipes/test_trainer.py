"""_trainer: TrainingArguments from the spec, and the learning-rate schedule they produce."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from kubetune.api import v1alpha1
from kubetune_trainer.recipes import _trainer

from tests.support import specs


def config_with(tmp_path: Path, max_steps: int | None = None, **training: Any) -> v1alpha1.TrainerConfig:
    return v1alpha1.TrainerConfig.model_validate(
        {
            "spec": specs.job(training=training),
            "paths": {"dataset": "d.jsonl", "baseModel": "m", "workDir": str(tmp_path)},
            "maxSteps": max_steps,
        }
    )


def lr_curve(config: v1alpha1.TrainerConfig, steps: int) -> list[float]:
    """The learning rate at every step, from the scheduler the recipes' trainer builds."""
    args = _trainer.training_arguments(config, precision=v1alpha1.Precision.FP32, gradient_checkpointing=False)
    model = torch.nn.Linear(2, 2)
    trainer = _trainer.RecipeTrainer(training=config.spec.training, model=model, args=args)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate)
    scheduler = trainer.create_scheduler(steps, optimizer)
    curve = []
    for _ in range(steps + 1):
        curve.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return curve


def test_cosine_warms_up_then_decays_to_the_minimum_learning_rate(tmp_path: Path) -> None:
    config = config_with(tmp_path, learningRate=1e-4, minLearningRate=1e-6, warmupRatio=0.1)
    curve = lr_curve(config, 100)
    assert curve[0] == 0.0
    assert curve[10] == pytest.approx(1e-4)
    assert curve[100] == pytest.approx(1e-6)
    assert curve[55] == pytest.approx((1e-4 + 1e-6) / 2, rel=1e-3)  # half-way down the cosine
    assert all(a >= b for a, b in itertools.pairwise(curve[10:]))


def test_linear_decays_to_the_minimum_learning_rate(tmp_path: Path) -> None:
    config = config_with(tmp_path, scheduler="linear", learningRate=1e-4, minLearningRate=1e-5, warmupRatio=0)
    curve = lr_curve(config, 10)
    assert curve[10] == pytest.approx(1e-5)
    assert curve[5] == pytest.approx(1e-4 - (1e-4 - 1e-5) * 5 / 10)


@pytest.mark.parametrize("scheduler", ["constant", "linear"])
def test_constant_and_a_flat_linear_schedule_stay_at_the_learning_rate(tmp_path: Path, scheduler: str) -> None:
    config = config_with(tmp_path, scheduler=scheduler, learningRate=1e-4, minLearningRate=1e-4, warmupRatio=0)
    assert lr_curve(config, 5) == pytest.approx([1e-4] * 6)


def test_steps_come_from_the_config_cap_then_the_spec_then_epochs(tmp_path: Path) -> None:
    assert _trainer.planned_max_steps(config_with(tmp_path, max_steps=7, maxSteps=100)) == 7
    assert _trainer.planned_max_steps(config_with(tmp_path, maxSteps=100)) == 100
    assert _trainer.planned_max_steps(config_with(tmp_path)) == -1  # train spec.training.epochs


def test_training_arguments_follow_the_spec(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        perDeviceBatchSize=3,
        gradientAccumulationSteps=5,
        epochs=2,
        checkpointSteps=50,
        loggingSteps=7,
        seed=11,
        warmupRatio=0.05,
    )
    args = _trainer.training_arguments(config, precision=v1alpha1.Precision.BF16, gradient_checkpointing=True)
    assert args.output_dir == config.paths.checkpoints_dir
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (3, 5)
    assert (args.num_train_epochs, args.max_steps) == (2, -1)
    assert (args.save_steps, args.logging_steps, args.seed) == (50, 7, 11)
    assert args.get_warmup_steps(200) == 10
    assert args.bf16 and not args.fp16
    assert args.activation_checkpointing
    assert args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert args.report_to == [] or args.report_to == ["none"]


def test_the_schedule_matches_transformers_cosine_with_min_lr(tmp_path: Path) -> None:
    from transformers import get_scheduler

    config = config_with(tmp_path, learningRate=2e-4, minLearningRate=2e-5, warmupRatio=0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    reference = get_scheduler(
        "cosine_with_min_lr",
        optimizer,
        num_warmup_steps=5,
        num_training_steps=50,
        scheduler_specific_kwargs={"min_lr": 2e-5},
    )
    expected = []
    for _ in range(51):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    assert lr_curve(config, 50) == pytest.approx(expected, rel=1e-9)
