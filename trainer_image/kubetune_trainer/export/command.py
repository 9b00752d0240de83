"""``python -m kubetune_trainer export``: write the artifact into ``model/`` and its digest into ``reports/``.

The artifact directory is built under a temporary name and swapped into place whole, so a
reader never sees half an artifact:

    model/
      adapter/     the peft adapter (lora, qlora, prefix)
      merged/      merged 16-bit weights (lora/qlora with output.mergeAdapter; always for freeze/full)
      manifest.json

``reports/artifact.json`` then holds ``v1alpha1.Artifact`` (uri, digest) for the operator.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from kubetune.api import v1alpha1

from kubetune_trainer.config import DEFAULT_CONFIG_PATH, load_config
from kubetune_trainer.export import manifest
from kubetune_trainer.fsutil import atomic_dir, atomic_file

log = logging.getLogger(__name__)

ARTIFACT_FILE = "artifact.json"
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
#: Files of ``checkpoints/final`` that belong to the training run, not to the artifact.
_TRAINING_ONLY = {"training_args.bin"}
_DTYPE_CHOICES = ("auto", "fp16", "bf16", "fp32")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the export sub-command."""
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="trainer config (JSON or YAML)")
    parser.add_argument(
        "--dtype",
        choices=_DTYPE_CHOICES,
        default="auto",
        help="dtype of the merged weights; auto: bf16 if trained in bf16, else fp16",
    )


def run(args: argparse.Namespace) -> int:
    """Export the trained model; print the artifact digest."""
    config = load_config(args.config)
    artifact = export(config, dtype_name=args.dtype)
    print(f"artifact {artifact.uri} digest {artifact.digest}")
    return 0


def serving_dtype(name: str, precision: v1alpha1.Precision) -> v1alpha1.Precision:
    """The precision of the merged weights: as asked, or for ``auto`` bf16 if trained in bf16, else fp16."""
    if name != "auto":
        return v1alpha1.Precision(name)
    return v1alpha1.Precision.BF16 if precision == v1alpha1.Precision.BF16 else v1alpha1.Precision.FP16


def export(config: v1alpha1.TrainerConfig, *, dtype_name: str = "auto") -> v1alpha1.Artifact:
    """Build ``model/`` from ``checkpoints/final`` and record the artifact.

    Args:
        config: the run's config (``spec.output.mergeAdapter``, paths).
        dtype_name: one of ``auto``, ``fp16``, ``bf16``, ``fp32`` (see :func:`serving_dtype`).

    Returns:
        The artifact's URI (under ``spec.output.uri``) and digest.

    Raises:
        TrainerError: if the train step has not finished.
    """
    from kubetune_trainer.evaluate.command import read_metrics
    from kubetune_trainer.recipes import checkpoints, trained

    final = checkpoints.final_dir(config.paths)
    summary = checkpoints.read_training_summary(final)
    precision = serving_dtype(dtype_name, config.spec.training.precision)
    with atomic_dir(config.paths.model_dir) as staging:
        layout = _write_weights(config, summary, final, staging, trained.torch_dtype(precision))
        body = manifest.build_manifest(
            staging,
            spec=config.spec,
            training=summary,
            layout=layout,
            dtype=precision.value if layout[MERGED_DIR] else None,
            metrics=read_metrics(config.paths),
        )
        digest = manifest.write_manifest(staging, body)
    artifact = v1alpha1.Artifact(uri=f"{config.spec.output.uri.rstrip('/')}/model", digest=digest)
    with atomic_file(Path(config.paths.reports_dir) / ARTIFACT_FILE) as handle:
        json.dump(artifact.to_k8s(), handle, indent=2)  # type: ignore[arg-type]
    log.info("artifact written to %s (%s)", config.paths.model_dir, digest)
    return artifact


def _write_weights(
    config: v1alpha1.TrainerConfig, summary: dict[str, Any], final: Path, staging: Path, dtype: torch.dtype
) -> dict[str, str | None]:
    """Fill the staging directory; return the layout (which sub-directories exist, which to serve)."""
    from kubetune_trainer.export import merge

    adapter_dir = merged_dir = None
    if summary.get("adapter"):
        adapter_dir = ADAPTER_DIR
        shutil.copytree(final, staging / ADAPTER_DIR, ignore=lambda _d, names: _excluded(names))
        if config.spec.output.merge_adapter and config.spec.method in merge.MERGEABLE:
            merge.merge_adapter(config.paths, staging / MERGED_DIR, dtype=dtype)
            merged_dir = MERGED_DIR
        elif config.spec.output.merge_adapter:
            log.info("a %s adapter cannot be merged; serve the base model with the adapter", config.spec.method.value)
    else:
        merge.convert_full_model(config.paths, staging / MERGED_DIR, dtype=dtype)
        merged_dir = MERGED_DIR
    return {"adapter": adapter_dir, "merged": merged_dir, "serve": merged_dir or adapter_dir}


def _excluded(names: list[str]) -> set[str]:
    return {name for name in names if name in _TRAINING_ONLY}
