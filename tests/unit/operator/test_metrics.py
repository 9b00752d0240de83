"""Prometheus metrics: jobs by phase from watch events, request counts."""

from __future__ import annotations

from kubetune import metrics


def test_phase_tracker_counts_every_phase() -> None:
    tracker = metrics.PhaseTracker()
    tracker.set("ns", "a", "Training")
    tracker.set("ns", "b", None)
    tracker.set("ns", "a", "Succeeded")
    counts = tracker.counts()
    assert counts["Succeeded"] == 1 and counts["Pending"] == 1 and counts["Training"] == 0
    assert set(counts) == {"Pending", "Preparing", "Training", "Evaluating", "Succeeded", "Failed", "Suspended"}
    tracker.forget("ns", "a")
    assert tracker.counts()["Succeeded"] == 0


def test_exposition_contains_the_operator_metrics() -> None:
    metrics.observe_request("POST", "jobs", 201)
    metrics.FINETUNEJOB_PHASES.set("ns", "unit-test-job", "Failed")
    payload, content_type = metrics.exposition()
    text = payload.decode()
    assert content_type.startswith("text/plain")
    assert 'kubetune_api_requests_total{code="201",method="POST",resource="jobs"}' in text
    assert 'kubetune_finetunejobs{phase="Failed"}' in text
    assert "kubetune_reconcile_duration_seconds" in text
    metrics.FINETUNEJOB_PHASES.forget("ns", "unit-test-job")
