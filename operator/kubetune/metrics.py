"""Prometheus metrics of the operator: jobs by phase, reconcile durations, API requests.

What a platform team alerts on: how many FineTuneJobs are in each phase (a growing Failed count,
jobs stuck in Pending), how long reconciles take, how many writes the operator sends to the API
server, and whether this replica is the leader. Served on ``/metrics`` by the operator's HTTP
server (see :mod:`kubetune.handlers.app`).
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubetune.api import v1alpha1

RECONCILE_DURATION = Histogram(
    "kubetune_reconcile_duration_seconds",
    "Time to reconcile one object (read, decide, apply, write status).",
    ["kind", "result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
API_REQUESTS = Counter(
    "kubetune_api_requests",
    "Requests the operator's client sent to the API server (kopf's watches excluded).",
    ["method", "resource", "code"],
)
WORKQUEUE_DEPTH = Gauge("kubetune_workqueue_depth", "Objects waiting to be reconciled.", ["kind"])
LEADER = Gauge("kubetune_leader", "1 while this replica holds the leader Lease (or runs standalone).")


class PhaseTracker(Collector):
    """The last seen phase of every FineTuneJob, exported as ``kubetune_finetunejobs{phase}``.

    Fed from the watch events, so the gauge is right after a restart without any bookkeeping
    of increments and decrements.
    """

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()  # the HTTP server may scrape from another thread

    def set(self, namespace: str, name: str, phase: str | None) -> None:
        """Record the phase of a job (None or missing status counts as Pending)."""
        with self._lock:
            self._phases[(namespace, name)] = phase or v1alpha1.Phase.PENDING.value

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted job."""
        with self._lock:
            self._phases.pop((namespace, name), None)

    def counts(self) -> dict[str, int]:
        """Jobs per phase, every phase present."""
        with self._lock:
            tally = Tally(self._phases.values())
        return {phase.value: tally.get(phase.value, 0) for phase in v1alpha1.Phase}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Prometheus collector protocol."""
        family = GaugeMetricFamily("kubetune_finetunejobs", "FineTuneJobs by phase.", labels=["phase"])
        for phase, count in self.counts().items():
            family.add_metric([phase], count)
        yield family


FINETUNEJOB_PHASES = PhaseTracker()
REGISTRY.register(FINETUNEJOB_PHASES)


def observe_request(method: str, resource: str, code: int) -> None:
    """Count one API request (the kube client's observer hook)."""
    API_REQUESTS.labels(method, resource, str(code)).inc()


def exposition() -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
