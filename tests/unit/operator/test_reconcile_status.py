"""The status merge patch touches only the operator's changed fields."""

from __future__ import annotations

from datetime import UTC, datetime

from kubetune.api import v1alpha1
from kubetune.reconcile import status

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_only_changed_operator_fields() -> None:
    current = {
        "phase": "Training",
        "attempts": 1,
        "progress": {"step": 10},
        "metrics": {"perplexity": 3.0},
        "artifact": {"digest": "sha256:x"},
    }
    desired = v1alpha1.FineTuneJobStatus(
        phase=v1alpha1.Phase.EVALUATING,
        attempts=1,
        progress=v1alpha1.Progress(step=5),  # stale copy: must not be written back
        artifact=v1alpha1.Artifact(uri="pvc://a/model", digest="sha256:x"),
        start_time=NOW,
    )
    assert status.status_patch(current, desired) == {
        "status": {"phase": "Evaluating", "startTime": "2026-01-01T00:00:00Z", "artifact": {"uri": "pvc://a/model"}}
    }


def test_nothing_changed_means_no_patch() -> None:
    desired = v1alpha1.FineTuneJobStatus(phase=v1alpha1.Phase.TRAINING, attempts=2)
    assert status.status_patch(desired.to_k8s(), desired) == {}


def test_cleared_field_is_deleted() -> None:
    assert status.status_patch({"completionTime": "x"}, v1alpha1.FineTuneJobStatus()) == {
        "status": {"completionTime": None}
    }
    assert status.status_patch(None, v1alpha1.FineTuneJobStatus(attempts=1)) == {"status": {"attempts": 1}}
