"""The DeepSpeed JSON config of a FineTuneJob, as a pure function of its spec.

The operator renders this config into the train pods and the trainer hands it to the Hugging
Face ``Trainer``; both must agree on every value, so both call :func:`deepspeed_config`. The
module imports neither torch nor deepspeed, so the operator can import it without the trainer's
heavy dependencies.

Every value is concrete (no ``"auto"``): the result is accepted as is by
``deepspeed.runtime.config.DeepSpeedConfig``, and the Hugging Face integration, which checks the
values it can derive from ``TrainingArguments``, finds them matching because the trainer builds
its arguments from the same spec and the constants below. ``train_batch_size`` is left out on
purpose: DeepSpeed derives it from the micro-batch, accumulation and world size, so one config
serves any number of nodes. See https://www.deepspeed.ai/docs/config-json/ for each key.
"""

from __future__ import annotations

from typing import Any

from kubetune.api import v1alpha1

#: Gradient clipping; the trainer passes the same value as ``TrainingArguments.max_grad_norm``.
MAX_GRAD_NORM = 1.0
#: AdamW hyper-parameters shared by the Hugging Face optimizer and DeepSpeed's CPU Adam.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
WEIGHT_DECAY = 0.0


def deepspeed_config(spec: v1alpha1.FineTuneJobSpec, *, hidden_size: int | None = None) -> dict[str, Any]:
    """Build the DeepSpeed config for a job.

    Args:
        spec: the admitted FineTuneJob spec; ``spec.deepspeed`` and ``spec.training`` are read.
        hidden_size: the base model's hidden size, when known; it sizes the ZeRO communication
            buckets the way the Hugging Face integration does for ``"auto"``. Without it the
            DeepSpeed defaults apply.

    Returns:
        A JSON-serialisable dict, accepted by ``deepspeed.runtime.config.DeepSpeedConfig``.
    """
    training = spec.training
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": training.per_device_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "gradient_clipping": MAX_GRAD_NORM,
        "zero_optimization": _zero_section(spec, hidden_size),
        "steps_per_print": max(1, training.logging_steps),
        "wall_clock_breakdown": False,
    }
    config.update(_precision_section(training.precision))
    if "offload_optimizer" in config["zero_optimization"]:
        # ZeRO-Offload needs DeepSpeed's own CPU optimizer; the trainer's schedule still drives its learning rate.
        config["optimizer"] = _optimizer_section(training)
    return config


def _precision_section(precision: v1alpha1.Precision) -> dict[str, Any]:
    if precision == v1alpha1.Precision.BF16:
        return {"bf16": {"enabled": True}}
    if precision == v1alpha1.Precision.FP16:
        # Dynamic loss scaling (loss_scale 0), starting at 2**16 as in the DeepSpeed defaults.
        return {"fp16": {"enabled": True, "loss_scale": 0, "initial_scale_power": 16, "hysteresis": 2}}
    return {}


def _optimizer_section(training: v1alpha1.TrainingSpec) -> dict[str, Any]:
    return {
        "type": "AdamW",
        "params": {
            "lr": training.learning_rate,
            "betas": list(ADAM_BETAS),
            "eps": ADAM_EPSILON,
            "weight_decay": WEIGHT_DECAY,
        },
    }


def _zero_section(spec: v1alpha1.FineTuneJobSpec, hidden_size: int | None) -> dict[str, Any]:
    stage = spec.effective_zero_stage()
    zero: dict[str, Any] = {"stage": stage}
    if stage == 0:
        return zero
    zero.update({"overlap_comm": True, "contiguous_gradients": True})
    offload = spec.deepspeed or v1alpha1.DeepSpeedSpec()
    if offload.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        # Gather the shards when saving, so checkpoints and the exported model are ordinary weights.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        if offload.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if hidden_size is not None:
        zero.update(_bucket_sizes(stage, hidden_size))
    return zero


def _bucket_sizes(stage: int, hidden_size: int) -> dict[str, int]:
    sizes = {"reduce_bucket_size": hidden_size * hidden_size}
    if stage == 3:
        sizes["stage3_prefetch_bucket_size"] = int(0.9 * hidden_size * hidden_size)
        sizes["stage3_param_persistence_threshold"] = 10 * hidden_size
    return sizes
