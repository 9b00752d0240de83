"""Layer freezing: train only the last N decoder layers (and the LM head), on one or many processes.

Run it with ``python -m kubetune_trainer train --config config.json`` (or under ``torchrun``)
where ``spec.method`` is ``freeze``. ``spec.freeze.trainableLayers`` trades quality for memory:
more layers adapt more of the model but need gradients and optimizer state for each. The
trained layers are ordinary weights, so the result is a full model, not an adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer.recipes import _deepspeed, _distributed, _model, _trainer, batching


class FreezeDistributed:
    """Fine-tune the last decoder layers with data parallelism (DDP, or DeepSpeed ZeRO if asked).

    Args:
        config: the run's config.
        options: resume point, stop step and status reporter.
    """

    name = "freeze_distributed"

    def __init__(self, config: v1alpha1.TrainerConfig, options: _trainer.RunOptions) -> None:
        self.config = config
        self.options = options
        self.precision = _model.effective_precision(config.spec.training.precision)
        self._env: list[str] = []
        self._tokenizer: Any = None
        self._trainer: Any = None
        self._result: _trainer.RunResult | None = None

    def setup(self) -> None:
        """Join the process group, load and freeze the model, load the data and build the trainer."""
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
        # Trained weights need fp32 master copies: DeepSpeed keeps its own, plain mixed precision needs fp32 weights.
        dtype = _model.torch_dtype(self.precision) if under_deepspeed else _model.torch_dtype(v1alpha1.Precision.FP32)
        model = _model.load_base_model(self.config.paths.base_model, dtype=dtype)
        _model.freeze_all_but_last_layers(model, self.config.spec.effective_freeze().trainable_layers)
        return model

    def _setup_data(self) -> tuple[Any, Any]:
        return batching.training_split(self.config.paths.prepared_dir, packed=True)

    def train(self) -> _trainer.RunResult:
        """Run the training loop on every rank until done, SIGTERM or the stop step."""
        self._result = _trainer.run(self._trainer, self.options)
        return self._result

    def save_checkpoint(self) -> Path:
        """Save the whole model (frozen and trained layers) and tokenizer into ``checkpoints/final``."""
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
