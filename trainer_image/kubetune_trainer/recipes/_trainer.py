"""The Hugging Face ``Trainer`` as every recipe drives it, built from ``spec.training``.

Recipes differ in the model they hand over; the loop, the schedule, mixed precision,
checkpointing and resumption are the same and are configured here, once. Each
``TrainingArguments`` field below follows
https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments.

* Schedule: ``cosine`` decays from ``learningRate`` to ``minLearningRate`` along half a cosine
  wave, ``linear`` decays linearly to it, ``constant`` stays flat; all warm up linearly over
  ``warmupRatio`` of the steps (:func:`learning_rate_factor`, installed by :class:`RecipeTrainer`).
* Length: ``TrainerConfig.maxSteps`` (a cap for smoke runs), else ``spec.training.maxSteps``,
  else ``spec.training.epochs``.
* Checkpoints: every ``checkpointSteps`` into ``checkpoints/checkpoint-<step>`` with optimizer,
  scheduler and RNG state, so a resumed run continues the same trajectory.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from kubetune.api import v1alpha1
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from kubetune_trainer.fsutil import atomic_file
from kubetune_trainer.progress import ProgressCallback
from kubetune_trainer.recipes import _callbacks, _distributed, _model, checkpoints
from kubetune_trainer.recipes import deepspeed_config as ds
from kubetune_trainer.status import StatusReporter

log = logging.getLogger(__name__)

#: Periodic checkpoints kept on disk (older ones are deleted as new ones complete).
KEEP_CHECKPOINTS = 3


@dataclass(frozen=True)
class RunOptions:
    """How one invocation of the train step runs, beyond the config.

    Attributes:
        resume_from: checkpoint directory to resume from (``None``: from scratch).
        stop_at: save and stop once this step is reached, as a preemption would.
        reporter: status reporter of the FineTuneJob, if any.
    """

    resume_from: Path | None = None
    stop_at: int | None = None
    reporter: StatusReporter | None = None


@dataclass
class RunResult:
    """What a recipe's ``train()`` achieved.

    Attributes:
        step: optimizer steps done in total (including those before a resume).
        total_steps: steps planned.
        interrupted: stopped before the end (SIGTERM or ``stop_at``); resume to finish.
        loss: the last logged training loss.
        losses: ``(step, loss)`` of every log line of this attempt.
        checkpoint: the latest complete checkpoint written by this attempt.
    """

    step: int
    total_steps: int
    interrupted: bool
    loss: float | None
    losses: list[tuple[int, float]] = field(default_factory=list)
    checkpoint: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """CamelCase JSON, like the API's own objects."""
        return {
            "step": self.step,
            "totalSteps": self.total_steps,
            "interrupted": self.interrupted,
            "loss": self.loss,
            "losses": [[step, loss] for step, loss in self.losses],
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
        }


def learning_rate_factor(
    step: int, *, warmup_steps: int, total_steps: int, scheduler: v1alpha1.Scheduler, min_ratio: float
) -> float:
    """The learning rate at ``step`` as a fraction of the peak (``learningRate``).

    Linear warm-up from 0 over ``warmup_steps``, then ``cosine`` (half a cosine wave) or
    ``linear`` decay to ``min_ratio`` at ``total_steps``, or ``constant`` at the peak.

    Args:
        step: optimizer steps done.
        warmup_steps: length of the warm-up.
        total_steps: length of the whole schedule.
        scheduler: the shape after warm-up.
        min_ratio: ``minLearningRate / learningRate``.

    Returns:
        The factor the peak learning rate is multiplied by.
    """
    if step < warmup_steps:
        return step / warmup_steps
    if scheduler == v1alpha1.Scheduler.CONSTANT:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if scheduler == v1alpha1.Scheduler.COSINE else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * decay


class RecipeTrainer(Trainer):
    """The Hugging Face ``Trainer`` with kubetune's learning-rate schedule.

    transformers' own ``cosine_with_min_lr`` and ``polynomial`` schedules read the peak learning
    rate from ``optimizer.defaults``, which DeepSpeed's ZeRO optimizers do not have; this schedule
    takes it from the spec instead, and works with any optimizer.
    """

    def __init__(self, *, training: v1alpha1.TrainingSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_spec = training

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None) -> Any:
        """Build the schedule once the number of steps is known (called by ``Trainer``)."""
        optimizer = optimizer or self.optimizer
        if self.lr_scheduler is None and optimizer is not None:
            training = self.training_spec
            factor = functools.partial(
                learning_rate_factor,
                warmup_steps=self.args.get_warmup_steps(num_training_steps),
                total_steps=num_training_steps,
                scheduler=training.scheduler,
                min_ratio=min(1.0, training.min_learning_rate / training.learning_rate),
            )
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            self._created_lr_scheduler = True  # lets Trainer rebuild it if train() is called again
        return self.lr_scheduler


