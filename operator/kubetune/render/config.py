"""The ConfigMap the trainer reads: the admitted spec as a TrainerConfig, plus DeepSpeed's JSON.

The operator resolves what only it knows (where a pvc:// URI is mounted in the pod, which
artifact a ``fineTuneJobRef`` points at, which object to report progress to) and writes the
result with the same pydantic model the trainer loads, so neither side re-derives defaults.
The DeepSpeed config comes from the trainer's own pure function: the two can never disagree.
"""

from __future__ import annotations

import json
from typing import Any

from kubetune_trainer.recipes.deepspeed_config import deepspeed_config

from kubetune.api import v1alpha1
from kubetune.render import names
from kubetune.render.context import Context

#: Where the ConfigMap is mounted in every pod.
CONFIG_DIR = "/etc/kubetune"
CONFIG_KEY = "config.json"
DEEPSPEED_KEY = "deepspeed.json"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_KEY}"
DEEPSPEED_PATH = f"{CONFIG_DIR}/{DEEPSPEED_KEY}"


def pod_path(uri: str) -> str:
    """Where a URI is read or written from inside a pod.

    Args:
        uri: a pvc://, s3:// or hf:// URI.

    Returns:
        The mounted path for pvc:// (the claim is mounted under ``v1alpha1.PVC_MOUNT_ROOT``);
        the URI itself for the schemes the trainer fetches over the network.
    """
    parsed = v1alpha1.parse_uri(uri)
    return parsed.local_path() if parsed.scheme == "pvc" else uri


def trainer_config(ctx: Context) -> v1alpha1.TrainerConfig:
    """The trainer's configuration for every step of this job.

    Per-attempt settings (which checkpoint to resume from) are passed as arguments of the
    train command instead, so one ConfigMap serves all attempts.

    Args:
        ctx: the job being rendered.

    Returns:
        The validated TrainerConfig.
    """
    return v1alpha1.TrainerConfig(
        spec=ctx.spec,
        paths=v1alpha1.TrainerPaths(
            dataset=pod_path(ctx.spec.dataset.uri),
            base_model=pod_path(ctx.base_model_uri),
            work_dir=pod_path(ctx.spec.output.uri),
        ),
        attempt=1,
        status_target=v1alpha1.StatusTarget(name=ctx.name, namespace=ctx.namespace),
    )


def config_map(ctx: Context) -> dict[str, Any]:
    """The ConfigMap ``<name>-config``.

    Args:
        ctx: the job being rendered.

    Returns:
        The manifest, with ``config.json`` and, for DeepSpeed methods, ``deepspeed.json``.
    """
    data = {CONFIG_KEY: json.dumps(trainer_config(ctx).to_k8s(), indent=2, sort_keys=True)}
    if ctx.spec.uses_deepspeed():
        data[DEEPSPEED_KEY] = json.dumps(deepspeed_config(ctx.spec), indent=2, sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": names.metadata(ctx.owner, names.config_map(ctx.name)),
        "data": data,
    }
