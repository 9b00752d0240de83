from __future__ import annotations

import gzip
import json
from pathlib import Path

import fsspec
import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.data import reader

TRIPLE = v1alpha1.DatasetFormat.TRIPLE
GOOD = json.dumps({"context": "您好", "response": "您好，请问有什么可以帮您？", "intent": "greet"}, ensure_ascii=False)


def write(path: Path, lines: list[str | bytes]) -> Path:
    data = b"".join((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n" for line in lines)
    path.write_bytes(data)
    return path


def read(path: Path, fmt: v1alpha1.DatasetFormat = TRIPLE) -> reader.ReadResult:
    return reader.read_dataset(str(path), fmt, progress=False)


def test_good_lines_become_records_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    result = read(write(tmp_path / "d.jsonl", [GOOD, "", "   ", GOOD]))
    assert [record.line for record in result.records] == [1, 4]
    assert (result.lines, result.malformed, result.errors) == (2, 0, [])


def test_malformed_lines_are_reported_by_number(tmp_path: Path) -> None:
    lines: list[str | bytes] = [
        GOOD,
        '{"context": "a", "response": ',  # 2: truncated JSON
        '{"response": "b"}',  # 3: missing field
        '{"context": 1, "response": "b"}',  # 4: wrong type
        "[1, 2, 3]",  # 5: not an object
        b"\xff\xfe\x00garbage",  # 6: binary
        '{"context": "a\x00", "response": "b"}',  # 7: NUL byte
        GOOD,
    ]
    result = read(write(tmp_path / "d.jsonl", lines))
    assert [record.line for record in result.records] == [1, 8]
    assert result.malformed == 6
    summary = result.error_summary()
    assert summary[0].startswith("line 2: invalid JSON (")
    assert summary[1:] == [
        "line 3: missing field 'context'",
        "line 4: field 'context' must be a string, got number",
        "line 5: expected a JSON object, got array",
        "line 6: not UTF-8 text (binary data?)",
        "line 7: contains NUL bytes (binary data?)",
    ]


def test_only_the_first_errors_are_listed(tmp_path: Path) -> None:
    lines: list[str | bytes] = [GOOD] + ["{bad"] * 25
    result = read(write(tmp_path / "d.jsonl", lines))
    assert result.malformed == 25
    assert len(result.errors) == reader.MAX_LISTED_ERRORS
    assert result.error_summary()[-1] == "... and 5 more malformed lines"
    assert result.errors[0].line == 2


def test_nothing_usable_is_an_error_that_lists_the_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", ['{"response": "b"}', "not json"])
    with pytest.raises(
        TrainerError, match=r"no valid triple record in .*d\.jsonl \(2 malformed lines: line 1: missing"
    ):
        read(path)


def test_wrong_format_is_nothing_usable(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="no valid chat record"):
        read(write(tmp_path / "d.jsonl", [GOOD]), v1alpha1.DatasetFormat.CHAT)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(TrainerError, match=f"dataset is empty: {path}"):
        read(path)


def test_binary_file_is_an_error_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(
        TrainerError, match=r"no valid triple record .*line 1: contains NUL bytes.*line 2: not UTF-8 text"
    ):
        read(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match=f"dataset not found: {tmp_path / 'nope.jsonl'}"):
        read(tmp_path / "nope.jsonl")


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="dataset is a directory"):
        read(tmp_path)


def test_pvc_uri_is_read_from_the_mount_root(tmp_path: Path) -> None:
    (tmp_path / "claim" / "data").mkdir(parents=True)
    write(tmp_path / "claim" / "data" / "d.jsonl", [GOOD])
    result = reader.read_dataset("pvc://claim/data/d.jsonl", TRIPLE, pvc_root=str(tmp_path), progress=False)
    assert len(result.records) == 1
    with pytest.raises(TrainerError, match=f"dataset not found: {tmp_path}/claim/other.jsonl"):
        reader.read_dataset("pvc://claim/other.jsonl", TRIPLE, pvc_root=str(tmp_path), progress=False)


def test_fsspec_urls_are_read_through_fsspec() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/kubetune-test/d.jsonl", (GOOD + "\n" + GOOD + "\n").encode())
    try:
        assert len(reader.read_dataset("memory://kubetune-test/d.jsonl", TRIPLE, progress=False).records) == 2
        with pytest.raises(TrainerError, match=r"dataset not found: memory://kubetune-test/missing\.jsonl"):
            reader.read_dataset("memory://kubetune-test/missing.jsonl", TRIPLE, progress=False)
    finally:
        fs.rm("/kubetune-test", recursive=True)


def test_unknown_filesystem_is_a_clear_error() -> None:
    with pytest.raises(TrainerError, match=r"cannot read nosuchfs://bucket/d\.jsonl: .*nosuchfs"):
        reader.read_dataset("nosuchfs://bucket/d.jsonl", TRIPLE, progress=False)


def test_gzip_is_decompressed_by_suffix(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress((GOOD + "\n").encode()))
    assert len(read(path).records) == 1


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\n")
    assert len(read(path).records) == 1


def test_parse_lines_accepts_text() -> None:
    result = reader.parse_lines([GOOD, "{"], TRIPLE)
    assert len(result.records) == 1
    assert result.errors[0].line == 2


def test_resolve_location() -> None:
    assert reader.resolve_location("pvc://c/a/b.jsonl", "/mnt") == "/mnt/c/a/b.jsonl"
    assert reader.resolve_location("file:///tmp/x.jsonl") == "/tmp/x.jsonl"
    assert reader.resolve_location("s3://bucket/key.jsonl") == "s3://bucket/key.jsonl"
    assert reader.resolve_location("relative/x.jsonl") == "relative/x.jsonl"


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_lines_split_across_read_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(reader, "_BLOCK", block)
    path = tmp_path / "d.jsonl"
    path.write_bytes((GOOD + "\r\n\n" + "{oops\n" + GOOD).encode())  # CRLF, a blank line, no final newline
    result = read(path)
    assert [record.line for record in result.records] == [1, 4]
    assert [error.line for error in result.errors] == [3]
