"""Perplexity: how surprised the model is by the held-out responses.

The loss is averaged over *tokens*, not over batches or examples: a batch mean of per-batch
means would weigh a short answer as much as a long one and depend on the batch size. Only the
tokens the model is trained to produce count (labels other than -100, i.e. the assistant turns),
so the number measures the responses, not the customers' messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kubetune_trainer.recipes import batching


@dataclass(frozen=True)
class LossResult:
    """Token-weighted loss over a dataset.

    Attributes:
        loss: mean cross-entropy per predicted token (nats).
        tokens: number of predicted tokens.
    """

    loss: float
    tokens: int

    @property
    def perplexity(self) -> float:
        """``exp(loss)`` (``inf`` on overflow)."""
        try:
            return math.exp(self.loss)
        except OverflowError:
            return math.inf


@torch.no_grad()
def token_loss(
    model: Any, examples: Sequence[dict[str, list[int]]], *, pad_token_id: int, batch_size: int = 8
) -> LossResult:
    """Mean cross-entropy per label token over single (unpacked) examples.

    Args:
        model: a causal LM (or peft model) in eval mode.
        examples: ``{"input_ids", "labels"}`` per example (labels -100 = not scored), e.g. from
            ``batching.unpack``.
        pad_token_id: used to pad batches.
        batch_size: examples per forward pass.

    Returns:
        The token-weighted loss; ``tokens`` is 0 (and ``loss`` NaN) when nothing is scored.
    """
    collate = batching.PaddedCollator(pad_token_id)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = {key: value.to(device) for key, value in collate(examples[start : start + batch_size]).items()}
        scored = int((batch["labels"][:, 1:] != batching.IGNORE_INDEX).sum())
        if scored == 0:
            continue
        mean = model(**batch).loss  # mean over the scored (shifted) tokens of this batch
        total += float(mean) * scored
        count += scored
    return LossResult(loss=total / count if count else math.nan, tokens=count)
