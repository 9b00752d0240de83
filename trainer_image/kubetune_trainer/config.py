"""Loading the trainer's configuration: the file the operator writes, or defaults for local use.

The operator writes a :class:`kubetune.api.v1alpha1.TrainerConfig` as JSON into a ConfigMap
mounted in the pod; this module reads it back through the same pydantic model, so a value the
API server admitted is exactly the value the trainer uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
from kubetune.api import v1alpha1

from kubetune_trainer.cli import TrainerError

#: Where the operator mounts the config in the pod.
DEFAULT_CONFIG_PATH = "/etc/kubetune/config.json"


def load_config(path: str | Path) -> v1alpha1.TrainerConfig:
    """Read and validate a trainer config file (JSON or YAML).

    Args:
        path: the file the operator wrote (or one written by ``kubetune run --local``).

    Returns:
        The validated configuration.

    Raises:
        TrainerError: if the file is missing or does not validate; the message names the field.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainerError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else _load_yaml(text)
        return v1alpha1.TrainerConfig.model_validate(data, context={"cel": True})
    except (ValueError, pydantic.ValidationError) as err:
        raise TrainerError(f"invalid config {path}: {format_validation_error(err)}") from err


def _load_yaml(text: str) -> object:
    import yaml

    return yaml.safe_load(text)


def format_validation_error(err: Exception) -> str:
    """One entry per problem, each naming the field by its YAML path (``spec.lora.r: ...``)."""
    return v1alpha1.describe_errors(err)


def save_config(config: v1alpha1.TrainerConfig, path: str | Path) -> Path:
    """Write a config the way the operator does (camelCase JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config.to_k8s(), indent=2, sort_keys=True), encoding="utf-8")
    return path
