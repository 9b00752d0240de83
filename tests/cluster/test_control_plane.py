"""The local control plane behaves like the cluster kubetune targets.

Why this module exists: every cluster and e2e test relies on hack/cluster.sh giving a
real API server (right version, RBAC, admission, TokenRequest) and on kwok simulating
GPU nodes and pod lifecycles as documented in hack/kwok/README.md. These tests pin that
contract so a broken test bed fails here, with a clear message, and not in an operator
test.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from tests.support.cluster import ApiError, Cluster, KubectlError
from tests.support.wait import wait_for

GPU_PRODUCT = "NVIDIA-A100-SXM4-80GB"
GPU_NODES = {"gpu-a100-0", "gpu-a100-1"}
IMAGE = "registry.invalid/kubetune/noop:1"  # never pulled: kwok runs no containers


def _job(
    name: str, *, gpu: bool, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": IMAGE}
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if gpu:
        container["resources"] = {"limits": {"nvidia.com/gpu": 1}}
        pod_spec["nodeSelector"] = {"nvidia.com/gpu.product": GPU_PRODUCT}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels or {}, "annotations": annotations or {}},
                "spec": pod_spec,
            },
        },
    }


def _job_condition(cluster: Cluster, namespace: str, name: str) -> tuple[bool, Any]:
    """(finished, status) where finished means a true Complete or Failed condition."""
    status = cluster.get("job", name, namespace=namespace).get("status", {})
    done = any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in status.get("conditions", []))
    return done, status


def _true_conditions(obj: dict[str, Any]) -> set[str]:
    return {c["type"] for c in obj.get("status", {}).get("conditions", []) if c["status"] == "True"}


def _pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    return cluster.get("pods", namespace=namespace, label=selector)["items"]


def test_nodes_have_gpus(cluster: Cluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes")["items"]}
    assert GPU_NODES | {"cpu-0"} <= nodes.keys()
    for name in GPU_NODES:
        node = nodes[name]
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert node["status"]["capacity"]["nvidia.com/gpu"] == "8"
        labels = node["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"] == GPU_PRODUCT
        assert labels["nvidia.com/gpu.count"] == "8"
        assert labels["node.kubernetes.io/instance-type"] == "p4de.24xlarge"
        assert "Ready" in _true_conditions(node)
    assert "nvidia.com/gpu" not in nodes["cpu-0"]["status"]["allocatable"]
    assert "Ready" in _true_conditions(nodes["cpu-0"])


def test_server_version_is_stamped(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == "v1.34.4"
    assert version["clientVersion"]["gitVersion"] == "v1.34.4"
    assert cluster.request("GET", "/version")["minor"] == "34"


def test_gpu_job_completes_on_gpu_node(cluster: Cluster, namespace: str) -> None:
    cluster.apply(_job("train", gpu=True), namespace=namespace)
    status = wait_for(
        lambda: _job_condition(cluster, namespace, "train"),
        timeout=60,
        description="Job train to finish",
    )
    assert status.get("succeeded") == 1, status
    (pod,) = _pods(cluster, namespace, "job-name=train")
    assert pod["spec"]["nodeName"] in GPU_NODES
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0


def test_gpu_requests_beyond_capacity_stay_pending(cluster: Cluster, namespace: str) -> None:
    job = _job("too-big", gpu=True)
    job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 9
    cluster.apply(job, namespace=namespace)

    def unschedulable() -> tuple[bool, Any]:
        pods = _pods(cluster, namespace, "job-name=too-big")
        conds = [c for p in pods for c in p.get("status", {}).get("conditions", [])]
        ok = any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conds)
        return ok, conds

    wait_for(unschedulable, timeout=60, description="the 9-GPU pod to be Unschedulable")


@pytest.mark.parametrize(("exit_code", "expected"), [(None, 1), ("137", 137)])
def test_labelled_job_fails_with_exit_code(
    cluster: Cluster, namespace: str, exit_code: str | None, expected: int
) -> None:
    annotations = {"kwok.x-k8s.io/exit-code": exit_code} if exit_code else {}
    job = _job("chaos", gpu=True, labels={"kwok.x-k8s.io/fail": "true"}, annotations=annotations)
    cluster.apply(job, namespace=namespace)
    status = wait_for(
        lambda: _job_condition(cluster, namespace, "chaos"),
        timeout=60,
        description="Job chaos to finish",
    )
    assert "Failed" in {c["type"] for c in status["conditions"] if c["status"] == "True"}, status
    (pod,) = _pods(cluster, namespace, "job-name=chaos")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == expected
    assert terminated["reason"] == "Error"


def test_duration_annotation_delays_completion(cluster: Cluster, namespace: str) -> None:
    job = _job("slow", gpu=False, annotations={"kwok.x-k8s.io/duration": "4s"})
    cluster.apply(job, namespace=namespace)
    wait_for(
        lambda: _job_condition(cluster, namespace, "slow"),
        timeout=60,
        description="Job slow to finish",
    )
    (pod,) = _pods(cluster, namespace, "job-name=slow")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    started = datetime.fromisoformat(terminated["startedAt"])
    finished = datetime.fromisoformat(terminated["finishedAt"])
    # Timestamps have one-second resolution; kwok never completes early.
    assert (finished - started).total_seconds() >= 3, terminated


def test_deployment_becomes_available(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": IMAGE}]},
                },
            },
        },
        namespace=namespace,
    )

    def available() -> tuple[bool, Any]:
        status = cluster.get("deployment", "web", namespace=namespace).get("status", {})
        ok = "Available" in _true_conditions({"status": status}) and status.get("readyReplicas") == 2
        return ok, status

    wait_for(available, timeout=60, description="Deployment web to be Available with 2 ready")

    # Deleting a pod: kwok removes it (no kubelet) and the ReplicaSet replaces it.
    victim = _pods(cluster, namespace, "app=web")[0]["metadata"]["name"]
    cluster.delete("pod", victim, namespace=namespace)

    def replaced() -> tuple[bool, Any]:
        names = {p["metadata"]["name"]: p["status"].get("phase") for p in _pods(cluster, namespace, "app=web")}
        running = [n for n, phase in names.items() if phase == "Running"]
        return victim not in names and len(running) == 2, names

    wait_for(replaced, timeout=60, description=f"pod {victim} gone and replaced")


def test_token_request_authenticates(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "robot", "--namespace", namespace)
    token = cluster.kubectl("create", "token", "robot", "--namespace", namespace, "--duration=10m").strip()
    review = cluster.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        token=token,
    )
    user = review["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:robot"
    assert "system:serviceaccounts" in user["groups"]
    whoami = json.loads(cluster.kubectl("auth", "whoami", "-o", "json", f"--token={token}"))
    assert whoami["status"]["userInfo"]["username"] == user["username"]
    # RBAC is enforced: the new ServiceAccount may not list secrets.
    with pytest.raises(ApiError) as denied:
        cluster.request("GET", f"/api/v1/namespaces/{namespace}/secrets", token=token)
    assert denied.value.status == 403
    # And a made-up token is rejected.
    with pytest.raises(ApiError) as rejected:
        cluster.request("GET", "/api/v1/namespaces", token="not-a-token")
    assert rejected.value.status == 401


def test_pod_security_admission_enforces(cluster: Cluster) -> None:
    ns = cluster.create_namespace("t-psa", labels={"pod-security.kubernetes.io/enforce": "restricted"})
    try:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "privileged"},
            "spec": {"containers": [{"name": "c", "image": IMAGE, "securityContext": {"privileged": True}}]},
        }
        with pytest.raises(KubectlError) as err:
            cluster.apply(pod, namespace=ns)
        assert "violates PodSecurity" in err.value.stderr
    finally:
        cluster.delete_namespace(ns)
