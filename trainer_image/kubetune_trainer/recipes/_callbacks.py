"""Trainer callbacks every recipe installs: stop cleanly on SIGTERM, and mark checkpoints complete.

Kubernetes stops a pod (preemption, node drain, ``spec.suspend``) with SIGTERM and kills it
after the grace period. :class:`GracefulStop` turns SIGTERM into "finish this optimizer step,
save a checkpoint, stop", so the retry resumes where this attempt left off instead of at the
last periodic checkpoint. All ranks agree on the stop before anyone saves, since saving is a
collective operation under DeepSpeed.

:class:`CheckpointCompletion` writes the completion marker once every rank has written its part
of a checkpoint, and tells the status reporter about it.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from kubetune.api import v1alpha1
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune_trainer.recipes import _distributed, checkpoints
from kubetune_trainer.status import StatusReporter

log = logging.getLogger(__name__)


class GracefulStop(TrainerCallback):
    """Save a checkpoint and stop at the end of the current step on SIGTERM (or at ``stop_at``).

    Args:
        stop_at: also stop once this step is reached (``--stop-at``; simulates a preemption).
    """

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.signalled = False
        self.stopped_early = False
        self._previous_handler: Any = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        """Install the SIGTERM handler for the duration of training."""
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        """Restore the previous SIGTERM handler."""
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        log.warning("SIGTERM received: saving a checkpoint at the end of this step, then stopping")
        self.signalled = True

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        """Stop and save once any rank was signalled or the stop step is reached."""
        reached = self.stop_at is not None and state.global_step >= self.stop_at
        if not _any_rank(self.signalled or reached, args.device):
            return
        control.should_save = True
        control.should_training_stop = True
        self.stopped_early = state.global_step < state.max_steps
        if self.stopped_early:
            step = state.global_step
            log.warning("stopping at step %d of %d; a retry resumes from checkpoint-%d", step, state.max_steps, step)


def _any_rank(flag: bool, device: torch.device) -> bool:
    """OR of a flag across ranks (the flag itself in a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class CheckpointCompletion(TrainerCallback):
    """Mark each saved checkpoint complete and report it to the FineTuneJob's status.

    Args:
        spec: the job spec (for the checkpoint URI users see).
        reporter: the status reporter, if the run reports to a FineTuneJob.
    """

    def __init__(self, spec: v1alpha1.FineTuneJobSpec, reporter: StatusReporter | None) -> None:
        self.spec = spec
        self.reporter = reporter
        self.latest: Path | None = None

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        """Runs after the Trainer has written ``checkpoint-<step>``."""
        _distributed.barrier()  # every rank has written its shard
        if not state.is_world_process_zero:
            return
        path = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        checkpoints.mark_complete(path, state.global_step)
        self.latest = path
        log.info("checkpoint complete: %s", path)
        if self.reporter is not None:
            uri = checkpoints.checkpoint_uri(self.spec, state.global_step)
            self.reporter.report_checkpoint(v1alpha1.CheckpointStatus(uri=uri, step=state.global_step))
