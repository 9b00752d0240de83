from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubetune.api import v1alpha1
from kubetune_trainer import tiny
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.data import packed, records, tokenize

IGNORE = tokenize.IGNORE_INDEX


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return tiny.build_tokenizer(vocab_size=600)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    path = tmp_path_factory.mktemp("tok") / "base"
    tokenizer.save_pretrained(path)
    return path


def triple(context: str, response: str, followup: str = "", intent: str = "x") -> records.Record:
    obj = {"context": context, "response": response, "followup": followup, "intent": intent}
    parsed = records.parse_record(obj, v1alpha1.DatasetFormat.TRIPLE)
    assert isinstance(parsed, records.Record)
    return parsed


def chat(*turns: tuple[str, str]) -> records.Record:
    parsed = records.parse_record(
        {"messages": [{"role": role, "content": text} for role, text in turns]}, v1alpha1.DatasetFormat.CHAT
    )
    assert isinstance(parsed, records.Record)
    return parsed


def trained_text(tokenizer: Any, ids: np.ndarray, labels: np.ndarray) -> str:
    assert ((labels == IGNORE) | (labels == ids)).all()
    return tokenizer.decode([int(i) for i, label in zip(ids, labels, strict=True) if label != IGNORE])


def encode(tokenizer: Any, items: list[records.Record], max_len: int = 512) -> tuple[tokenize.Samples, Any]:
    return tokenize.encode_records(tokenizer, items, max_len)


def test_only_the_response_and_its_end_token_are_trained_on(tokenizer: Any) -> None:
    samples, stats = encode(tokenizer, [triple("我的订单到哪了？", "已发货，预计三天送达。", "谢谢")])
    ids, labels = samples.input_ids[0], samples.labels[0]
    assert trained_text(tokenizer, ids, labels) == "已发货，预计三天送达。<|im_end|>"
    text = tokenizer.decode(ids.tolist())
    assert text.startswith("<|im_start|>user\n我的订单到哪了？<|im_end|>\n<|im_start|>assistant\n")
    assert "谢谢" not in text  # the followup comes after the response: not rendered
    assert labels[0] == IGNORE and labels[-1] == IGNORE  # the trailing newline is not trained on
    assert stats.samples == 1 and stats.trainable_tokens == int((labels != IGNORE).sum())


def test_every_assistant_turn_of_a_chat_is_trained_on(tokenizer: Any) -> None:
    record = chat(
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Bye"), ("assistant", "Bye!")
    )
    samples, _ = encode(tokenizer, [record])
    assert trained_text(tokenizer, samples.input_ids[0], samples.labels[0]) == "Hello!<|im_end|>Bye!<|im_end|>"


