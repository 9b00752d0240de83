from __future__ import annotations

import math

import pytest
from kubetune_trainer.serve import pbtxt


def test_render_scalars_messages_and_lists() -> None:
    text = pbtxt.render(
        {
            "name": "m",
            "backend": "python",
            "max_batch_size": 4,
            "dynamic_batching": {"max_queue_delay_microseconds": 100},
            "input": [pbtxt.tensor("x", "STRING", [1], optional=True)],
            "output": [pbtxt.tensor("y", "FP32", [-1, 2])],
            "skipped": None,
        },
        header="line one\nline two",
    )
    assert text.startswith('# line one\n# line two\nname: "m"\n')
    assert "skipped" not in text
    config = pbtxt.validate_config(text)
    assert config.max_batch_size == 4
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.input[0].optional and config.input[0].data_type == 13  # TYPE_STRING
    assert list(config.output[0].dims) == [-1, 2]


def test_strings_with_quotes_newlines_and_unicode_round_trip() -> None:
    tricky = 'a "quoted" \\ path\nwith\ttabs, 中文 and \x01'
    config = pbtxt.validate_config(
        pbtxt.render({"name": "m", "backend": "python", "parameters": pbtxt.Parameters(p=tricky)})
    )
    assert config.parameters["p"].string_value == tricky


def test_map_renders_one_entry_per_key() -> None:
    text = pbtxt.render({"input_map": pbtxt.Map(A="a", B="b")})
    assert text.splitlines() == ['input_map { key: "A" value: "a" }', 'input_map { key: "B" value: "b" }']


def test_empty_scalar_list_renders_as_empty_shape() -> None:
    config = pbtxt.validate_config(
        pbtxt.render(
            {"name": "m", "backend": "python", "input": [pbtxt.tensor("x", "INT32", [1], reshape={"shape": []})]}
        )
    )
    assert config.input[0].HasField("reshape")
    assert list(config.input[0].reshape.shape) == []


def test_bools_and_floats_render_as_protobuf_literals() -> None:
    text = pbtxt.render({"a": True, "b": False, "c": 0.25})
    assert text == "a: true\nb: false\nc: 0.25\n"


@pytest.mark.parametrize("value", [math.inf, math.nan, object(), b"bytes"])
def test_unrenderable_values_are_rejected(value: object) -> None:
    with pytest.raises(TypeError):
        pbtxt.render({"x": value})


def test_enum_rejects_non_identifiers() -> None:
    with pytest.raises(ValueError, match="not an enum identifier"):
        pbtxt.Enum("TYPE STRING")


def test_validate_rejects_text_that_does_not_parse() -> None:
    with pytest.raises(pbtxt.ConfigError, match="invalid model config"):
        pbtxt.validate_config('name: "m"\nbackend: "python"\nmax_batch_sizes: 3\n')


def test_validate_rejects_a_config_without_backend_or_platform() -> None:
    with pytest.raises(pbtxt.ConfigError, match="neither a backend nor a platform"):
        pbtxt.validate_config('name: "m"\n')


def test_validate_rejects_negative_max_batch_size() -> None:
    with pytest.raises(pbtxt.ConfigError, match="max_batch_size"):
        pbtxt.validate_config('name: "m"\nbackend: "python"\nmax_batch_size: -1\n')


def test_validate_rejects_duplicate_tensor_names() -> None:
    text = pbtxt.render(
        {
            "name": "m",
            "backend": "python",
            "input": [pbtxt.tensor("x", "INT32", [1]), pbtxt.tensor("x", "INT32", [1])],
        }
    )
    with pytest.raises(pbtxt.ConfigError, match="declares input x twice"):
        pbtxt.validate_config(text)
