"""Folding a LoRA adapter into the base weights, for servers that load one plain checkpoint.

``W' = W + (alpha / r) * B @ A`` for every adapted layer (peft's ``merge_and_unload``), computed
on the unquantized base model in fp32 and then cast to the serving dtype, so QLoRA adapters
merge into ordinary 16-bit weights too. Prefix-tuning adapters have no weights to fold in and
are served as base model plus adapter.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from kubetune.api import v1alpha1

from kubetune_trainer.recipes import checkpoints, trained

log = logging.getLogger(__name__)

#: Methods whose adapters can be merged.
MERGEABLE = (v1alpha1.Method.LORA, v1alpha1.Method.QLORA)


def merge_adapter(paths: v1alpha1.TrainerPaths, out_dir: Path, *, dtype: torch.dtype) -> Any:
    """Merge ``checkpoints/final`` (a LoRA adapter) into the base model and save it.

    Args:
        paths: the run's paths (base model and checkpoints).
        out_dir: where to write the merged checkpoint (safetensors, config, tokenizer).
        dtype: dtype of the saved weights.

    Returns:
        The merged model (fp32, in memory), for callers that want to check it.
    """
    from peft import PeftModel

    final = checkpoints.final_dir(paths)
    base = trained.load_base_model(paths.base_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(final)).merge_and_unload()
    save_model(merged, final, out_dir, dtype=dtype)
    return merged


def convert_full_model(paths: v1alpha1.TrainerPaths, out_dir: Path, *, dtype: torch.dtype) -> None:
    """Copy a fully trained model (freeze, full) into ``out_dir`` in the serving dtype."""
    final = checkpoints.final_dir(paths)
    model = trained.load_base_model(final, dtype=dtype)
    save_model(model, final, out_dir, dtype=dtype)


def save_model(model: Any, tokenizer_dir: Path, out_dir: Path, *, dtype: torch.dtype) -> None:
    """Save weights (as ``dtype``, safetensors) with the tokenizer from ``tokenizer_dir``."""
    model = model.to(device="cpu", dtype=dtype)
    model.config.use_cache = True  # serving wants the KV cache the training runs switched off
    model.save_pretrained(str(out_dir))
    trained.load_tokenizer(tokenizer_dir).save_pretrained(str(out_dir))
    log.info("saved %s weights to %s", str(dtype).removeprefix("torch."), out_dir)
