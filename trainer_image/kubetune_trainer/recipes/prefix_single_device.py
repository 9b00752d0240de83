"""Prefix tuning on one device: learn ``numVirtualTokens`` key/value vectors per layer, nothing else.

Run it with ``python -m kubetune_trainer train --config config.json`` where ``spec.method`` is
``prefix``. The fewest trainable parameters of all methods (more virtual tokens: more capacity,
and each one costs attention in every layer at inference too). The prefix enters the model as
a key/value cache, which transformers' packed-sequence masking does not combine with, so this
recipe always batches examples padded, never packed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer.recipes import _model, _trainer, batching

log = logging.getLogger(__name__)


class PrefixSingleDevice:
    """Fine-tune a prefix (peft prefix tuning) in a single process.

    Args:
        config: the run's config.
        options: resume point, stop step and status reporter.
    """

    name = "prefix_single_device"

    def __init__(self, config: v1alpha1.TrainerConfig, options: _trainer.RunOptions) -> None:
        self.config = config
        self.options = options
        self.precision = _model.effective_precision(config.spec.training.precision)
        self._tokenizer: Any = None
        self._trainer: Any = None
        self._result: _trainer.RunResult | None = None

    def setup(self) -> None:
        """Load the tokenizer, the base model with its prefix and the data; build the trainer."""
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
        base = _model.load_base_model(self.config.paths.base_model, dtype=_model.torch_dtype(self.precision))
        return _model.add_adapter(base, _model.prefix_config(self.config.spec))

    def _setup_data(self) -> tuple[Any, Any]:
        if self.config.spec.training.packing:
            log.info("prefix tuning trains on single padded examples; the packed sequences are unpacked")
        return batching.training_split(self.config.paths.prepared_dir, packed=False)

    def train(self) -> _trainer.RunResult:
        """Run the training loop until done, SIGTERM or the stop step."""
        self._result = _trainer.run(self._trainer, self.options)
        return self._result

    def save_checkpoint(self) -> Path:
        """Save the prefix adapter and tokenizer into ``checkpoints/final``."""
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
        """Release the model."""
        self._trainer = None