def planned_max_steps(config: v1alpha1.TrainerConfig) -> int:
    """Steps to train, or -1 to train ``spec.training.epochs`` epochs."""
    return config.max_steps or config.spec.training.max_steps or -1


def training_arguments(
    config: v1alpha1.TrainerConfig,
    *,
    precision: v1alpha1.Precision,
    gradient_checkpointing: bool,
    deepspeed: dict[str, Any] | None = None,
) -> TrainingArguments:
    """Build ``TrainingArguments`` from the config.

    Args:
        config: the run's config (``spec.training`` and ``paths``).
        precision: the precision that runs here (see ``_model.effective_precision``).
        gradient_checkpointing: whether to recompute activations (a recipe may turn it off).
        deepspeed: a DeepSpeed config (``deepspeed_config``) or ``None``.

    Returns:
        The arguments; create them *before* loading the model, so ZeRO-3 can shard it while loading.
    """
    training = config.spec.training
    return TrainingArguments(
        output_dir=config.paths.checkpoints_dir,
        per_device_train_batch_size=training.per_device_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        num_train_epochs=training.epochs,
        max_steps=planned_max_steps(config),
        learning_rate=training.learning_rate,
        warmup_steps=training.warmup_ratio,  # a float below 1 is a ratio of the total steps (RecipeTrainer)
        weight_decay=ds.WEIGHT_DECAY,
        adam_beta1=ds.ADAM_BETAS[0],
        adam_beta2=ds.ADAM_BETAS[1],
        adam_epsilon=ds.ADAM_EPSILON,
        max_grad_norm=ds.MAX_GRAD_NORM,
        bf16=precision == v1alpha1.Precision.BF16,
        fp16=precision == v1alpha1.Precision.FP16,
        activation_checkpointing=gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
        logging_steps=training.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=training.checkpoint_steps,
        save_total_limit=KEEP_CHECKPOINTS,
        seed=training.seed,
        data_seed=training.seed,
        report_to=[],
        disable_tqdm=True,  # ProgressCallback logs tqdm-style lines instead of redrawing a bar
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False,
        use_cpu=not torch.cuda.is_available(),
        deepspeed=deepspeed,
    )


def build_trainer(
    *,
    model: Any,
    args: TrainingArguments,
    train_dataset: Any,
    collator: Any,
    tokenizer: Any,
    spec: v1alpha1.FineTuneJobSpec,
    options: RunOptions,
) -> Trainer:
    """A ``Trainer`` with kubetune's callbacks (graceful stop, checkpoint markers, progress)."""
    callbacks: list[TrainerCallback] = [
        _callbacks.GracefulStop(stop_at=options.stop_at),
        _callbacks.CheckpointCompletion(spec, options.reporter),
        ProgressCallback(options.reporter),
    ]
    trainer = RecipeTrainer(
        training=spec.training,
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def assemble(
    config: v1alpha1.TrainerConfig,
    options: RunOptions,
    *,
    tokenizer: Any,
    precision: v1alpha1.Precision,
    setup_model: Callable[[], Any],
    setup_data: Callable[[], tuple[Any, Any]],
    deepspeed: dict[str, Any] | None = None,
) -> Trainer:
    """Build a recipe's Trainer: arguments, seed, model, data, checkpoint directory, in that order.

    The arguments come before the model: under ZeRO-3 they make ``from_pretrained`` load the
    weights sharded. Every rank waits for the main one to clear stale checkpoints.

    Args:
        config: the run's config.
        options: resume point, stop step and status reporter.
        tokenizer: the base model's tokenizer.
        precision: the precision that runs here.
        setup_model: loads the model with only the recipe's parameters trainable.
        setup_data: returns ``(train dataset, collator)``.
        deepspeed: the DeepSpeed config, when DeepSpeed runs the optimizer.

    Returns:
        The trainer, ready for :func:`run`.
    """
    args = training_arguments(
        config,
        precision=precision,
        gradient_checkpointing=config.spec.training.gradient_checkpointing,
        deepspeed=deepspeed,
    )
    _model.seed_everything(config.spec.training.seed)
    model = setup_model()
    train_dataset, collator = setup_data()
    prepare_checkpoints_dir(config, options)
    _distributed.barrier()
    return build_trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        collator=collator,
        tokenizer=tokenizer,
        spec=config.spec,
        options=options,
    )


