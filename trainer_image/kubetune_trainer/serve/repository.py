"""Write a Triton model repository for a model directory and a ModelDeployment's serving settings.

Why this module exists: the generators (:mod:`~kubetune_trainer.serve.python_backend`,
:mod:`~kubetune_trainer.serve.tensorrtllm`) only produce text. This module puts that text next to
the weights or tokenizer, checks every ``config.pbtxt`` with Triton's schema *before* anything is
written, and swaps the finished repository into place in one rename, so a crashed build never
leaves a half-written repository that a Triton pod would load.

Weights are hard-linked where the filesystem allows (artifacts are immutable; this saves a copy of
a multi-gigabyte model) and copied otherwise. A manifest, ``kubetune-repository.json``, records the
backend, the entry model and the sha256 of every file; :func:`repository_digest` hashes it for the
ModelDeployment status. Triton ignores plain files at the repository root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from kubetune.api import v1alpha1

from kubetune_trainer import fsutil
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.serve import pbtxt, python_backend, tensorrtllm

MANIFEST = "kubetune-repository.json"
Weights = Literal["copy", "reference"]


def _link_or_copy(source: str, target: str) -> str:
    """Hard-link ``source`` to ``target``, or copy it when linking is impossible (other filesystem)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


def _copy_tree(source: Path, target: Path) -> None:
    """Place a directory's files (hidden ones left out) under ``target``."""
    shutil.copytree(source, target, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(".*"))


def _check_model_dir(model_dir: Path) -> None:
    """Fail early, with a clear message, when ``model_dir`` is not a transformers checkpoint."""
    if not (model_dir / "config.json").is_file():
        raise TrainerError(f"{model_dir} is not a model directory (no config.json); pass the merged model")


def _save_tokenizer(model_dir: Path, target: Path) -> None:
    """Write the model's tokenizer (and its chat template) to ``target``."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)


def write_files(root: Path, files: Mapping[str, str]) -> None:
    """Validate every ``config.pbtxt`` among ``files``, then write all of them under ``root``.

    Raises:
        pbtxt.ConfigError: a configuration Triton would reject (nothing is written then).
    """
    for path, text in files.items():
        if path.endswith("config.pbtxt"):
            try:
                pbtxt.validate_config(text)
            except pbtxt.ConfigError as err:
                raise pbtxt.ConfigError(f"{path}: {err}") from err
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (links followed), by POSIX relative path."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            digests[path.relative_to(root).as_posix()] = fsutil.sha256_file(path)
    return digests


def _write_manifest(root: Path, backend: v1alpha1.Backend, model_name: str, spec: v1alpha1.ServingSpec) -> None:
    """Record what the repository is and the digest of each of its files."""
    manifest = {
        "backend": backend.value,
        "model": model_name,
        "quantization": spec.quantization.value,
        "engine": spec.engine.to_k8s(),
        "files": _file_digests(root),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def repository_digest(root: str | Path) -> str:
    """Content digest of a written repository: sha256 of its manifest (which lists every file's sha256).

    Raises:
        TrainerError: ``root`` has no manifest (not written by :func:`build_repository`).
    """
    manifest = Path(root) / MANIFEST
    if not manifest.is_file():
        raise TrainerError(f"{root} is not a kubetune model repository (no {MANIFEST})")
    return "sha256:" + hashlib.sha256(manifest.read_bytes()).hexdigest()


def build_repository(
    model_dir: str | Path,
    output: str | Path,
    spec: v1alpha1.ServingSpec,
    *,
    model_name: str = python_backend.DEFAULT_MODEL_NAME,
    weights: Weights = "copy",
    engine_dir: str | None = None,
    engine_source: str | Path | None = None,
    num_threads: int = 0,
) -> Path:
    """Write a complete model repository for ``spec.backend``, atomically.

    Args:
        model_dir: the merged model (weights, config and tokenizer with its chat template).
        output: the repository directory to create (an existing one is replaced once the new one is whole).
        spec: the serving settings.
        model_name: the entry model clients call.
        weights: python backend only: ``copy`` the weights into the repository (self-contained), or
            ``reference`` ``model_dir`` by absolute path (no copy; the repository only works where
            that path exists, e.g. ``kubetune run --local``).
        engine_dir: tensorrtllm only: the engine directory as the Triton pod sees it (default: the
            ``tensorrt_llm/1`` directory of ``output``).
        engine_source: tensorrtllm only: a built engine to place into ``tensorrt_llm/1``.
        num_threads: python backend only: torch threads per model instance (0: the container's CPUs).

    Returns:
        The repository directory.

    Raises:
        TrainerError: ``model_dir`` is not a model directory, or an option does not fit the backend.
        pbtxt.ConfigError: a generated configuration does not validate.
    """
    model_dir, output = Path(model_dir).resolve(), Path(output).resolve()
    _check_model_dir(model_dir)
    with fsutil.atomic_dir(output) as root:
        if spec.backend is v1alpha1.Backend.PYTHON:
            _python_repository(root, model_dir, spec, model_name, weights, num_threads)
        else:
            target_engine = engine_dir or str(output / tensorrtllm.TENSORRT_LLM / "1")
            _tensorrtllm_repository(root, model_dir, spec, model_name, target_engine, engine_source)
        _write_manifest(root, spec.backend, model_name, spec)
    return output


def _python_repository(
    root: Path, model_dir: Path, spec: v1alpha1.ServingSpec, model_name: str, weights: Weights, num_threads: int
) -> None:
    """Files and weights of the python backend."""
    if spec.quantization is not v1alpha1.Quantization.FP16:
        raise TrainerError(
            f"quantization {spec.quantization.value} needs the tensorrtllm backend; "
            "the python backend serves unquantized weights (fp16)"
        )
    if weights not in ("copy", "reference"):
        raise TrainerError(f"weights must be copy or reference, got {weights!r}")
    location = python_backend.WEIGHTS_DIR if weights == "copy" else str(model_dir)
    write_files(root, python_backend.files(spec, model_name, model_dir=location, num_threads=num_threads))
    if weights == "copy":
        _copy_tree(model_dir, root / model_name / "1" / python_backend.WEIGHTS_DIR)


def _tensorrtllm_repository(
    root: Path,
    model_dir: Path,
    spec: v1alpha1.ServingSpec,
    model_name: str,
    engine_dir: str,
    engine_source: str | Path | None,
) -> None:
    """Files, tokenizer and (optionally) engine of the tensorrtllm backend."""
    if not Path(engine_dir).is_absolute():
        raise TrainerError(f"engine_dir must be an absolute path (as the Triton pod sees it), got {engine_dir!r}")
    try:
        files = tensorrtllm.files(spec, model_name, engine_dir=engine_dir)
    except ValueError as err:
        raise TrainerError(str(err)) from err
    write_files(root, files)
    for step in (tensorrtllm.PREPROCESSING, tensorrtllm.POSTPROCESSING):
        _save_tokenizer(model_dir, root / step / "1" / tensorrtllm.TOKENIZER_DIR)
    if engine_source is not None:
        engine = Path(engine_source)
        if not (engine / "config.json").is_file():
            raise TrainerError(f"{engine} is not a TensorRT-LLM engine directory (no config.json)")
        shutil.copytree(engine, root / tensorrtllm.TENSORRT_LLM / "1", copy_function=_link_or_copy, dirs_exist_ok=True)