def test_templates_whose_renders_are_not_prefixes_fall_back_to_finding_the_content(tokenizer: Any) -> None:
    odd = tiny.build_tokenizer(vocab_size=600)
    odd.chat_template = (  # the generation prompt differs from how assistant turns are rendered
        "{% for m in messages %}{{ '<|im_start|>' + ('bot' if m['role'] == 'assistant' else m['role']) + '\n' "
        "+ m['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    rendered = tokenize.render(odd, triple("Q?", "The answer.").turns())
    assert [rendered.text[a:b] for a, b in rendered.spans] == ["The answer.<|im_end|>"]


def test_tokenizers_without_offsets_are_encoded_piece_by_piece(tokenizer: Any) -> None:
    rendered = tokenize.render(tokenizer, triple("我要退款", "好的，已为您申请退款。").turns())
    ids, labels = tokenize._encode_by_pieces(tokenizer, rendered)
    assert trained_text(tokenizer, ids, labels) == "好的，已为您申请退款。<|im_end|>"
    assert tokenizer.decode(ids.tolist()) == rendered.text


def test_long_samples_are_truncated_and_those_left_without_labels_dropped(tokenizer: Any) -> None:
    items = [triple("短", "好的" * 40), triple("长" * 200, "好的")]
    samples, stats = encode(tokenizer, items, max_len=48)
    assert (stats.truncated, stats.dropped_no_labels, stats.samples) == (2, 1, 1)
    assert len(samples.input_ids[0]) == 48


def test_pack_best_fit_decreasing() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(5, 100) for _ in range(500)]
    groups = tokenize.pack(lengths, 128)
    assert sorted(i for group in groups for i in group) == list(range(500))
    assert all(sum(lengths[i] for i in group) <= 128 for group in groups)
    assert sum(lengths) / (128 * len(groups)) > 0.95
    assert all(group == sorted(group) for group in groups)
    assert [group[0] for group in groups] == sorted(group[0] for group in groups)
    assert tokenize.pack([128, 1, 127], 128) == [[0], [1, 2]]
    assert tokenize.pack([], 128) == []


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    rng = random.Random(1)
    words = ["订单", "退款", "发货", "谢谢", "hello", "order", "请问", "好的"]
    items = [
        triple("".join(rng.choices(words, k=rng.randint(1, 8))), "".join(rng.choices(words, k=3))) for _ in range(60)
    ]
    splits = {"train": items[:50], "validation": items[50:]}
    tokenize.tokenize_splits(tokenizer, splits, v1alpha1.TrainingSpec(max_seq_length=96), root / "tokenized")
    for name, split in splits.items():
        lines = (json.dumps(record.to_chat(), ensure_ascii=False) + "\n" for record in split)
        (root / f"{name}.jsonl").write_text("".join(lines), encoding="utf-8")
    return root


def test_packed_sequences_fit_and_positions_restart_per_sample(written: Path, tokenizer: Any) -> None:
    train, validation = tokenize.load_tokenized(written)
    assert len(validation) >= 1
    meta = train.meta
    assert meta["formatVersion"] == 1 and meta["packing"] is True and meta["maxSeqLength"] == 96
    assert meta["splits"]["train"]["samples"] == 50 and meta["splits"]["validation"]["samples"] == 10
    assert len(train) == meta["splits"]["train"]["sequences"] < 50
    assert train.lengths().max() <= 96
    starts = 0
    for index in range(len(train)):
        item = train[index]
        assert set(item) == {"input_ids", "labels", "position_ids"}
        positions = item["position_ids"].tolist()
        assert positions[0] == 0
        restarts = [i for i, p in enumerate(positions) if p == 0]
        assert all(positions[i] == i - max(r for r in restarts if r <= i) for i in range(len(positions)))
        assert all(item["labels"][r].item() == IGNORE for r in restarts)  # a sample never starts trained
        starts += len(restarts)
        assert item["input_ids"].dtype.is_floating_point is False
    assert starts == 50
    assert train.num_trainable_tokens() == meta["splits"]["train"]["trainableTokens"]
    assert train.num_tokens() == meta["splits"]["train"]["tokens"]
    assert train[-1]["input_ids"].tolist() == train[len(train) - 1]["input_ids"].tolist()
    with pytest.raises(IndexError):
        train[len(train)]


def test_every_label_is_inside_an_assistant_turn(written: Path, tokenizer: Any) -> None:
    train, _ = tokenize.load_tokenized(written)
    item = train[0]
    ids, labels = item["input_ids"].numpy(), item["labels"].numpy()
    text = trained_text(tokenizer, ids, labels)
    assert text.count("<|im_end|>") == (item["position_ids"] == 0).sum().item()
    assert "<|im_start|>" not in text and "user" not in text


def test_unpacked_sequences_are_one_sample_each(tmp_path: Path, tokenizer: Any) -> None:
    items = [triple("a", "b"), triple("c", "d")]
    meta = tokenize.tokenize_splits(
        tokenizer, {"train": items, "validation": []}, v1alpha1.TrainingSpec(packing=False), tmp_path / "tokenized"
    )
    train, validation = tokenize.load_tokenized(tmp_path)
    assert (len(train), len(validation)) == (2, 0)
    assert meta["splits"]["validation"] == {
        "sequences": 0,
        "samples": 0,
        "tokens": 0,
        "trainableTokens": 0,
        "truncated": 0,
        "droppedNoLabels": 0,
    }


