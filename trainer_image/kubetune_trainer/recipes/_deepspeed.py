"""DeepSpeed for the distributed recipes: the config for this model, and a process group to run in.

The config itself is the pure :func:`~kubetune_trainer.recipes.deepspeed_config.deepspeed_config`
shared with the operator; this module adds what only the trainer knows (the model's hidden size,
which sizes the ZeRO buckets) and makes sure a process not started by ``torchrun`` still has the
process group DeepSpeed insists on. On a machine without GPUs DeepSpeed runs on its CPU
accelerator with the gloo backend, which is how the tests exercise ZeRO without a GPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1
from transformers import AutoConfig

from kubetune_trainer.recipes import _distributed
from kubetune_trainer.recipes.deepspeed_config import deepspeed_config

log = logging.getLogger(__name__)


def hidden_size(base_model: str | Path) -> int | None:
    """The hidden size from a checkpoint's ``config.json`` (``None`` if it has none)."""
    config = AutoConfig.from_pretrained(str(base_model))
    size = getattr(config, "hidden_size", None)
    return int(size) if size else None


def config_for(spec: v1alpha1.FineTuneJobSpec, base_model: str | Path) -> dict[str, Any] | None:
    """The DeepSpeed config of this run, or ``None`` when the spec asks for no ZeRO stage."""
    if not spec.uses_deepspeed():
        return None
    config = deepspeed_config(spec, hidden_size=hidden_size(base_model))
    log.info("DeepSpeed ZeRO stage %d", config["zero_optimization"]["stage"])
    return config


def enter_process_group(ds_config: dict[str, Any] | None) -> list[str]:
    """Give a single process a one-member process group when DeepSpeed runs.

    Returns:
        Environment variables set, to pass to ``_distributed.forget_env`` in ``cleanup()``.
    """
    return _distributed.ensure_process_group_env() if ds_config is not None else []
