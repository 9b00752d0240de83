"""The trainer's identity: a token of the per-job ServiceAccount reaches its own job's status only."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.cluster import Cluster
from tests.support.wait import wait_for

if TYPE_CHECKING:
    from tests.cluster.conftest import FineTuneJobs, OperatorProcess

SLOW_PREPARE = {"prepare": {"kwok.x-k8s.io/duration": "10m"}}


def token_for(cluster: Cluster, namespace: str, service_account: str) -> str:
    """A short-lived token of a ServiceAccount (TokenRequest, as the kubelet mounts into pods)."""
    review = cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )
    return str(review["status"]["token"])


def call(cluster: Cluster, token: str, method: str, path: str, body: Any = None) -> int:
    """Send a request with ``token`` (merge patch for PATCH); return the HTTP status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(cluster.server + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if method == "PATCH":
        request.add_header("Content-Type", "application/merge-patch+json")
    try:
        with urllib.request.urlopen(request, timeout=10, context=ssl.create_default_context(cadata=cluster.ca_pem)):
            return 200
    except urllib.error.HTTPError as err:
        return err.code


def test_trainer_token_patches_its_own_status_only(
    cluster: Cluster, namespace: str, operator: OperatorProcess, ftjs: FineTuneJobs
) -> None:
    for name in ("mine", "theirs"):
        ftjs.create(name, pod_annotations=SLOW_PREPARE)
    for name in ("mine", "theirs"):
        wait_for(lambda name=name: ftjs.pods(name, "prepare"), timeout=30, description=f"{name}'s prepare pod")
    token = token_for(cluster, namespace, "mine-trainer")
    base = f"/apis/kubetune.dev/v1alpha1/namespaces/{namespace}/finetunejobs"
    progress = {"status": {"progress": {"step": 120, "totalSteps": 500, "loss": 1.234, "summary": "120/500 (24%)"}}}

    assert call(cluster, token, "PATCH", f"{base}/mine/status", progress) == 200
    assert ftjs.status("mine")["progress"]["step"] == 120
    assert call(cluster, token, "GET", f"{base}/mine") == 200
    assert call(cluster, token, "GET", f"{base}/mine/status") == 200

    assert call(cluster, token, "PATCH", f"{base}/theirs/status", progress) == 403
    assert call(cluster, token, "GET", f"{base}/theirs") == 403
    assert call(cluster, token, "PATCH", f"{base}/mine", {"spec": {"suspend": True}}) == 403
    assert call(cluster, token, "GET", base) == 403
    assert call(cluster, token, "DELETE", f"{base}/mine") == 403
    assert call(cluster, token, "GET", f"/api/v1/namespaces/{namespace}/secrets") == 403
    assert "progress" not in ftjs.status("theirs")


@pytest.mark.parametrize("component", ["prepare", "train"])
def test_pods_run_as_the_per_job_service_account(operator: OperatorProcess, ftjs: FineTuneJobs, component: str) -> None:
    ftjs.create("identity", pod_annotations={component: {"kwok.x-k8s.io/duration": "10m"}})
    (pod,) = wait_for(lambda: ftjs.pods("identity", component), timeout=30, description=f"the {component} pod")
    assert pod["spec"]["serviceAccountName"] == "identity-trainer"
    assert pod["spec"]["automountServiceAccountToken"] is True
