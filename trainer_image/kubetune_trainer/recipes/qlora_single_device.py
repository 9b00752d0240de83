"""QLoRA on one GPU: LoRA on top of a base model quantized to 4 (or 8) bits with bitsandbytes.

Run it with ``python -m kubetune_trainer train --config config.json`` where ``spec.method`` is
``qlora`` (see ``examples/finetunejob-qlora.yaml``). Quantizing the frozen base model cuts its
memory about fourfold, so a 7-8B model fine-tunes on a single 24 GB GPU; ``spec.qlora``:
``quantType`` nf4 suits normally distributed weights better than fp4, ``doubleQuant`` also
quantizes the quantization constants (~0.4 bits per weight saved). bitsandbytes' kernels need
CUDA, so on a machine without a GPU the recipe refuses before loading anything.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from kubetune.api import v1alpha1

from kubetune_trainer.cli import TrainerError
from kubetune_trainer.recipes import _model, _trainer, batching


def check_qlora_supported() -> None:
    """Refuse QLoRA where it cannot run.

    Raises:
        TrainerError: without a CUDA GPU, or without the bitsandbytes package.
    """
    if not torch.cuda.is_available():
        raise TrainerError(
            "method qlora needs a CUDA GPU (bitsandbytes 4-bit kernels), and this machine has none; "
            "set spec.resources.gpusPerNode >= 1 or use method lora on CPU"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TrainerError("method qlora needs the bitsandbytes package, which is not installed in this image")


class QLoRASingleDevice:
    """Fine-tune a LoRA adapter on a quantized base model on one GPU.

    Args:
        config: the run's config.
        options: resume point, stop step and status reporter.
    """

    name = "qlora_single_device"

    def __init__(self, config: v1alpha1.TrainerConfig, options: _trainer.RunOptions) -> None:
        self.config = config
        self.options = options
        self.precision = config.spec.training.precision
        self._tokenizer: Any = None
        self._trainer: Any = None
        self._result: _trainer.RunResult | None = None

    def setup(self) -> None:
        """Check for a GPU, then load the quantized model with its adapter and the data."""
        check_qlora_supported()
        self._tokenizer = _model.load_tokenizer(_model.check_base_model_dir(self.config.paths.base_model))
        self._trainer = _trainer.assemble(
            self.config,
            self.options,
            tokenizer=self._tokenizer,
            precision=self.precision,
            setup_model=self._setup_model,
            setup_data=self._setup_data,
        )

    def _setup_model(self) -> Any:
        from peft import prepare_model_for_kbit_training

        compute_dtype = _model.torch_dtype(self.precision)
        base = _model.load_base_model(
            self.config.paths.base_model,
            dtype=compute_dtype,
            quantization_config=self._quantization_config(compute_dtype),
            device_map={"": int(os.environ.get("LOCAL_RANK", "0"))},
        )
        gradient_checkpointing = self.config.spec.training.gradient_checkpointing
        base = prepare_model_for_kbit_training(
            base,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
        )
        return _model.add_adapter(base, _model.lora_config(self.config.spec))

    def _quantization_config(self, compute_dtype: torch.dtype) -> Any:
        from transformers import BitsAndBytesConfig

        qlora = self.config.spec.effective_qlora()
        if qlora.bits == 8:
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=qlora.quant_type.value,
            bnb_4bit_use_double_quant=qlora.double_quant,
            bnb_4bit_compute_dtype=compute_dtype,
        )

    def _setup_data(self) -> tuple[Any, Any]:
        return batching.training_split(self.config.paths.prepared_dir, packed=True)

    def train(self) -> _trainer.RunResult:
        """Run the training loop until done, SIGTERM or the stop step."""
        self._result = _trainer.run(self._trainer, self.options)
        return self._result

    def save_checkpoint(self) -> Path:
        """Save the adapter (not the quantized base) and tokenizer into ``checkpoints/final``."""
        return _trainer.save_result(
            self._trainer,
            self._tokenizer,
            self.config,
            self._result,
            recipe=self.name,
            precision=self.precision,
            adapter=True,
        )

    def cleanup(self) -> None:
        """Release the model and the GPU memory it held."""
        self._trainer = None
        torch.cuda.empty_cache()
