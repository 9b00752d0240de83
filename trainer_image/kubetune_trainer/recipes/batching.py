"""Training data as the recipes feed it: the prepared splits, packed or one example per row.

The prepare step tokenizes, masks and (with ``spec.training.packing``) packs the data, and
:mod:`kubetune_trainer.data.tokenize` reads it back as sequences of ``input_ids``, ``labels``
and ``position_ids``. Packed examples keep their own positions (restarting at 0) and are batched
without an ``attention_mask``, which is how transformers recognises packed rows and keeps the
examples from attending to each other.

That recognition is skipped when the model runs with a key/value cache, which is exactly how
prefix tuning injects its virtual tokens. So prefix tuning, and evaluation (which must score
every method the same way), :func:`unpack` the sequences back into single examples and batch
them padded, with an ``attention_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kubetune_trainer.cli import TrainerError

IGNORE_INDEX = -100


def load_splits(prepared_dir: str | Path) -> tuple[Any, Any]:
    """The tokenized train and validation splits written by the prepare step.

    Args:
        prepared_dir: ``TrainerPaths.prepared_dir``.

    Returns:
        ``(train, validation)`` map-style datasets of packed sequences (validation may be empty).

    Raises:
        TrainerError: if the prepare step has not run or left no training examples.
    """
    from kubetune_trainer.data import tokenize

    train, validation = tokenize.load_tokenized(prepared_dir)
    if len(train) == 0:
        raise TrainerError(f"the prepared training split in {prepared_dir} is empty")
    return train, validation


def unpack(dataset: Any) -> list[dict[str, list[int]]]:
    """Split packed sequences back into single examples (at each ``position_ids`` restart).

    Args:
        dataset: sequences with ``input_ids``, ``labels`` and ``position_ids``.

    Returns:
        One ``{"input_ids", "labels"}`` dict of lists per example.
    """
    examples: list[dict[str, list[int]]] = []
    for index in range(len(dataset)):
        row = dataset[index]
        ids, labels = row["input_ids"].tolist(), row["labels"].tolist()
        starts = [i for i, position in enumerate(row["position_ids"].tolist()) if position == 0]
        for begin, end in zip(starts, [*starts[1:], len(ids)], strict=True):
            examples.append({"input_ids": ids[begin:end], "labels": labels[begin:end]})
    return examples


class PaddedCollator:
    """Batches single examples: right-padded, with an ``attention_mask``."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Pad the rows to the longest one and stack them."""
        width = max(len(r["input_ids"]) for r in rows)
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
        for row in rows:
            size = len(row["input_ids"])
            gap = width - size
            batch["input_ids"].append(list(row["input_ids"]) + [self.pad_token_id] * gap)
            batch["labels"].append(list(row["labels"]) + [IGNORE_INDEX] * gap)
            batch["attention_mask"].append([1] * size + [0] * gap)
        return {key: torch.tensor(values, dtype=torch.long) for key, values in batch.items()}


def training_data(train: Any, *, packed: bool) -> tuple[Any, Any]:
    """The training dataset and its collator.

    Args:
        train: the tokenized training split.
        packed: keep the prepared sequences (packed if the prepare step packed them) and batch
            them without an attention mask; ``False`` unpacks them into padded single examples.

    Returns:
        ``(dataset, collator)`` ready for a ``Trainer``.
    """
    if packed:
        return train, train.collator()
    return unpack(train), PaddedCollator(train.pad_token_id)


def training_split(prepared_dir: str | Path, *, packed: bool) -> tuple[Any, Any]:
    """The prepared training split and its collator (see :func:`training_data`)."""
    train, _ = load_splits(prepared_dir)
    return training_data(train, packed=packed)
