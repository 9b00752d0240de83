"""The trainer's configuration: what the operator writes into the pod and the trainer reads.

The operator serializes the *validated* FineTuneJob spec together with the paths and attempt
number of one run, so the trainer never re-derives defaults: both sides read the same models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from pydantic import Field

from kubetune.api.v1alpha1.base import KubeModel
from kubetune.api.v1alpha1.finetunejob import FineTuneJobSpec

#: Where a pod mounts the PersistentVolumeClaim named in a pvc:// URI.
PVC_MOUNT_ROOT = "/mnt/pvc"


@dataclass(frozen=True)
class ParsedURI:
    """A storage URI split into its parts: ``scheme://authority/path@revision``."""

    scheme: str
    authority: str
    path: str
    revision: str | None = None

    def local_path(self, pvc_root: str = PVC_MOUNT_ROOT) -> str:
        """Filesystem path of a pvc:// URI once its claim is mounted under ``pvc_root``."""
        if self.scheme != "pvc":
            raise ValueError(f"only pvc:// URIs have a local path, not {self.scheme}://")
        return str(PurePosixPath(pvc_root, self.authority, self.path))


def parse_uri(uri: str) -> ParsedURI:
    """Split ``hf://org/name@rev``, ``pvc://claim/path`` or ``s3://bucket/key``.

    Args:
        uri: the URI as written in the spec (already pattern-checked at admission).

    Returns:
        Its parts; for hf:// the authority is ``org/name``.

    Raises:
        ValueError: if the scheme is not one of hf, pvc and s3.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("hf", "pvc", "s3"):
        raise ValueError(f"unsupported URI {uri!r}: expected hf://, pvc:// or s3://")
    if scheme == "hf":
        name, _, revision = rest.partition("@")
        return ParsedURI(scheme, name.strip("/"), "", revision or None)
    authority, _, path = rest.partition("/")
    return ParsedURI(scheme, authority, path.strip("/"))


class TrainerPaths(KubeModel):
    """Where one run reads and writes, as seen from inside the pod (or on a laptop)."""

    dataset: str = Field(description="Raw dataset: a local path or an s3:// / hf:// URI.")
    base_model: str = Field(description="Base model: a local directory or an hf:// / s3:// URI.")
    work_dir: str = Field(description="Output root: prepared data, checkpoints, model, reports.")

    @property
    def prepared_dir(self) -> str:
        """Cleaned and tokenized dataset."""
        return str(PurePosixPath(self.work_dir, "data"))

    @property
    def checkpoints_dir(self) -> str:
        """Training checkpoints (checkpoint-<step>/)."""
        return str(PurePosixPath(self.work_dir, "checkpoints"))

    @property
    def model_dir(self) -> str:
        """Exported adapter and merged model."""
        return str(PurePosixPath(self.work_dir, "model"))

    @property
    def reports_dir(self) -> str:
        """report.json, metrics.json, artifact manifest."""
        return str(PurePosixPath(self.work_dir, "reports"))


class StatusTarget(KubeModel):
    """The FineTuneJob whose status the trainer patches with progress (in a pod only)."""

    name: str = Field(description="FineTuneJob name.")
    namespace: str = Field(description="FineTuneJob namespace.")


class TrainerConfig(KubeModel):
    """One run of the trainer: the validated spec plus where and which attempt."""

    spec: FineTuneJobSpec = Field(description="The FineTuneJob spec as admitted (defaults filled in).")
    paths: TrainerPaths = Field(description="Resolved input and output locations.")
    attempt: int = Field(default=1, ge=1, description="1 for the first train attempt, 2 for the first retry...")
    resume_from: str | None = Field(default=None, description="Checkpoint directory to resume from.")
    status_target: StatusTarget | None = Field(
        default=None, description="Report progress into this FineTuneJob's status."
    )
    max_steps: int | None = Field(default=None, ge=1, description="Cap on steps (local smoke runs).")
