"""Which recipe trains a job: a pure choice from the method and the number of processes.

Kept free of torch so the operator (and ``--help``) can ask which recipe a spec maps to
without importing the training stack.
"""

from __future__ import annotations

import importlib
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer.cli import TrainerError

#: Recipe name -> "module:Class".
RECIPES: dict[str, str] = {
    "lora_single_device": "kubetune_trainer.recipes.lora_single_device:LoRASingleDevice",
    "lora_distributed": "kubetune_trainer.recipes.lora_distributed:LoRADistributed",
    "qlora_single_device": "kubetune_trainer.recipes.qlora_single_device:QLoRASingleDevice",
    "prefix_single_device": "kubetune_trainer.recipes.prefix_single_device:PrefixSingleDevice",
    "freeze_distributed": "kubetune_trainer.recipes.freeze_distributed:FreezeDistributed",
    "full_distributed": "kubetune_trainer.recipes.full_distributed:FullDistributed",
}

_SINGLE_DEVICE_ONLY = {
    v1alpha1.Method.QLORA: "qlora_single_device",
    v1alpha1.Method.PREFIX: "prefix_single_device",
}


def select(spec: v1alpha1.FineTuneJobSpec, world_size: int) -> str:
    """Name the recipe for a spec.

    Args:
        spec: the job spec (``method``, ``deepspeed``).
        world_size: training processes in this run (``WORLD_SIZE`` from torchrun, 1 otherwise).

    Returns:
        A key of :data:`RECIPES`.

    Raises:
        TrainerError: for a single-device method launched on several processes.
    """
    if spec.method in _SINGLE_DEVICE_ONLY:
        if world_size > 1:
            raise TrainerError(
                f"method {spec.method.value} trains on a single device, but {world_size} processes were launched; "
                "use one GPU (spec.resources.gpusPerNode: 1, nodes: 1)"
            )
        return _SINGLE_DEVICE_ONLY[spec.method]
    if spec.method == v1alpha1.Method.LORA:
        return "lora_single_device" if world_size == 1 and not spec.uses_deepspeed() else "lora_distributed"
    if spec.method == v1alpha1.Method.FREEZE:
        return "freeze_distributed"
    return "full_distributed"


def load(name: str) -> Any:
    """Import a recipe class by name (imports torch and transformers)."""
    module_name, _, class_name = RECIPES[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
