"""Copying a model that is not on a volume: complete copies only, done once (fsspec's memory filesystem)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.cli import main as trainer_main
from kubetune_trainer.serve import fetch


@pytest.fixture
def bucket() -> Iterator[fsspec.AbstractFileSystem]:
    memory = fsspec.filesystem("memory")
    memory.pipe(
        {
            "/bucket/model/config.json": b'{"model_type": "llama"}',
            "/bucket/model/model.safetensors": b"weights",
            "/bucket/model/tokenizer/tokenizer.json": b"{}",
            "/bucket/other/config.json": b"{}",
        }
    )
    yield memory
    memory.rm("/bucket", recursive=True)


def test_a_model_directory_is_copied_with_its_tree_and_marked_complete(
    bucket: fsspec.AbstractFileSystem, tmp_path: Path
) -> None:
    target = fetch.fetch("memory://bucket/model", tmp_path / "engines" / "r1.model")
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == [fetch.COMPLETE_MARKER, "config.json", "model.safetensors", "tokenizer/tokenizer.json"]
    assert (target / "model.safetensors").read_bytes() == b"weights"
    assert fetch.is_complete(target, "memory://bucket/model")
    assert not fetch.is_complete(target, "memory://bucket/other")


def test_a_complete_copy_is_not_fetched_again(bucket: fsspec.AbstractFileSystem, tmp_path: Path) -> None:
    target = fetch.fetch("memory://bucket/model", tmp_path / "copy")
    bucket.pipe("/bucket/model/model.safetensors", b"new weights")
    fetch.fetch("memory://bucket/model", target)
    assert (target / "model.safetensors").read_bytes() == b"weights"


def test_an_incomplete_copy_is_replaced(bucket: fsspec.AbstractFileSystem, tmp_path: Path) -> None:
    target = tmp_path / "copy"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"half")  # a pod killed while copying, no marker
    fetch.fetch("memory://bucket/model", target)
    assert (target / "model.safetensors").read_bytes() == b"weights"


def test_an_empty_source_fails_and_leaves_nothing(bucket: fsspec.AbstractFileSystem, tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="holds no files"):
        fetch.fetch("memory://bucket/missing", tmp_path / "copy")
    assert list(tmp_path.iterdir()) == []


def test_the_command_line(bucket: fsspec.AbstractFileSystem, tmp_path: Path) -> None:
    code = trainer_main(["serve", "fetch", "--uri", "memory://bucket/model", "--output", str(tmp_path / "m")])
    assert code == 0
    assert (tmp_path / "m" / "config.json").is_file()


def test_an_unreachable_hub_model_is_a_clear_error(tmp_path: Path) -> None:
    # Offline with an empty cache: the Hub client's own "cannot find" path, no network needed.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, "-m", "kubetune_trainer", "serve", "fetch", "--uri", "hf://org/name@main"]
    result = subprocess.run(
        [*command, "--output", str(tmp_path / "copy")], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "cannot download hf://org/name@main" in result.stderr
    assert not (tmp_path / "copy").exists()
