"""Copy a model given by hf:// or s3:// onto the engine volume, once, for the build Job.

Why this module exists: the repository writer and TensorRT-LLM's converters read a model from a
directory, and Triton pods read what the build wrote from a PersistentVolumeClaim. A
ModelDeployment of a model on the Hugging Face Hub or in an S3 bucket therefore starts its build
by copying the model next to the revision's repository (``python -m kubetune_trainer serve
fetch``). The copy is built under a temporary name and marked complete, so a retried build pod
skips a finished copy and never uses a half-written one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kubetune.api import v1alpha1

from kubetune_trainer import fsutil
from kubetune_trainer.cli import TrainerError

log = logging.getLogger(__name__)

#: File written last into a complete copy; it holds the source URI.
COMPLETE_MARKER = ".kubetune-fetched"


def is_complete(directory: Path, uri: str) -> bool:
    """Whether ``directory`` holds a finished copy of ``uri``."""
    marker = directory / COMPLETE_MARKER
    return marker.is_file() and marker.read_text("utf-8").strip() == uri


def fetch(uri: str, output: str | Path) -> Path:
    """Copy the model at ``uri`` into ``output`` unless a complete copy is there already.

    Args:
        uri: ``hf://org/name[@revision]`` (token from ``HF_TOKEN``), or an fsspec URL of a
            directory such as ``s3://bucket/prefix`` (credentials from ``AWS_*``).
        output: the directory to create.

    Returns:
        The directory.

    Raises:
        TrainerError: the source cannot be read or holds no files.
    """
    target = Path(output)
    if is_complete(target, uri):
        log.info("%s already holds %s", target, uri)
        return target
    with fsutil.atomic_dir(target) as tmp:
        if uri.startswith("hf://"):
            _from_hub(uri, tmp)
        else:
            _from_fsspec(uri, tmp)
        if not any(path.is_file() for path in tmp.rglob("*")):
            raise TrainerError(f"{uri} holds no files")
        (tmp / COMPLETE_MARKER).write_text(uri + "\n", "utf-8")
    log.info("copied %s to %s", uri, target)
    return target


def _from_hub(uri: str, directory: Path) -> None:
    """Download a Hub repository snapshot (weights, tokenizer, config) into ``directory``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    parsed = v1alpha1.parse_uri(uri)
    try:
        snapshot_download(repo_id=parsed.authority, revision=parsed.revision, local_dir=directory)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise TrainerError(f"cannot download {uri}: {err}") from err


def _from_fsspec(uri: str, directory: Path) -> None:
    """Copy every file below an fsspec URL (s3://bucket/prefix, ...) into ``directory``."""
    import fsspec

    try:
        filesystem, root = fsspec.core.url_to_fs(uri)
        root = root.rstrip("/")
        files = [path for path in filesystem.find(root) if not filesystem.isdir(path)]
        for path in files:
            relative = path[len(root) :].lstrip("/")
            destination = directory / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            filesystem.get_file(path, str(destination))
    except (OSError, ValueError) as err:
        raise TrainerError(f"cannot copy {uri}: {err}") from err
