"""The tokenized splits as a map-style dataset, and the collator that batches them.

Why this module exists: the train and evaluate steps need a ``torch.utils.data``-compatible
dataset (``len`` and ``dataset[i]``) and a collator that pads without breaking the
packed-sample isolation described in :mod:`kubetune_trainer.data.tokenize`. The usual
transformers collators add an ``attention_mask``, which makes the model attend across packed
samples, and do not pad ``position_ids``; this one pads ``input_ids`` with the pad token,
``labels`` with -100 and ``position_ids`` with a fresh 0, 1, 2... run (so padding is a block of
its own) and leaves ``attention_mask`` out. torch is imported only when an item is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

IGNORE_INDEX = -100
_KEYS = ("input_ids", "labels", "position_ids")


class PackedDataset:
    """Sequences stored as flat memory-mapped arrays plus offsets.

    Attributes:
        pad_token_id: the id :meth:`collator` pads ``input_ids`` with.
        meta: the content of ``tokenized/meta.json``.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], pad_token_id: int, meta: Mapping[str, Any]) -> None:
        """Wrap the arrays of one split.

        Args:
            arrays: ``input_ids``, ``labels``, ``position_ids`` (flat) and ``offsets``.
            pad_token_id: pad id for batching.
            meta: ``meta.json`` of the tokenized directory.
        """
        self._arrays = {key: arrays[key] for key in _KEYS}
        self._offsets = np.asarray(arrays["offsets"], dtype=np.int64)
        self.pad_token_id = pad_token_id
        self.meta = dict(meta)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        if not -len(self) <= index < len(self):
            raise IndexError(f"sequence {index} out of range ({len(self)} sequences)")
        index %= len(self)
        start, end = int(self._offsets[index]), int(self._offsets[index + 1])
        return {
            key: torch.from_numpy(np.array(array[start:end], dtype=np.int64)) for key, array in self._arrays.items()
        }

    def lengths(self) -> np.ndarray:
        """Tokens per sequence (e.g. for length-grouped sampling)."""
        return np.diff(self._offsets)

    def num_tokens(self) -> int:
        """Tokens in the split."""
        return int(self._offsets[-1])

    def num_trainable_tokens(self) -> int:
        """Tokens with a label (assistant tokens)."""
        return int((np.asarray(self._arrays["labels"]) != IGNORE_INDEX).sum())

    def collator(self, pad_to_multiple_of: int | None = None) -> PackedCollator:
        """A collator using this split's pad id."""
        return PackedCollator(self.pad_token_id, pad_to_multiple_of)


class PackedCollator:
    """Pads a list of items into a batch of ``input_ids``, ``labels`` and ``position_ids`` (no attention mask)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        """Create a collator.

        Args:
            pad_token_id: the id put in padded ``input_ids`` positions.
            pad_to_multiple_of: round the batch length up to a multiple of this (tensor cores like 8).
        """
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Batch items from :class:`PackedDataset` (tensors or lists of ints)."""
        import torch

        longest = max(len(feature["input_ids"]) for feature in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {
            "input_ids": torch.full((len(features), longest), self.pad_token_id, dtype=torch.long),
            "labels": torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long),
            "position_ids": torch.arange(longest, dtype=torch.long).repeat(len(features), 1),
        }
        for row, feature in enumerate(features):
            length = len(feature["input_ids"])
            for key in _KEYS:
                batch[key][row, :length] = torch.as_tensor(feature[key], dtype=torch.long)
            batch["position_ids"][row, length:] = torch.arange(longest - length)
        return batch
