"""Triton ``config.pbtxt`` as data: render Python structures to protobuf text, and validate the text.

Why this module exists: a model configuration written with f-strings breaks on the first quote in
a path and is only found broken when a Triton pod fails to load it. Here configurations are built
as plain dicts, rendered by one small function, and every rendered file is parsed back with
Triton's own schema (``tritonclient.grpc.model_config_pb2.ModelConfig``) before it is written.

Rendering is pure and needs neither protobuf nor tritonclient, so the operator can import it;
:func:`validate_config` imports the schema lazily.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetune_trainer.cli import TrainerError

__all__ = ["ConfigError", "Enum", "Map", "Parameters", "render", "tensor", "validate_config"]

_INDENT = "  "


class ConfigError(TrainerError):
    """A generated ``config.pbtxt`` that Triton would reject."""


@dataclass(frozen=True)
class Enum:
    """A protobuf enum value, rendered bare (``TYPE_STRING``, ``KIND_CPU``) instead of quoted."""

    name: str

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").isalnum():
            raise ValueError(f"not an enum identifier: {self.name!r}")


class Parameters(dict[str, str]):
    """Triton's ``parameters`` map (string -> string), rendered as repeated ``key``/``value`` blocks."""


class Map(dict[str, str]):
    """A protobuf ``map<string, string>`` (e.g. an ensemble step's ``input_map``), one block per entry."""


def tensor(name: str, data_type: str, dims: Sequence[int], *, optional: bool = False, **extra: Any) -> dict[str, Any]:
    """One entry of a model's ``input`` or ``output`` list.

    Args:
        name: tensor name.
        data_type: Triton data type without the prefix (``STRING``, ``INT32``, ``FP32`` ...).
        dims: shape without the batch dimension (``-1`` for variable).
        optional: the client may leave the input out.
        **extra: further fields, e.g. ``allow_ragged_batch=True`` or ``reshape={"shape": []}``.

    Returns:
        The tensor as a mapping for :func:`render`.
    """
    fields: dict[str, Any] = {"name": name, "data_type": Enum(f"TYPE_{data_type}"), "dims": list(dims)}
    if optional:
        fields["optional"] = True
    fields.update(extra)
    return fields


def _quote(text: str) -> str:
    """Quote a string for protobuf text format (UTF-8 passes through; control characters escaped)."""
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _scalar(value: Any) -> str:
    """Render one scalar value.

    Raises:
        TypeError: the value is not a str, bool, int, finite float or :class:`Enum`.
    """
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"non-finite float in model config: {value}")
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    raise TypeError(f"cannot render {type(value).__name__} in a model config: {value!r}")


def _block(fields: Mapping[str, Any], depth: int) -> list[str]:
    """Render the fields of one message, one field per line (nested messages indented)."""
    pad = _INDENT * depth
    lines: list[str] = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Parameters):
            for name, text in value.items():
                lines += [f"{pad}{key} {{", f"{pad}{_INDENT}key: {_quote(name)}"]
                lines += [f"{pad}{_INDENT}value {{ string_value: {_quote(str(text))} }}", f"{pad}}}"]
        elif isinstance(value, Map):
            for name, text in value.items():
                lines.append(f"{pad}{key} {{ key: {_quote(name)} value: {_quote(text)} }}")
        elif isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", *_block(value, depth + 1), f"{pad}}}"]
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
            if value and all(isinstance(item, Mapping) for item in value):
                lines.append(f"{pad}{key} [")
                for index, item in enumerate(value):
                    closing = "}," if index < len(value) - 1 else "}"
                    lines += [f"{pad}{_INDENT}{{", *_block(item, depth + 2), f"{pad}{_INDENT}{closing}"]
                lines.append(f"{pad}]")
            else:
                lines.append(f"{pad}{key}: [ {', '.join(_scalar(item) for item in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


def render(config: Mapping[str, Any], header: str = "") -> str:
    """Render a model configuration to protobuf text format.

    Args:
        config: field name -> value. Values are scalars (str, bool, int, float, :class:`Enum`),
            nested mappings (messages), lists of scalars, lists of mappings (repeated messages)
            or a :class:`Parameters` map. ``None`` values are left out.
        header: comment placed on top (each line prefixed with ``#``).

    Returns:
        The ``config.pbtxt`` text, ending with a newline.
    """
    comment = [f"# {line}".rstrip() for line in header.splitlines()]
    return "\n".join([*comment, *_block(config, 0)]) + "\n"


def validate_config(text: str) -> Any:
    """Parse a ``config.pbtxt`` with Triton's schema and check what the schema alone does not.

    Args:
        text: the configuration text.

    Returns:
        The parsed ``tritonclient.grpc.model_config_pb2.ModelConfig``.

    Raises:
        ConfigError: the text does not parse, names no backend/platform, or declares an input or
            output twice.
    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise ConfigError(f"invalid model config: {err}") from err
    if not (config.backend or config.platform):
        raise ConfigError(f"model config {config.name!r} names neither a backend nor a platform")
    if config.max_batch_size < 0:
        raise ConfigError(f"model config {config.name!r}: max_batch_size must be >= 0")
    for kind, tensors in (("input", config.input), ("output", config.output)):
        names = [tensor.name for tensor in tensors]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"model config {config.name!r} declares {kind} {', '.join(duplicates)} twice")
    return config
