"""The artifact manifest: what was exported, from what, and a checksum for every file.

A ModelDeployment pins the artifact by the sha256 of this manifest (``status.artifact.digest``),
so the manifest must change whenever any file changes: it carries every file's size and sha256.
It also records where the artifact came from (base model, method, training steps) and how good
it was (the evaluation metrics), so an artifact found on a volume explains itself.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer.fsutil import sha256_file

MANIFEST_FILE = "manifest.json"
KIND = "ModelArtifact"


def file_entries(root: str | Path) -> list[dict[str, Any]]:
    """Every regular file under ``root`` (the manifest excluded), sorted by path.

    Returns:
        ``[{"path": "merged/model.safetensors", "size": 123, "sha256": "..."}, ...]`` with POSIX paths.
    """
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    return [{"path": p.relative_to(root).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p)} for p in files]


def build_manifest(
    root: str | Path,
    *,
    spec: v1alpha1.FineTuneJobSpec,
    training: dict[str, Any],
    layout: dict[str, str | None],
    dtype: str | None,
    metrics: v1alpha1.Metrics | None,
    created: datetime | None = None,
) -> dict[str, Any]:
    """Describe the artifact in ``root``.

    Args:
        root: the artifact directory, complete but for the manifest.
        spec: the job spec (base model, method).
        training: the train step's summary (recipe, step, loss).
        layout: sub-directories: ``adapter``, ``merged`` (``None`` when absent) and ``serve``,
            the one a server should load.
        dtype: dtype of the merged weights (``None`` without merged weights).
        metrics: the evaluation metrics, if evaluation ran.
        created: creation time (default: now, UTC).

    Returns:
        The manifest as a JSON-serialisable dict with camelCase keys.
    """
    return {
        "apiVersion": v1alpha1.API_VERSION,
        "kind": KIND,
        "created": (created or datetime.now(UTC)).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "baseModel": spec.base_model.to_k8s(),
        "method": spec.method.value,
        "training": {key: training.get(key) for key in ("recipe", "step", "totalSteps", "loss", "precision")},
        "layout": layout,
        "dtype": dtype,
        "metrics": metrics.to_k8s() if metrics else None,
        "files": file_entries(root),
    }


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> str:
    """Write ``manifest.json`` into ``root``.

    Returns:
        Its digest, ``sha256:<hex>`` of the exact bytes written.
    """
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    (Path(root) / MANIFEST_FILE).write_bytes(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_digest(root: str | Path) -> str:
    """``sha256:<hex>`` of an artifact's ``manifest.json``."""
    return "sha256:" + sha256_file(Path(root) / MANIFEST_FILE)


def verify(root: str | Path) -> list[str]:
    """Check an artifact against its manifest.

    Returns:
        One message per missing, extra or altered file; empty when the artifact is intact.
    """
    manifest = json.loads((Path(root) / MANIFEST_FILE).read_text(encoding="utf-8"))
    expected = {entry["path"]: entry for entry in manifest["files"]}
    actual = {entry["path"]: entry for entry in file_entries(root)}
    problems = [f"missing: {path}" for path in sorted(expected.keys() - actual.keys())]
    problems += [f"not in the manifest: {path}" for path in sorted(actual.keys() - expected.keys())]
    problems += [
        f"changed: {path}"
        for path in sorted(expected.keys() & actual.keys())
        if expected[path]["sha256"] != actual[path]["sha256"] or expected[path]["size"] != actual[path]["size"]
    ]
    return problems