def test_collator_pads_without_an_attention_mask(written: Path) -> None:
    train, _ = tokenize.load_tokenized(written)
    collate = train.collator(pad_to_multiple_of=8)
    short = {"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7], "position_ids": [0, 1, 0]}
    batch = collate([train[0], short])
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0 and width >= len(train[0]["input_ids"])
    assert batch["input_ids"][1].tolist() == [5, 6, 7] + [train.pad_token_id] * (width - 3)
    assert batch["labels"][1].tolist() == [IGNORE, 6, 7] + [IGNORE] * (width - 3)
    assert batch["position_ids"][1].tolist() == [0, 1, 0, *range(width - 3)]


def test_packed_samples_do_not_attend_to_each_other() -> None:
    """The claim in tokenize's docstring, checked on a tiny Llama: a packed row equals its samples run alone."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    model = LlamaForCausalLM(config).eval()
    first, second = torch.randint(0, 64, (7,)), torch.randint(0, 64, (5,))
    row = {
        "input_ids": torch.cat([first, second]),
        "labels": torch.cat([first, second]),
        "position_ids": torch.cat([torch.arange(7), torch.arange(5)]),
    }
    batch = packed.PackedCollator(0)([row, {"input_ids": first, "labels": first, "position_ids": torch.arange(7)}])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        alone_first = model(input_ids=first[None], use_cache=False).logits[0]
        alone_second = model(input_ids=second[None], use_cache=False).logits[0]
    torch.testing.assert_close(logits[0, :7], alone_first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[0, 7:12], alone_second, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1, :7], alone_first, atol=1e-5, rtol=1e-5)


def test_load_cleaned_records(written: Path) -> None:
    validation = tokenize.load_cleaned_records(written)
    assert len(validation) == 10
    record = validation[0]
    assert record.prompt == record.messages[:1]
    assert record.messages[1] == {"role": "assistant", "content": record.reference}
    assert record.intent == "x"
    assert len(tokenize.load_cleaned_records(written, "train")) == 50


def test_loaders_report_missing_data(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="no tokenized data in"):
        tokenize.load_tokenized(tmp_path)
    with pytest.raises(TrainerError, match="cleaned validation records not found"):
        tokenize.load_cleaned_records(tmp_path)
    (tmp_path / "tokenized").mkdir()
    (tmp_path / "tokenized" / "meta.json").write_text('{"formatVersion": 99}')
    with pytest.raises(TrainerError, match="format version 99, expected 1"):
        tokenize.load_tokenized(tmp_path)


def test_load_tokenizer(tokenizer_dir: Path, tmp_path: Path) -> None:
    loaded = tokenize.load_tokenizer(str(tokenizer_dir))
    assert loaded.chat_template == tiny.CHAT_TEMPLATE
    with pytest.raises(TrainerError, match=f"tokenizer directory not found: {tmp_path / 'none'}"):
        tokenize.load_tokenizer(str(tmp_path / "none"))
    with pytest.raises(TrainerError, match="cannot load a tokenizer from"):
        tokenize.load_tokenizer(str(tmp_path))  # a directory without a tokenizer


def test_pvc_tokenizer_and_fallback_chat_template(tokenizer: Any, tmp_path: Path) -> None:
    plain = tiny.build_tokenizer(vocab_size=600)
    plain.chat_template = None
    plain.save_pretrained(tmp_path / "claim" / "base")
    (tmp_path / "claim" / "base" / "chat_template.jinja").unlink(missing_ok=True)
    loaded = tokenize.load_tokenizer("pvc://claim/base", pvc_root=str(tmp_path))
    assert loaded.chat_template == tokenize.FALLBACK_CHAT_TEMPLATE


def test_a_chat_opening_with_the_assistant_does_not_train_on_its_header(tokenizer: Any) -> None:
    samples, _ = encode(tokenizer, [chat(("assistant", "Welcome!"), ("user", "Hi"), ("assistant", "How can I help?"))])
    assert trained_text(tokenizer, samples.input_ids[0], samples.labels[0]) == (
        "Welcome!<|im_end|>How can I help?<|im_end|>"
    )
