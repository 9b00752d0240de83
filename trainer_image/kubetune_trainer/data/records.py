"""One record type for the three dataset formats, so cleaning is written once.

A FineTuneJob names its data format (``triple``, ``chat`` or ``alpaca``); the cleaning steps
should not care. Each JSONL object is parsed into a :class:`Record`: a list of text
:class:`Segment` objects, each remembering its role and where it came from in the original
object, so that a redacted record can be written back in the format it was read in
(``cleaned.jsonl``) and also rendered as chat turns for tokenization and evaluation.

How the formats map onto turns:

* ``triple`` - ``{"context", "response", "followup"}`` plus optional ``intent``. ``context`` is
  the customer's message (user turn), ``response`` the agent's answer (assistant turn, the one
  that is trained on), and ``followup`` the customer's next message (a trailing user turn).
  ``followup`` is optional (missing, ``null`` or ``""``). It is cleaned (PII redaction, quality and
  dedup see it) and written back, but not tokenized: in a causal LM tokens after the last trained
  response cannot change the loss on it, so they would only cost sequence length.
* ``chat`` - ``{"messages": [{"role", "content"}, ...]}`` with roles ``system``, ``user`` and
  ``assistant``; at least one assistant message. Every assistant message is trained on.
* ``alpaca`` - ``instruction`` and optional ``input`` form one user turn (joined by a blank
  line), ``output`` is the assistant turn.

Parsing never raises on bad data: :func:`parse_record` returns an error message instead, so the
reader can report malformed lines by number and go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from kubetune.api import v1alpha1

SYSTEM = "system"
USER = "user"
ASSISTANT = "assistant"
CHAT_ROLES = (SYSTEM, USER, ASSISTANT)
#: Fields of the triple and alpaca formats that may be absent or empty.
OPTIONAL_FIELDS = ("followup", "input")


@dataclass(slots=True)
class Segment:
    """One text field of a record.

    Attributes:
        key: where the text lives in the original object: a field name (triple, alpaca) or the
            index in ``messages`` (chat).
        role: ``system``, ``user`` or ``assistant``.
        text: the (possibly redacted) text.
    """

    key: str | int
    role: str
    text: str


@dataclass(slots=True)
class Record:
    """A parsed dataset record.

    Attributes:
        line: 1-based line number in the input file (0 for records not read from a file).
        format: the format it was read in, used to write it back.
        segments: the text fields in dialogue order.
        source: the original JSON object (other fields such as ``intent`` are kept as they are).
    """

    line: int
    format: v1alpha1.DatasetFormat
    segments: list[Segment]
    source: dict[str, Any] = field(repr=False)

    def label(self, name: str) -> str | None:
        """The value of a top-level field used for stratification (e.g. ``intent``), as text."""
        value = self.source.get(name)
        return None if value is None else str(value)

    def turns(self) -> list[tuple[str, str]]:
        """Chat turns ``(role, text)``: empty optional fields dropped, alpaca's input joined to its instruction."""
        turns: list[tuple[str, str]] = []
        for segment in self.segments:
            if segment.key in OPTIONAL_FIELDS and not segment.text:
                continue
            if segment.key == "input":  # alpaca: the input belongs to the instruction's turn
                turns[-1] = (USER, f"{turns[-1][1]}\n\n{segment.text}")
            else:
                turns.append((segment.role, segment.text))
        return turns

    def texts(self, role: str) -> list[str]:
        """The texts of all segments with this role."""
        return [segment.text for segment in self.segments if segment.role == role]

    def to_source(self) -> dict[str, Any]:
        """The original object with the cleaned texts written back (same format as the input)."""
        out = dict(self.source)
        if self.format == v1alpha1.DatasetFormat.CHAT:
            messages = [dict(message) for message in out["messages"]]
            for segment in self.segments:
                messages[int(segment.key)]["content"] = segment.text
            out["messages"] = messages
        else:
            for segment in self.segments:
                out[str(segment.key)] = segment.text
        return out

    def to_chat(self, label_field: str = "intent") -> dict[str, Any]:
        """The record as ``{"messages": [...], "<label_field>": ...}``, the layout of the split files."""
        out: dict[str, Any] = {"messages": [{"role": role, "content": text} for role, text in self.turns()]}
        label = self.label(label_field)
        if label is not None:
            out[label_field] = label
        return out

    def source_json(self) -> str:
        """``json.dumps(self.to_source(), ensure_ascii=False)``, built faster (one JSON line)."""
        if self.format == v1alpha1.DatasetFormat.CHAT:
            return _dumps(self.to_source())
        texts = {str(segment.key): segment.text for segment in self.segments}
        parts = [
            f"{_quote(key)}: {_quote(texts[key]) if key in texts else _dumps(value)}"
            for key, value in self.source.items()
        ]
        return "{" + ", ".join(parts) + "}"

    def chat_json(self, label_field: str = "intent") -> str:
        """``json.dumps(self.to_chat(label_field), ensure_ascii=False)``, built faster (one JSON line)."""
        messages = ", ".join(f'{{"role": "{role}", "content": {_quote(text)}}}' for role, text in self.turns())
        label = self.label(label_field)
        tail = "" if label is None else f", {_quote(label_field)}: {_quote(label)}"
        return f'{{"messages": [{messages}]{tail}}}'


