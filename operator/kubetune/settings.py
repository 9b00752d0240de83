"""Operator settings: from the environment (the Helm chart), overridden by command-line flags.

One frozen :class:`Settings` value carries everything an operator deployment may tune: the
trainer image, default resources of the prepare pod, the namespaces to watch, ports, leader
election and concurrency. Reading it is pure (:func:`from_env` takes the environment as an
argument), so the chart's values can be checked by unit tests.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The trainer image used when a FineTuneJob does not set ``spec.image``.
DEFAULT_TRAINER_IMAGE = "ghcr.io/kubetune/trainer:0.1.0"
#: Triton Inference Server with the TensorRT-LLM and Python backends (25.07 ships TensorRT-LLM 0.20).
DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.07-trtllm-python-py3"
#: TensorRT-LLM with its conversion scripts and trtllm-build; must match the Triton image's version.
DEFAULT_ENGINE_BUILD_IMAGE = "nvcr.io/nvidia/tensorrt-llm/release:0.20.0"
#: Environment variable prefix of every setting.
PREFIX = "KUBETUNE_"


@dataclass(frozen=True)
class Settings:
    """Everything an operator deployment may tune.

    Attributes:
        trainer_image: default trainer image (``KUBETUNE_TRAINER_IMAGE``).
        triton_image: default Triton image of ModelDeployments (``KUBETUNE_TRITON_IMAGE``).
        engine_build_image: default TensorRT-LLM engine-build image (``KUBETUNE_ENGINE_BUILD_IMAGE``).
        image_pull_policy: pull policy of trainer pods (``KUBETUNE_IMAGE_PULL_POLICY``).
        prepare_cpu: CPU request of prepare pods (``KUBETUNE_PREPARE_CPU``).
        prepare_memory: memory request and limit of prepare pods (``KUBETUNE_PREPARE_MEMORY``).
        namespaces: namespaces to watch; empty means all (``KUBETUNE_NAMESPACES``, comma-separated).
        metrics_port: port of /metrics, /healthz and /readyz; 0 disables (``KUBETUNE_METRICS_PORT``).
        standalone: run without leader election (``KUBETUNE_STANDALONE``): one replica only.
        lease_name: the leader-election Lease (``KUBETUNE_LEASE_NAME``).
        lease_namespace: its namespace (``KUBETUNE_LEASE_NAMESPACE``, else ``POD_NAMESPACE``).
        lease_duration: seconds a Lease stays with a silent holder (``KUBETUNE_LEASE_DURATION``).
        renew_deadline: seconds the leader may fail to renew before stopping (``KUBETUNE_RENEW_DEADLINE``).
        retry_period: seconds between election attempts (``KUBETUNE_RETRY_PERIOD``).
        workers: FineTuneJobs reconciled concurrently (``KUBETUNE_WORKERS``).
        identity: this replica's name in the Lease (pod name and a random suffix).
        log_level: ``DEBUG``, ``INFO``... (``KUBETUNE_LOG_LEVEL``).
    """

    trainer_image: str = DEFAULT_TRAINER_IMAGE
    triton_image: str = DEFAULT_TRITON_IMAGE
    engine_build_image: str = DEFAULT_ENGINE_BUILD_IMAGE
    image_pull_policy: str = "IfNotPresent"
    prepare_cpu: str = "2"
    prepare_memory: str = "8Gi"
    namespaces: tuple[str, ...] = ()
    metrics_port: int = 8080
    standalone: bool = False
    lease_name: str = "kubetune-operator"
    lease_namespace: str = "default"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    workers: int = 16
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}")
    log_level: str = "INFO"

    @property
    def all_namespaces(self) -> bool:
        """Whether the operator watches every namespace."""
        return not self.namespaces

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


class SettingsError(ValueError):
    """An environment variable has a value of the wrong type."""


_BOOLEAN = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


def _typed(name: str, raw: str, kind: type) -> object:
    try:
        if kind is bool:
            return _BOOLEAN[raw.strip().lower()]
        if kind is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return kind(raw)
    except (KeyError, ValueError) as err:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} is not a valid {kind.__name__}") from err


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``KUBETUNE_*`` variables (and ``POD_NAMESPACE`` for the Lease).

    Args:
        environ: the environment (default: ``os.environ``).

    Returns:
        The settings, defaulted where a variable is absent.

    Raises:
        SettingsError: a variable has a value of the wrong type.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    kinds = {"namespaces": tuple, "standalone": bool, "metrics_port": int, "workers": int}
    for item in dataclasses.fields(Settings):
        if item.name == "identity":
            continue
        raw = env.get(PREFIX + item.name.upper())
        if raw is None:
            continue
        kind = kinds.get(item.name, float if item.type == "float" else str)
        values[item.name] = _typed(item.name, raw, kind)
    if "lease_namespace" not in values and env.get("POD_NAMESPACE"):
        values["lease_namespace"] = env["POD_NAMESPACE"]
    if env.get("POD_NAME"):
        values["identity"] = f"{env['POD_NAME']}_{uuid.uuid4().hex[:8]}"
    return Settings(**values)  # type: ignore[arg-type]