def prepare_checkpoints_dir(config: v1alpha1.TrainerConfig, options: RunOptions) -> None:
    """Clear what a run must not pick up: incomplete checkpoints, or all of them when starting over."""
    if not _distributed.is_main_process():
        return
    if options.resume_from is None:
        checkpoints.remove_all(config.paths.checkpoints_dir)
    else:
        checkpoints.remove_incomplete(config.paths.checkpoints_dir)


def run(trainer: Trainer, options: RunOptions) -> RunResult:
    """Train, resuming if asked, and summarise what happened.

    Args:
        trainer: from :func:`build_trainer`.
        options: resume point and stop step.

    Returns:
        The outcome; ``interrupted`` tells the caller to exit with the "resume me" code.
    """
    if options.resume_from is not None:
        log.info("resuming from %s", options.resume_from)
    trainer.train(resume_from_checkpoint=str(options.resume_from) if options.resume_from else None)
    stop = _find(trainer, _callbacks.GracefulStop)
    progress = _find(trainer, ProgressCallback)
    completion = _find(trainer, _callbacks.CheckpointCompletion)
    return RunResult(
        step=trainer.state.global_step,
        total_steps=trainer.state.max_steps,
        interrupted=stop.stopped_early,
        loss=progress.loss,
        losses=list(progress.losses),
        checkpoint=completion.latest,
    )


def _find(trainer: Trainer, kind: type[Any]) -> Any:
    return next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, kind))


def save_final(trainer: Trainer, tokenizer: Any, directory: Path, summary: dict[str, Any]) -> Path:
    """Write the trained weights, tokenizer and a summary into ``directory``, atomically.

    Every rank takes part (ZeRO-3 gathers its shards); the main process writes into a temporary
    sibling and swaps it into place once everything is there.

    Args:
        trainer: the trainer after ``train()``.
        tokenizer: saved next to the weights, so the directory is self-contained.
        directory: the final directory (``checkpoints.final_dir``).
        summary: written as :data:`checkpoints.TRAINING_SUMMARY`.

    Returns:
        ``directory``.
    """
    staging = directory.with_name(f".{directory.name}.tmp")
    if _distributed.is_main_process():
        shutil.rmtree(staging, ignore_errors=True)
    _distributed.barrier()
    trainer.save_model(str(staging))
    if _distributed.is_main_process():
        tokenizer.save_pretrained(str(staging))
        with atomic_file(staging / checkpoints.TRAINING_SUMMARY) as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)  # type: ignore[arg-type]
        _swap_into_place(staging, directory)
        log.info("trained model saved to %s", directory)
    _distributed.barrier()
    return directory


def save_result(
    trainer: Trainer,
    tokenizer: Any,
    config: v1alpha1.TrainerConfig,
    result: RunResult | None,
    *,
    recipe: str,
    precision: v1alpha1.Precision,
    adapter: bool,
) -> Path:
    """A recipe's ``save_checkpoint``: the final weights and their summary into ``checkpoints/final``.

    Args:
        trainer: the trainer after :func:`run`.
        tokenizer: saved next to the weights.
        config: the run's config.
        result: what :func:`run` returned (None: training has not run).
        recipe: the recipe's name.
        precision: the precision that ran.
        adapter: whether the weights are an adapter rather than a whole model.

    Returns:
        The final directory.

    Raises:
        RuntimeError: before training.
    """
    if result is None:
        raise RuntimeError("call train() before save_checkpoint()")
    summary = training_summary(config, recipe=recipe, precision=precision, adapter=adapter, result=result)
    return save_final(trainer, tokenizer, checkpoints.final_dir(config.paths), summary)


def _swap_into_place(staging: Path, directory: Path) -> None:
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(staging, directory)
    shutil.rmtree(old, ignore_errors=True)


def training_summary(
    config: v1alpha1.TrainerConfig, *, recipe: str, precision: v1alpha1.Precision, adapter: bool, result: RunResult
) -> dict[str, Any]:
    """The summary saved with the final weights; evaluate and export read it."""
    return {
        "recipe": recipe,
        "method": config.spec.method.value,
        "baseModel": config.paths.base_model,
        "adapter": adapter,
        "precision": precision.value,
        "step": result.step,
        "totalSteps": result.total_steps,
        "loss": result.loss,
    }
