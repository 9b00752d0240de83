"""Full fine-tuning under DeepSpeed ZeRO, on one or many processes.

Run it with ``torchrun --nnodes N --nproc-per-node G -m kubetune_trainer train --config config.json``
(see ``examples/finetunejob-full.yaml``: 8 GPUs, ZeRO-3). Every weight trains, so memory is
the constraint: ZeRO-3 (the default for ``full``) shards weights, gradients and optimizer state
across all GPUs; ``offloadOptimizer`` / ``offloadParams`` move them to CPU memory, slower but
smaller. ``spec.deepspeed.zeroStage: 0`` trains with plain DDP instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer.recipes import _deepspeed, _distributed, _model, _trainer, batching


class FullDistributed:
    """Fine-tune all weights with DeepSpeed ZeRO (or DDP at stage 0).

    Args:
        config: the run's config.
        options: resume point, stop step and status reporter.
    """

    name = "full_distributed"

    def __init__(self, config: v1alpha1.TrainerConfig, options: _trainer.RunOptions) -> None:
        self.config = config
        self.options = options
        self.precision = _model.effective_precision(config.spec.training.precision)
        self._env: list[str] = []
        self._tokenizer: Any = None
        self._trainer: Any = None
        self._result: _trainer.RunResult | None = None

    def setup(self) -> None:
        """Join the process group, then load the model (sharded while loading under ZeRO-3) and data."""
        base_dir = _model.check_base_model_dir(self.config.paths.base_model)
        self._tokenizer = _model.load_tokenizer(base_dir)
        ds_config = _deepspeed.config_for(self.config.spec, base_dir)
        self._env = _deepspeed.enter_process_group(ds_config)
        self._trainer = _trainer.assemble(
            self.config,
            self.options,
            tokenizer=self._tokenizer,
            precision=self.precision,
            setup_model=lambda: self._setup_model(under_deepspeed=ds_config is not None),
            setup_data=self._setup_data,
            deepspeed=ds_config,
        )

    def _setup_model(self, *, under_deepspeed: bool) -> Any:
        # DeepSpeed keeps fp32 master weights itself; without it, mixed precision needs fp32 weights.
        dtype = _model.torch_dtype(self.precision) if under_deepspeed else _model.torch_dtype(v1alpha1.Precision.FP32)
        model = _model.load_base_model(self.config.paths.base_model, dtype=dtype)
        _model.log_trainable(model)
        return model

    def _setup_data(self) -> tuple[Any, Any]:
        return batching.training_split(self.config.paths.prepared_dir, packed=True)

    def train(self) -> _trainer.RunResult:
        """Run the training loop on every rank until done, SIGTERM or the stop step."""
        self._result = _trainer.run(self._trainer, self.options)
        return self._result

    def save_checkpoint(self) -> Path:
        """Save the full model (ZeRO-3 shards gathered into 16-bit weights) and tokenizer."""
        return _trainer.save_result(
            self._trainer,
            self._tokenizer,
            self.config,
            self._result,
            recipe=self.name,
            precision=self.precision,
            adapter=False,
        )

    def cleanup(self) -> None:
        """Leave the process group and release the model."""
        self._trainer = None
        _distributed.destroy()
        _distributed.forget_env(self._env)
