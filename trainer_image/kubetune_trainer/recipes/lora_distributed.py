"""LoRA across processes: several GPUs or nodes (torchrun), optionally under DeepSpeed ZeRO.

Run it with ``torchrun --nnodes N --nproc-per-node G -m kubetune_trainer train --config config.json``
(the operator renders this), or in one process when ``spec.deepspeed.zeroStage`` is set. Each
process holds a replica of the frozen base model and the adapter (data parallel); ZeRO stages
1-2 shard the adapter's optimizer state and gradients, stage 3 also shards the base weights,
which lets a model larger than one GPU's memory take LoRA (at the cost of communication).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer.recipes import _deepspeed, _distributed, _model, _trainer, batching


class LoRADistributed:
    """Fine-tune a LoRA adapter with data parallelism (DDP or DeepSpeed ZeRO).

    Args:
        config: the run's config.
        options: resume point, stop step and status reporter.
    """

    name = "lora_distributed"

    def __init__(self, config: v1alpha1.TrainerConfig, options: _trainer.RunOptions) -> None:
        self.config = config
        self.options = options
        self.precision = _model.effective_precision(config.spec.training.precision)
        self._env: list[str] = []
        self._tokenizer: Any = None
        self._trainer: Any = None
        self._result: _trainer.RunResult | None = None

    def setup(self) -> None:
        """Join the process group, load model and data, and build the trainer (in that order for ZeRO-3)."""
        base_dir = _model.check_base_model_dir(self.config.paths.base_model)
        self._tokenizer = _model.load_tokenizer(base_dir)
        ds_config = _deepspeed.config_for(self.config.spec, base_dir)
        self._env = _deepspeed.enter_process_group(ds_config)
        self._trainer = _trainer.assemble(
            self.config,
            self.options,
            tokenizer=self._tokenizer,
            precision=self.precision,
            setup_model=self._setup_model,
            setup_data=self._setup_data,
            deepspeed=ds_config,
        )

    def _setup_model(self) -> Any:
        base = _model.load_base_model(self.config.paths.base_model, dtype=_model.torch_dtype(self.precision))
        return _model.add_adapter(base, _model.lora_config(self.config.spec))

    def _setup_data(self) -> tuple[Any, Any]:
        return batching.training_split(self.config.paths.prepared_dir, packed=True)

    def train(self) -> _trainer.RunResult:
        """Run the training loop on every rank until done, SIGTERM or the stop step."""
        self._result = _trainer.run(self._trainer, self.options)
        return self._result

    def save_checkpoint(self) -> Path:
        """Save the adapter (gathered from all ranks) and tokenizer into ``checkpoints/final``."""
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
        """Leave the process group and release the model."""
        self._trainer = None
        _distributed.destroy()
        _distributed.forget_env(self._env)
