from __future__ import annotations

import json
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.data import records

FMT = v1alpha1.DatasetFormat


def parse(obj: Any, fmt: FMT) -> records.Record:
    parsed = records.parse_record(obj, fmt, 7)
    assert isinstance(parsed, records.Record), parsed
    return parsed


def test_triple_maps_context_response_followup_to_user_assistant_user() -> None:
    record = parse({"context": "hi", "response": "hello", "followup": "thanks", "intent": "greet"}, FMT.TRIPLE)
    assert record.turns() == [("user", "hi"), ("assistant", "hello"), ("user", "thanks")]
    assert record.label("intent") == "greet"
    assert record.line == 7


@pytest.mark.parametrize("followup", [None, ""])
def test_triple_followup_is_optional(followup: str | None) -> None:
    obj = {"context": "hi", "response": "hello"}
    if followup is not None:
        obj["followup"] = followup
    assert parse(obj, FMT.TRIPLE).turns() == [("user", "hi"), ("assistant", "hello")]


def test_chat_keeps_every_message() -> None:
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    record = parse({"messages": messages, "intent": "x"}, FMT.CHAT)
    assert record.turns() == [(m["role"], m["content"]) for m in messages]


def test_alpaca_joins_instruction_and_input() -> None:
    record = parse({"instruction": "Translate", "input": "你好", "output": "Hello"}, FMT.ALPACA)
    assert record.turns() == [("user", "Translate\n\n你好"), ("assistant", "Hello")]
    assert parse({"instruction": "Say hi", "output": "Hi"}, FMT.ALPACA).turns() == [
        ("user", "Say hi"),
        ("assistant", "Hi"),
    ]


@pytest.mark.parametrize(
    ("obj", "fmt"),
    [
        ({"context": "a", "response": "b", "followup": "c", "intent": "i", "extra": 1}, FMT.TRIPLE),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "id": 3}, FMT.CHAT),
        ({"instruction": "a", "input": "b", "output": "c", "intent": "i"}, FMT.ALPACA),
    ],
)
def test_to_source_writes_cleaned_texts_back_in_the_input_format(obj: dict[str, Any], fmt: FMT) -> None:
    record = parse(obj, fmt)
    assert record.to_source() == obj
    for segment in record.segments:
        segment.text = segment.text.upper()
    out = record.to_source()
    assert set(out) == set(obj)
    assert obj == parse(obj, fmt).source  # the original object is not modified
    texts = [segment.text for segment in record.segments]
    assert all(text.isupper() for text in texts)


def test_to_chat_is_the_split_layout() -> None:
    record = parse({"context": "hi", "response": "hello", "followup": "", "intent": "greet"}, FMT.TRIPLE)
    assert record.to_chat() == {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "intent": "greet",
    }
    assert "intent" not in parse({"context": "a", "response": "b"}, FMT.TRIPLE).to_chat()


@pytest.mark.parametrize(
    ("obj", "fmt", "reason"),
    [
        ([1, 2], FMT.TRIPLE, "expected a JSON object, got array"),
        ("text", FMT.CHAT, "expected a JSON object, got string"),
        ({"response": "b"}, FMT.TRIPLE, "missing field 'context'"),
        ({"context": "a", "response": None}, FMT.TRIPLE, "missing field 'response'"),
        ({"context": 5, "response": "b"}, FMT.TRIPLE, "field 'context' must be a string, got number"),
        ({"context": "a", "response": "b", "followup": ["x"]}, FMT.TRIPLE, "field 'followup' must be a string"),
        ({"context": "a", "response": "b", "intent": {"k": 1}}, FMT.TRIPLE, "field 'intent' must be a string"),
        ({}, FMT.CHAT, "missing field 'messages'"),
        ({"messages": []}, FMT.CHAT, "'messages' must be a non-empty list"),
        ({"messages": "hi"}, FMT.CHAT, "'messages' must be a non-empty list, got string"),
        ({"messages": ["hi"]}, FMT.CHAT, "messages[0] must be an object"),
        ({"messages": [{"role": "bot", "content": "x"}]}, FMT.CHAT, "messages[0].role must be one of"),
        ({"messages": [{"role": "user", "content": 3}]}, FMT.CHAT, "messages[0].content must be a string"),
        ({"messages": [{"role": "user", "content": "x"}]}, FMT.CHAT, "no assistant message"),
        ({"instruction": "a"}, FMT.ALPACA, "missing field 'output'"),
        ({"instruction": True, "output": "b"}, FMT.ALPACA, "field 'instruction' must be a string, got boolean"),
    ],
)
def test_invalid_objects_give_a_reason_instead_of_raising(obj: Any, fmt: FMT, reason: str) -> None:
    parsed = records.parse_record(obj, fmt, 1)
    assert isinstance(parsed, str)
    assert reason in parsed


def test_reasons_never_quote_the_content() -> None:
    parsed = records.parse_record({"context": 13812345678, "response": "b"}, FMT.TRIPLE)
    assert isinstance(parsed, str)
    assert "13812345678" not in parsed


@pytest.mark.parametrize(
    ("obj", "fmt"),
    [
        (
            {
                "context": 'a "quoted"\n\\ text',
                "response": "好的\t\u2028",
                "followup": None,
                "intent": "i",
                "n": [1, {"x": None}],
            },
            FMT.TRIPLE,
        ),
        (
            {"id": 3, "messages": [{"role": "user", "content": "你好\x01"}, {"role": "assistant", "content": "</s>"}]},
            FMT.CHAT,
        ),
        ({"instruction": "a", "output": "b", "intent": "x", "score": 7.5}, FMT.ALPACA),
        ({"context": "😀", "response": "\ud83d", "intent": None}, FMT.TRIPLE),
    ],
)
def test_fast_json_lines_equal_json_dumps(obj: dict[str, Any], fmt: FMT) -> None:
    record = records.parse_record(obj, fmt)
    assert isinstance(record, records.Record)
    record.segments[0].text = 'redacted <CN_MOBILE> "x"'
    assert record.source_json() == json.dumps(record.to_source(), ensure_ascii=False)
    for label in ("intent", "n", "missing"):
        assert record.chat_json(label) == json.dumps(record.to_chat(label), ensure_ascii=False)
