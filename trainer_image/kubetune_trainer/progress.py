"""Training progress for people: a tqdm-style line in the pod log and the FineTuneJob status.

A terminal progress bar redraws one line with carriage returns, which ``kubectl logs`` shows as
one ever-growing line. So instead of a live bar, every ``loggingSteps`` the trainer logs one
complete line rendered by tqdm's own formatter::

    train  24%|██▍       | 120/500 [00:30<01:35, 4.00it/s, loss=1.234, lr=9.1e-05, tok/s=5210]

and hands the same numbers to the :class:`~kubetune_trainer.status.StatusReporter`, which
patches ``status.progress`` at most every few seconds (and once more at the end).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune_trainer.status import StatusReporter, build_progress

log = logging.getLogger("kubetune_trainer.train")


def progress_line(
    *,
    step: int,
    total_steps: int,
    elapsed: float,
    start_step: int = 0,
    loss: float | None = None,
    learning_rate: float | None = None,
    tokens_per_second: float | None = None,
) -> str:
    """Render one progress line the way tqdm draws its bar.

    Args:
        step: optimizer steps done.
        total_steps: optimizer steps planned.
        elapsed: seconds spent in this attempt.
        start_step: the step this attempt resumed from (rates count this attempt only).
        loss: latest training loss.
        learning_rate: current learning rate.
        tokens_per_second: throughput of this attempt.

    Returns:
        e.g. ``train  24%|██▍       | 120/500 [00:30<01:35, 4.00it/s, loss=1.234, lr=9.1e-05]``.
    """
    postfix = []
    if loss is not None:
        postfix.append(f"loss={loss:.4g}")
    if learning_rate is not None:
        postfix.append(f"lr={learning_rate:.2g}")
    if tokens_per_second is not None:
        postfix.append(f"tok/s={tokens_per_second:.0f}")
    return tqdm.format_meter(
        n=step,
        total=total_steps or None,
        elapsed=elapsed,
        ncols=120,
        prefix="train",
        unit="step",
        initial=start_step,
        postfix=", ".join(postfix) or None,
    )


class ProgressCallback(TrainerCallback):
    """Logs progress lines and reports ``status.progress`` (on the main process only).

    Args:
        reporter: where to report status, or ``None`` to log only.
        clock: monotonic clock (injectable for tests).
    """

    def __init__(self, reporter: StatusReporter | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.reporter = reporter
        self._clock = clock
        self._start = 0.0
        self._start_step = 0
        self._start_tokens = 0
        self.loss: float | None = None
        self.learning_rate: float | None = None
        self.losses: list[tuple[int, float]] = []

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        """Remember where this attempt starts (a resumed run starts past step 0)."""
        self._start = self._clock()
        self._start_step = state.global_step
        self._start_tokens = state.num_input_tokens_seen

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        """Take the latest loss and learning rate; log a line and report."""
        logs = logs or {}
        if "loss" in logs:
            self.loss = float(logs["loss"])
            self.losses.append((state.global_step, self.loss))
        if "learning_rate" in logs:
            self.learning_rate = float(logs["learning_rate"])
        if state.is_world_process_zero and "loss" in logs:
            log.info("%s", self._line(state))
        self._report(state, force=False)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        """Report between log lines too (the reporter's rate limit keeps this cheap)."""
        self._report(state, force=False)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        """Log the last line and send a final report regardless of the rate limit."""
        if state.is_world_process_zero:
            log.info("%s", self._line(state))
        self._report(state, force=True)

    def _elapsed(self) -> float:
        return max(self._clock() - self._start, 1e-9)

    def _tokens_per_second(self, state: TrainerState) -> float | None:
        tokens = state.num_input_tokens_seen - self._start_tokens
        return tokens / self._elapsed() if tokens > 0 else None

    def _line(self, state: TrainerState) -> str:
        return progress_line(
            step=state.global_step,
            total_steps=state.max_steps,
            elapsed=self._elapsed(),
            start_step=self._start_step,
            loss=self.loss,
            learning_rate=self.learning_rate,
            tokens_per_second=self._tokens_per_second(state),
        )

    def _report(self, state: TrainerState, *, force: bool) -> None:
        if self.reporter is None or not state.is_world_process_zero:
            return
        steps_done = state.global_step - self._start_step
        progress = build_progress(
            step=state.global_step,
            total_steps=state.max_steps or None,
            epoch=state.epoch,
            loss=self.loss,
            learning_rate=self.learning_rate,
            tokens_per_second=self._tokens_per_second(state),
            seconds_per_step=self._elapsed() / steps_done if steps_done > 0 else None,
        )
        self.reporter.report_progress(progress, force=force)
