"""The status patch: only the operator's fields, only what changed.

The status has two writers: the operator (phase, conditions, attempts, times, artifact URI) and
the trainer (progress, data report, metrics, checkpoint, artifact digest). A JSON merge patch of
just the operator's changed fields never overwrites what the trainer wrote in between, and an
empty patch means no API write at all, which keeps a resync of 1000 idle jobs cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune.api import v1alpha1

#: Status fields (camelCase) the operator writes; the rest belong to the trainer.
OPERATOR_FIELDS = ("phase", "conditions", "observedGeneration", "attempts", "startTime", "completionTime")


def status_patch(current: Mapping[str, Any] | None, desired: v1alpha1.FineTuneJobStatus) -> dict[str, Any]:
    """The merge patch turning ``current`` into ``desired`` for the operator's fields.

    Args:
        current: the ``status`` as read from the API server (may be None).
        desired: the status decided by :func:`kubetune.reconcile.finetunejob.decide`.

    Returns:
        ``{"status": {...}}`` with the changed fields, or ``{}`` when nothing changed.
    """
    current = current or {}
    wanted = desired.to_k8s()
    patch: dict[str, Any] = {}
    for key in OPERATOR_FIELDS:
        value = _empty_as_none(wanted.get(key))
        if value != _empty_as_none(current.get(key)):
            patch[key] = value  # None deletes the field
    wanted_uri = (wanted.get("artifact") or {}).get("uri")
    if wanted_uri != (current.get("artifact") or {}).get("uri"):
        patch["artifact"] = {"uri": wanted_uri}
    return {"status": patch} if patch else {}


def _empty_as_none(value: Any) -> Any:
    """An empty list or map is the same as an absent field."""
    return None if value in ([], {}) else value
