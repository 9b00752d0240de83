"""manifest: per-file checksums, the digest, and verification of an artifact."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.export import manifest

from tests.support import specs


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    (tmp_path / "merged").mkdir()
    (tmp_path / "merged" / "model.safetensors").write_bytes(b"\x00" * 100)
    (tmp_path / "merged" / "config.json").write_text("{}")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"lora")
    return tmp_path


def build(root: Path) -> dict[str, object]:
    return manifest.build_manifest(
        root,
        spec=v1alpha1.FineTuneJobSpec.model_validate(specs.job()),
        training={"recipe": "lora_single_device", "step": 40, "totalSteps": 40, "loss": 1.5, "precision": "bf16"},
        layout={"adapter": "adapter", "merged": "merged", "serve": "merged"},
        dtype="bf16",
        metrics=v1alpha1.Metrics(perplexity=3.2, bleu=20.5),
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_manifest_lists_every_file_with_size_and_sha256(artifact: Path) -> None:
    body = build(artifact)
    assert body["files"] == [
        {"path": "adapter/adapter_model.safetensors", "size": 4, "sha256": hashlib.sha256(b"lora").hexdigest()},
        {"path": "merged/config.json", "size": 2, "sha256": hashlib.sha256(b"{}").hexdigest()},
        {"path": "merged/model.safetensors", "size": 100, "sha256": hashlib.sha256(b"\x00" * 100).hexdigest()},
    ]
    assert body["created"] == "2026-01-02T03:04:05Z"
    assert body["baseModel"] == {"uri": "hf://deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"}
    assert body["metrics"] == {"perplexity": 3.2, "bleu": 20.5}
    assert body["layout"]["serve"] == "merged"  # type: ignore[index]


def test_digest_is_the_sha256_of_the_manifest_file(artifact: Path) -> None:
    digest = manifest.write_manifest(artifact, build(artifact))
    data = (artifact / manifest.MANIFEST_FILE).read_bytes()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest() == manifest.manifest_digest(artifact)
    assert json.loads(data)["kind"] == "ModelArtifact"


def test_the_digest_changes_with_any_file(artifact: Path) -> None:
    before = manifest.write_manifest(artifact, build(artifact))
    (artifact / "merged" / "config.json").write_text('{"a": 1}')
    assert manifest.write_manifest(artifact, build(artifact)) != before


def test_verify_finds_missing_extra_and_changed_files(artifact: Path) -> None:
    manifest.write_manifest(artifact, build(artifact))
    assert manifest.verify(artifact) == []
    (artifact / "adapter" / "adapter_model.safetensors").unlink()
    (artifact / "merged" / "config.json").write_text("[]")
    (artifact / "notes.txt").write_text("hi")
    assert manifest.verify(artifact) == [
        "missing: adapter/adapter_model.safetensors",
        "not in the manifest: notes.txt",
        "changed: merged/config.json",
    ]
