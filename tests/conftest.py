"""Fixtures shared by every test directory: the local cluster and test namespaces.

Why this module exists: cluster and end-to-end tests need a running control plane. The
session-scoped ``cluster`` fixture uses the one that ``hack/cluster.sh up`` (``make
cluster-up``) already runs, or starts one for the session and stops it at the end; the
``namespace`` fixture gives each test a fresh namespace and deletes it afterwards.
Tests get the ``unit``/``cluster``/``e2e`` marker from the directory they live in, so
``pytest -m unit`` runs without a cluster.

Fixtures of a single area belong in that area's own conftest.py (tests/unit, tests/e2e).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `tests.support` must import under any --import-mode
    sys.path.insert(0, str(_ROOT))

from tests.support.cluster import STATE_DIR, Cluster  # noqa: E402

_MARKER_BY_DIR = {"unit": "unit", "cluster": "cluster", "e2e": "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its top-level directory under tests/ (unit, cluster, e2e)."""
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        try:
            top = Path(item.path).resolve().relative_to(tests_dir).parts[0]
        except (ValueError, IndexError):
            continue
        marker = _MARKER_BY_DIR.get(top)
        if marker:
            item.add_marker(marker)


def _running_cluster() -> Cluster | None:
    """Return a handle on the cluster under .cluster/ when it answers /readyz."""
    try:
        cluster = Cluster.from_state(STATE_DIR)
    except (OSError, KeyError, ValueError, StopIteration):
        return None
    return cluster if cluster.is_ready() else None


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok).

    Reuses a running cluster; otherwise runs ``hack/cluster.sh up`` and, at the end of
    the session, ``hack/cluster.sh down`` (only then: a cluster someone else started
    keeps running). Fake nodes: ``gpu-a100-0``/``gpu-a100-1`` (8 ``nvidia.com/gpu``
    each) and ``cpu-0``; see hack/kwok/README.md for pod behaviour.
    """
    existing = _running_cluster()
    if existing is not None:
        yield existing
        return
    script = _ROOT / "hack" / "cluster.sh"
    up = subprocess.run([str(script), "up"], capture_output=True, text=True, timeout=3600, check=False)
    if up.returncode != 0:
        pytest.fail(f"hack/cluster.sh up failed ({up.returncode}):\n{up.stderr[-4000:]}", pytrace=False)
    try:
        started = Cluster.from_state(STATE_DIR)
        if not started.is_ready():
            pytest.fail("hack/cluster.sh up returned but /readyz does not answer", pytrace=False)
        yield started
    finally:
        subprocess.run([str(script), "down"], capture_output=True, timeout=120, check=False)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (without waiting) afterwards."""
    name = cluster.create_namespace(prefix=f"t-{request.node.name}"[:40])
    yield name
    cluster.delete_namespace(name)
