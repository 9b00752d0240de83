"""Which checkpoints are complete, which one to resume from, and where the final weights go.

The Hugging Face ``Trainer`` writes ``checkpoint-<step>/`` file by file, so a pod killed while
saving leaves a directory that looks like a checkpoint but is not. Every checkpoint the trainer
finishes therefore gets a :data:`COMPLETE_MARKER`, written atomically after all ranks are done;
only marked directories are ever resumed from, and unmarked ones are removed before training.

This module does not import torch: the operator-facing logic (what to resume) stays testable
without it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer.cli import TrainerError
from kubetune_trainer.fsutil import atomic_file

log = logging.getLogger(__name__)

#: File whose presence marks a checkpoint directory as completely written.
COMPLETE_MARKER = "kubetune-complete.json"
#: Sub-directory of the checkpoints directory that holds the final trained weights.
FINAL_DIR_NAME = "final"
#: Summary of the run, written into the final directory.
TRAINING_SUMMARY = "kubetune-training.json"

_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: str | Path) -> int | None:
    """The step of a ``checkpoint-<step>`` directory, or ``None`` for any other name."""
    match = _CHECKPOINT_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete(path: str | Path) -> bool:
    """Whether a checkpoint directory was completely written (it carries the marker)."""
    return (Path(path) / COMPLETE_MARKER).is_file()


def mark_complete(path: str | Path, step: int) -> None:
    """Mark a checkpoint directory as complete (call once every rank has written its part)."""
    with atomic_file(Path(path) / COMPLETE_MARKER) as handle:
        json.dump({"step": step}, handle)  # type: ignore[arg-type]


def list_checkpoints(checkpoints_dir: str | Path) -> list[Path]:
    """All ``checkpoint-<step>`` directories, complete or not, by increasing step."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def latest_complete(checkpoints_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or ``None``."""
    complete = [p for p in list_checkpoints(checkpoints_dir) if is_complete(p)]
    return complete[-1] if complete else None


def remove_incomplete(checkpoints_dir: str | Path) -> list[Path]:
    """Delete checkpoint directories that lack the marker (left by a crash while saving).

    Returns:
        The directories removed.
    """
    removed = [p for p in list_checkpoints(checkpoints_dir) if not is_complete(p)]
    for path in removed:
        log.warning("removing incomplete checkpoint %s", path)
        shutil.rmtree(path, ignore_errors=True)
    return removed


def remove_all(checkpoints_dir: str | Path) -> None:
    """Delete every checkpoint (a run that starts from scratch must not resume an older one later)."""
    for path in list_checkpoints(checkpoints_dir):
        log.warning("starting from scratch: removing old checkpoint %s", path)
        shutil.rmtree(path, ignore_errors=True)


def resolve_resume(requested: str | None, config: v1alpha1.TrainerConfig) -> Path | None:
    """Decide which checkpoint a run resumes from.

    Args:
        requested: the ``--resume`` argument: a checkpoint path, ``"auto"`` (the latest complete
            checkpoint, if any), ``"none"`` (start from scratch) or ``None`` (use
            ``config.resume_from`` if set, else ``"auto"``).
        config: the run's config.

    Returns:
        The checkpoint directory to resume from, or ``None`` to start from scratch.

    Raises:
        TrainerError: if an explicitly named checkpoint is missing or incomplete.
    """
    choice = requested or config.resume_from or "auto"
    if choice == "none":
        return None
    if choice == "auto":
        return latest_complete(config.paths.checkpoints_dir)
    path = Path(choice)
    if not path.is_dir():
        raise TrainerError(f"checkpoint to resume from not found: {path}")
    if not is_complete(path):
        raise TrainerError(f"checkpoint {path} is incomplete (no {COMPLETE_MARKER}); pick an earlier one")
    return path


def final_dir(paths: v1alpha1.TrainerPaths) -> Path:
    """Where the train step leaves the trained weights (adapter or full model) for evaluate and export."""
    return Path(paths.checkpoints_dir) / FINAL_DIR_NAME


def read_training_summary(trained_dir: str | Path) -> dict[str, Any]:
    """The summary the train step wrote next to the final weights.

    Raises:
        TrainerError: if the train step has not finished (no summary).
    """
    path = Path(trained_dir) / TRAINING_SUMMARY
    if not path.is_file():
        raise TrainerError(f"no trained model in {trained_dir}: run the train step first")
    summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return summary


def checkpoint_uri(spec: v1alpha1.FineTuneJobSpec, step: int) -> str:
    """The URI of a checkpoint as users see it, under ``spec.output.uri``."""
    return f"{spec.output.uri.rstrip('/')}/checkpoints/checkpoint-{step}"
