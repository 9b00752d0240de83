"""Reading a JSONL dataset from a local file, a mounted claim (``pvc://``) or object storage.

Real datasets have bad lines: a truncated write, a record missing its response, a stray binary
blob. One bad line must not sink a job of a million good ones, and the user must be able to
find and fix it, so the reader collects malformed lines with their line numbers and a reason
(never their content, which may hold personal data) and keeps going. Only a dataset with no
usable record at all, an empty file or a missing file stops the step with a
:class:`~kubetune_trainer.cli.TrainerError`.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from kubetune.api import v1alpha1

from kubetune_trainer.cli import TrainerError
from kubetune_trainer.data import records

#: How many malformed lines are listed one by one; the rest are only counted.
MAX_LISTED_ERRORS = 20
_BLOCK = 8 << 20


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that could not be turned into a record."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(slots=True)
class ReadResult:
    """Records read from a dataset, with the lines that were not records.

    Attributes:
        records: the parsed records, in file order.
        errors: the first :data:`MAX_LISTED_ERRORS` malformed lines.
        malformed: how many lines were malformed in all.
        lines: non-blank lines read.
    """

    records: list[records.Record] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    malformed: int = 0
    lines: int = 0

    def add_error(self, line: int, reason: str) -> None:
        """Count a malformed line; keep it for the report if fewer than the limit are kept."""
        self.malformed += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(LineError(line, reason))

    def error_summary(self) -> list[str]:
        """The listed errors as lines of text, plus a count of those not listed."""
        out = [str(error) for error in self.errors]
        if self.malformed > len(self.errors):
            out.append(f"... and {self.malformed - len(self.errors)} more malformed lines")
        return out


def resolve_location(uri: str, pvc_root: str = v1alpha1.PVC_MOUNT_ROOT) -> str:
    """Turn a dataset or model location into something :func:`open` or fsspec can read.

    Args:
        uri: a local path, ``pvc://claim/path`` (read from where the claim is mounted) or any
            fsspec URL such as ``s3://bucket/key``.
        pvc_root: where claims are mounted (``/mnt/pvc`` in pods).

    Returns:
        A local path, or the URL unchanged for fsspec.
    """
    if uri.startswith("pvc://"):
        return v1alpha1.parse_uri(uri).local_path(pvc_root)
    if uri.startswith("file://"):
        return uri.removeprefix("file://")
    return uri


@contextmanager
def open_binary(location: str) -> Iterator[tuple[IO[bytes], int | None]]:
    """Open a resolved location for reading bytes (gzip and other compressions by file suffix).

    Args:
        location: a local path or an fsspec URL (see :func:`resolve_location`).

    Yields:
        The open file and its size in bytes when known (for the progress bar).

    Raises:
        TrainerError: if the file does not exist, is a directory, or its filesystem is unavailable.
    """
    import fsspec

    is_local = "://" not in location
    if is_local and not os.path.exists(location):
        raise TrainerError(f"dataset not found: {location}")
    if is_local and os.path.isdir(location):
        raise TrainerError(f"dataset is a directory, expected a JSONL file: {location}")
    try:
        opened = fsspec.open(location, "rb", compression="infer")
        size = os.path.getsize(location) if is_local else opened.fs.size(opened.path)
    except FileNotFoundError as err:
        raise TrainerError(f"dataset not found: {location}") from err
    except (ImportError, ValueError) as err:  # fsspec: protocol unknown or its package not installed
        raise TrainerError(f"cannot read {location}: {err}") from err
    with opened as handle:
        yield handle, size


def parse_lines(lines: Iterable[bytes | str], fmt: v1alpha1.DatasetFormat) -> ReadResult:
    """Parse JSONL lines into records, collecting malformed lines instead of failing.

    Args:
        lines: raw lines (bytes from a file, or text).
        fmt: the dataset format.

    Returns:
        Records and errors. Blank lines are skipped and not counted.
    """
    result = ReadResult()
    for number, raw in enumerate(lines, start=1):
        text = _decode(raw)
        if text is None:
            result.lines += 1
            result.add_error(number, "not UTF-8 text (binary data?)")
            continue
        if not text.strip():
            continue
        result.lines += 1
        if "\x00" in text:
            result.add_error(number, "contains NUL bytes (binary data?)")
            continue
        try:
            obj = json.loads(text)
        except ValueError as err:
            result.add_error(number, f"invalid JSON ({getattr(err, 'msg', 'parse error')} at column {_column(err)})")
            continue
        parsed = records.parse_record(obj, fmt, number)
        if isinstance(parsed, str):
            result.add_error(number, parsed)
        else:
            result.records.append(parsed)
    return result


def read_dataset(
    uri: str,
    fmt: v1alpha1.DatasetFormat,
    *,
    pvc_root: str = v1alpha1.PVC_MOUNT_ROOT,
    progress: bool = True,
) -> ReadResult:
    """Read a whole JSONL dataset.

    Args:
        uri: local path, ``pvc://`` URI or fsspec URL.
        fmt: the dataset format.
        pvc_root: where claims are mounted.
        progress: show a progress bar (bytes read) on stderr.

    Returns:
        The records and malformed lines.

    Raises:
        TrainerError: if the file is missing or empty, or if no line is a valid record.
    """
    location = resolve_location(uri, pvc_root)
    with open_binary(location) as (handle, size):
        result = parse_lines(_progress_lines(handle, size, progress), fmt)
    check_usable(result, location, fmt)
    return result


def check_usable(result: ReadResult, location: str, fmt: v1alpha1.DatasetFormat) -> None:
    """Fail when nothing usable was read, listing why.

    Raises:
        TrainerError: if the dataset has no non-blank line or no valid record.
    """
    if result.lines == 0:
        raise TrainerError(f"dataset is empty: {location}")
    if not result.records:
        listed = "; ".join(result.error_summary())
        raise TrainerError(f"no valid {fmt.value} record in {location} ({result.malformed} malformed lines: {listed})")


def _progress_lines(handle: IO[bytes], size: int | None, enabled: bool) -> Iterator[bytes]:
    """The lines of a binary file (without their newline), with a byte-count progress bar.

    The file is read in blocks of 8 MiB and split in C; iterating over the lists of lines with
    ``chain`` avoids a Python generator step per line.
    """
    return itertools.chain.from_iterable(_blocks_of_lines(handle, size, enabled))


def _blocks_of_lines(handle: IO[bytes], size: int | None, enabled: bool) -> Iterator[list[bytes]]:
    from tqdm import tqdm

    with tqdm(
        total=size, unit="B", unit_scale=True, desc="read", file=sys.stderr, disable=not enabled, mininterval=1.0
    ) as bar:
        tail = b""
        while block := handle.read(_BLOCK):
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            bar.update(len(block))
            yield lines
        if tail:
            yield [tail]


def _decode(raw: bytes | str) -> str | None:
    """Decode a line as UTF-8 (a leading BOM is dropped); ``None`` if it is not UTF-8."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig") if raw.startswith(b"\xef\xbb\xbf") else raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _column(err: ValueError) -> int:
    """The 1-based column of a JSON decode error."""
    return int(getattr(err, "colno", 0))
