"""registry.select: which recipe trains which spec on how many processes."""

from __future__ import annotations

from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.recipes import registry

from tests.support import specs


def job_spec(**changes: Any) -> v1alpha1.FineTuneJobSpec:
    return v1alpha1.FineTuneJobSpec.model_validate(specs.job(**changes))


@pytest.mark.parametrize(
    ("changes", "world_size", "expected"),
    [
        ({}, 1, "lora_single_device"),
        ({}, 8, "lora_distributed"),
        ({"deepspeed": {"zeroStage": 2}}, 1, "lora_distributed"),
        ({"method": "qlora"}, 1, "qlora_single_device"),
        ({"method": "prefix"}, 1, "prefix_single_device"),
        ({"method": "freeze"}, 1, "freeze_distributed"),
        ({"method": "freeze"}, 16, "freeze_distributed"),
        ({"method": "full"}, 1, "full_distributed"),
        ({"method": "full", "deepspeed": {"zeroStage": 0}}, 4, "full_distributed"),
    ],
)
def test_select(changes: dict[str, Any], world_size: int, expected: str) -> None:
    assert registry.select(job_spec(**changes), world_size) == expected


@pytest.mark.parametrize("method", ["qlora", "prefix"])
def test_single_device_methods_refuse_several_processes(method: str) -> None:
    with pytest.raises(TrainerError, match=f"method {method} trains on a single device, but 2 processes"):
        registry.select(job_spec(method=method), 2)


@pytest.mark.parametrize("name", sorted(registry.RECIPES))
def test_every_recipe_loads_and_has_the_recipe_interface(name: str) -> None:
    recipe = registry.load(name)
    assert recipe.name == name
    for method in ("setup", "train", "save_checkpoint", "cleanup"):
        assert callable(getattr(recipe, method))
    assert recipe.__mro__[1] is object, "recipes share code through modules, not inheritance"