# JSON writing with the standard library's C string escaper: the prepare step writes every record
# twice, and building a dict per record for json.dumps was a fifth of its run time.
_quote = json.encoder.encode_basestring
_dumps = json.JSONEncoder(ensure_ascii=False).encode


_TRIPLE = v1alpha1.DatasetFormat.TRIPLE

#: Parsing result: a record, or the reason the object is not one.
ParseResult = Record | str


def parse_record(obj: object, fmt: v1alpha1.DatasetFormat, line: int = 0) -> ParseResult:
    """Turn one decoded JSON value into a record of the given format.

    Args:
        obj: the decoded JSON value of one line.
        fmt: the dataset format.
        line: the line number, kept on the record for messages.

    Returns:
        The record, or a one-line reason why ``obj`` is not a valid record (the reason names the
        field but never quotes its content, which may hold personal data).
    """
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {_json_type(obj)}"
    return _PARSERS[fmt](obj, line)


def _parse_triple(obj: dict[str, Any], line: int) -> ParseResult:
    context, response, followup, intent = (
        obj.get("context"),
        obj.get("response"),
        obj.get("followup"),
        obj.get("intent"),
    )
    valid = type(context) is str and type(response) is str  # the common case, checked first: millions of lines
    if not (valid and (followup is None or type(followup) is str) and (intent is None or type(intent) is str)):
        problem = _check_text_fields(obj, required=("context", "response"), optional=("followup", "intent"))
        if problem:
            return problem
    segments = [Segment("context", USER, cast(str, context)), Segment("response", ASSISTANT, cast(str, response))]
    if followup is not None:
        segments.append(Segment("followup", USER, followup))
    return Record(line, _TRIPLE, segments, obj)


def _parse_alpaca(obj: dict[str, Any], line: int) -> ParseResult:
    problem = _check_text_fields(obj, required=("instruction", "output"), optional=("input", "intent"))
    if problem:
        return problem
    segments = [Segment("instruction", USER, obj["instruction"])]
    if obj.get("input") is not None:
        segments.append(Segment("input", USER, obj["input"]))
    segments.append(Segment("output", ASSISTANT, obj["output"]))
    return Record(line, v1alpha1.DatasetFormat.ALPACA, segments, obj)


def _parse_chat(obj: dict[str, Any], line: int) -> ParseResult:
    problem = _check_text_fields(obj, required=(), optional=("intent",))
    if problem:
        return problem
    messages = obj.get("messages")
    if messages is None:
        return "missing field 'messages'"
    if not isinstance(messages, list) or not messages:
        return f"field 'messages' must be a non-empty list, got {_json_type(messages)}"
    segments = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{index}] must be an object, got {_json_type(message)}"
        role, content = message.get("role"), message.get("content")
        if role not in CHAT_ROLES:
            return f"messages[{index}].role must be one of {', '.join(CHAT_ROLES)}"
        if not isinstance(content, str):
            return f"messages[{index}].content must be a string, got {_json_type(content)}"
        segments.append(Segment(index, role, content))
    if not any(segment.role == ASSISTANT for segment in segments):
        return "field 'messages' has no assistant message to train on"
    return Record(line, v1alpha1.DatasetFormat.CHAT, segments, obj)


def _check_text_fields(obj: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...]) -> str | None:
    """Return a reason if a required field is missing or a text field is not a string."""
    for name in required:
        if name not in obj or obj[name] is None:
            return f"missing field '{name}'"
    for name in (*required, *optional):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            return f"field '{name}' must be a string, got {_json_type(value)}"
    return None


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


_PARSERS: dict[v1alpha1.DatasetFormat, Callable[[dict[str, Any], int], ParseResult]] = {
    v1alpha1.DatasetFormat.TRIPLE: _parse_triple,
    v1alpha1.DatasetFormat.CHAT: _parse_chat,
    v1alpha1.DatasetFormat.ALPACA: _parse_alpaca,
}
