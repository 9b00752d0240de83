"""batching: packed sequences stay isolated, unpacking restores the examples, padding is ignored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kubetune_trainer.data.packed import PackedDataset
from kubetune_trainer.evaluate.perplexity import token_loss
from kubetune_trainer.recipes import batching
from transformers import LlamaConfig, LlamaForCausalLM

PAD = 0
# Two examples (prompt tokens labelled -100) that the prepare step packed into one sequence,
# and a third alone in a second sequence.
EXAMPLES = [
    {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, 7, 8, 9]},
    {"input_ids": [10, 11, 12], "labels": [-100, 11, 12]},
    {"input_ids": [13, 14, 15, 16], "labels": [-100, -100, -100, 16]},
]


def packed_dataset(groups: list[list[int]]) -> PackedDataset:
    ids, labels, positions, lengths = [], [], [], []
    for group in groups:
        for index in group:
            ids += EXAMPLES[index]["input_ids"]
            labels += EXAMPLES[index]["labels"]
            positions += list(range(len(EXAMPLES[index]["input_ids"])))
        lengths.append(sum(len(EXAMPLES[i]["input_ids"]) for i in group))
    arrays = {
        "input_ids": np.array(ids, dtype=np.int32),
        "labels": np.array(labels, dtype=np.int32),
        "position_ids": np.array(positions, dtype=np.int32),
        "offsets": np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
    }
    return PackedDataset(arrays, pad_token_id=PAD, meta={"packing": True})


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        initializer_range=0.5,  # large weights: attention patterns clearly change the loss
        use_cache=False,
    )
    return LlamaForCausalLM(config).eval()


def test_unpack_restores_every_example() -> None:
    assert batching.unpack(packed_dataset([[0, 1], [2]])) == EXAMPLES


def test_padded_collator_masks_padding() -> None:
    batch = batching.PaddedCollator(PAD)(EXAMPLES[1:])
    assert batch["input_ids"].tolist() == [[10, 11, 12, PAD], [13, 14, 15, 16]]
    assert batch["labels"].tolist() == [[-100, 11, 12, -100], [-100, -100, -100, 16]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


@torch.no_grad()
def test_packed_examples_do_not_attend_to_each_other(model: LlamaForCausalLM) -> None:
    dataset = packed_dataset([[0, 1], [2]])
    data, collator = batching.training_data(dataset, packed=True)
    batch = collator([data[0], data[1]])
    assert "attention_mask" not in batch
    scored = int((batch["labels"][:, 1:] != -100).sum())
    packed_loss = float(model(**batch).loss)

    separate = token_loss(model, EXAMPLES, pad_token_id=PAD)
    assert separate.tokens == scored == 6
    assert packed_loss == pytest.approx(separate.loss, abs=1e-5)

    # Control: the same rows with an all-ones attention mask let example 1 see example 0.
    leaky = float(model(**batch, attention_mask=torch.ones_like(batch["input_ids"])).loss)
    assert abs(leaky - separate.loss) > 1e-3


def test_unpacked_training_data_is_padded_single_examples() -> None:
    data, collator = batching.training_data(packed_dataset([[0, 1], [2]]), packed=False)
    assert data == EXAMPLES
    assert isinstance(collator, batching.PaddedCollator)
