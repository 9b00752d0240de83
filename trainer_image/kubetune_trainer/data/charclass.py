r"""Character classes of whole batches of text as numpy arrays.

The quality filter and the deduplicator both need to know, for millions of characters, which
are letters or digits, spaces, symbols or control characters. Asking Python one character at a
time (or running a regular expression per text) was the slowest part of the prepare step, so
texts are joined, turned into an array of code points, and classified with one table lookup.
The classes match Python's regular expressions: ``WORD`` and ``DIGIT`` together are ``\w``,
``SPACE`` is ``\s``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

SYMBOL, WORD, DIGIT, SPACE, CONTROL = 0, 1, 2, 3, 4
#: Characters that mark damaged or binary text (C0 controls except tab/newline/CR, DEL, U+FFFD).
CONTROL_CHARS = frozenset({*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xFFFD})


def char_class(code: int) -> int:
    """The class of one code point."""
    char = chr(code)
    if code in CONTROL_CHARS:
        return CONTROL
    if char.isspace():
        return SPACE
    if char.isdecimal():
        return DIGIT
    return WORD if char.isalnum() or char == "_" else SYMBOL


@functools.cache
def _bmp_table() -> np.ndarray:
    """The class of every code point of the Basic Multilingual Plane (built once, ~30 ms)."""
    return np.array([char_class(code) for code in range(0x10000)], dtype=np.uint8)


def classes(codepoints: np.ndarray) -> np.ndarray:
    """Classes of an array of code points (those beyond the BMP, such as emoji, one by one)."""
    table = _bmp_table()
    out = table[np.minimum(codepoints, 0xFFFF)]
    astral = codepoints > 0xFFFF
    if astral.any():
        values, inverse = np.unique(codepoints[astral], return_inverse=True)
        out[astral] = np.array([char_class(int(value)) for value in values], dtype=np.uint8)[inverse]
    return out


def codepoints(texts: Sequence[str], separator: str = "\x00") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join texts, each followed by ``separator``, into one code point array.

    Returns:
        ``(codepoints, starts, lengths)``: text ``i`` is ``codepoints[starts[i]:starts[i] + lengths[i]]``.
    """
    lengths = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
    joined = separator.join(texts) + separator if texts else ""
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    starts = np.concatenate(([0], np.cumsum(lengths + len(separator))[:-1])).astype(np.int64)
    return points, starts[: len(texts)], lengths
