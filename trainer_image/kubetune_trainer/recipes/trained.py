"""The trained model as the steps after training load it (evaluate, export).

The train step leaves ``checkpoints/final``: an adapter (LoRA, QLoRA, prefix) to put on the
base model, or a whole model (freeze, full), with the tokenizer and a training summary. This
module turns that directory back into a model, the same way for every later step. A QLoRA
adapter is loaded onto the *unquantized* base model: evaluation then measures the weights that
will be served, and merging into 16-bit weights needs them unquantized anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from kubetune.api import v1alpha1

from kubetune_trainer.recipes import _model, checkpoints

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A trained model ready for inference.

    Attributes:
        model: a ``PeftModel`` (adapter methods) or a plain causal LM (freeze, full), in eval mode.
        tokenizer: the tokenizer saved with it.
        summary: the train step's summary (``recipe``, ``method``, ``adapter``, ``step``, ``loss``...).
        directory: where it was loaded from.
    """

    model: Any
    tokenizer: Any
    summary: dict[str, Any]
    directory: Path

    @property
    def is_adapter(self) -> bool:
        """Whether the model is a base model plus a peft adapter."""
        return bool(self.summary.get("adapter"))


def inference_dtype(precision: v1alpha1.Precision) -> torch.dtype:
    """The dtype to run a trained model in: the training precision on a GPU, fp32 on CPU."""
    if not torch.cuda.is_available():
        return torch.float32
    return _model.torch_dtype(precision)


def load_trained(paths: v1alpha1.TrainerPaths, *, dtype: torch.dtype) -> TrainedModel:
    """Load ``checkpoints/final`` (with the base model for adapters).

    Args:
        paths: the run's paths (``base_model`` and ``checkpoints_dir`` are read).
        dtype: the dtype to load the weights in.

    Returns:
        The model in eval mode, on the GPU when there is one.

    Raises:
        TrainerError: if the train step has not finished.
    """
    from peft import PeftModel

    directory = checkpoints.final_dir(paths)
    summary = checkpoints.read_training_summary(directory)
    tokenizer = _model.load_tokenizer(directory)
    model: Any
    if summary.get("adapter"):
        base = _model.load_base_model(paths.base_model, dtype=dtype)
        model = PeftModel.from_pretrained(base, str(directory))
    else:
        model = _model.load_base_model(directory, dtype=dtype)
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    log.info("loaded the trained model from %s (%s)", directory, summary.get("recipe"))
    return TrainedModel(model=model, tokenizer=tokenizer, summary=summary, directory=directory)


def load_base_model(path: str | Path, *, dtype: torch.dtype) -> Any:
    """Load a plain causal LM (a base model or a fully trained one) in eval mode, on the GPU if any."""
    model = _model.load_base_model(path, dtype=dtype).eval()
    return model.to("cuda") if torch.cuda.is_available() else model


def load_tokenizer(path: str | Path) -> Any:
    """Load the tokenizer saved in a checkpoint directory."""
    return _model.load_tokenizer(path)


def torch_dtype(precision: v1alpha1.Precision) -> torch.dtype:
    """The torch dtype of a precision (``bf16`` -> ``torch.bfloat16``...)."""
    return _model.torch_dtype(precision)
