"""The operator, authenticated as the chart's ServiceAccount, does its whole job: RBAC is sufficient.

The chart is installed into the local control plane (its operator pod is a kwok fake that runs
nothing), then ``kubetune operator`` runs here as a process with a bound token of the release's
ServiceAccount and the Deployment's own environment. FineTuneJobs then go through their life
(success with a deploy template and TTL, a failing train step, suspend): every API call the
operator makes must be allowed by the chart's rules, and the log must hold no Forbidden answer.

The other half of least privilege (verbs the operator does not use are refused) is in
test_helm.py; the operator's requests counted by ``kubetune_api_requests`` are compared with
the chart's rules below.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.helm import Helm, Release, find_helm
from tests.support.wait import wait_for

#: The console script the operator image runs (ENTRYPOINT ["kubetune", "operator"]).
KUBETUNE = Path(sys.executable).parent / "kubetune"


class LocalOperator:
    """``kubetune operator`` run here with the chart's environment and a ServiceAccount kubeconfig.

    Args:
        env: the operator's environment (the Deployment's, plus KUBECONFIG).
        args: command-line flags after ``kubetune operator``.
        log_path: where stdout and stderr go.
    """

    def __init__(self, env: dict[str, str], args: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        command = [str(KUBETUNE), "operator", *args, f"--metrics-port={self.port}"]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
            )
        wait_for(self._ready, timeout=60, interval=0.2, description="the operator's /readyz")

    def _ready(self) -> tuple[bool, str]:
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited with {self.process.returncode}:\n{self.logs()[-4000:]}")
        try:
            return self.http("/readyz") == "ok", "not ready"
        except OSError as err:
            return False, str(err)

    def http(self, path: str) -> str:
        """GET a path of the operator's HTTP server."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return response.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include ``labels``."""
        total = 0.0
        for line in self.http("/metrics").splitlines():
            series, _, value = line.rpartition(" ")
            sample, _, label_text = series.partition("{")
            if sample == name and all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total

    def logs(self) -> str:
        """What the operator printed."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def helm(cluster: Cluster) -> Helm:
    return Helm(binary=find_helm(), kubeconfig=cluster.kubeconfig, kube_version=cluster.version or "v1.34.4")


@pytest.fixture(params=["cluster-wide", "namespaced"])
def installed(
    request: pytest.FixtureRequest, cluster: Cluster, helm: Helm, kubetune_crds: None, namespace: str, tmp_path: Path
) -> Iterator[tuple[Release, str]]:
    """A release of the chart (CRDs installed separately) and the namespace its operator works in."""
    work = namespace
    release = Release(cluster, helm, tmp_path)
    try:
        values: dict[str, Any] = {"crds": {"install": False}}
        if request.param == "namespaced":
            values["watchNamespaces"] = [work]
        release.install(values)
        if request.param == "cluster-wide":
            grant_namespace_reads(cluster, release)
        yield release, work
    finally:
        release.cleanup()
        cluster.delete("clusterrolebinding", f"{release.fullname}-test-namespace-reader")


def grant_namespace_reads(cluster: Cluster, release: Release) -> None:
    """Test harness only: let the ServiceAccount list namespaces.

    The test narrows the cluster-wide operator to its own namespace (``--namespace``) so that it
    leaves other tests' resources alone; narrowed, kopf lists namespaces, which the real
    cluster-wide operator never does (and the chart does not grant). The built-in ``view``-like
    rule is bound here, to the one ServiceAccount, for the duration of the test.
    """
    cluster.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "kubetune-test-namespace-reader"},
                "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{release.fullname}-test-namespace-reader"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "kubetune-test-namespace-reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": release.fullname, "namespace": release.namespace}],
            },
        ]
    )


def finetunejob(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "baseModel": {"uri": "hf://org/tiny-model"},
            "dataset": {"uri": "s3://kubetune-test/dialogues.jsonl"},
            "output": {"uri": f"s3://kubetune-test/{name}"},
            "resources": {"gpusPerNode": 1, "cpu": "1", "memory": "1Gi", "sharedMemory": "64Mi"},
            **spec,
        },
    }


def phase(cluster: Cluster, namespace: str, name: str) -> tuple[bool, Any]:
    job = cluster.get("finetunejobs", name, namespace=namespace)
    return False, job.get("status", {})


def wait_phase(cluster: Cluster, namespace: str, name: str, wanted: str, timeout: float = 120) -> dict[str, Any]:
    def reached() -> tuple[bool, Any]:
        status = cluster.get("finetunejobs", name, namespace=namespace).get("status", {})
        return status.get("phase") == wanted, status

    return wait_for(reached, timeout=timeout, interval=0.25, description=f"FineTuneJob {name} to be {wanted}")


def forbidden_lines(log: str) -> list[str]:
    """Log lines that report a refused request (403 / Forbidden)."""
    return [line for line in log.splitlines() if re.search(r"\b403\b|Forbidden|forbidden", line)]


def test_operator_with_the_chart_service_account_does_its_whole_job(
    cluster: Cluster, installed: tuple[Release, str], volumes: Callable[..., None], tmp_path: Path
) -> None:
    release, work = installed
    volumes("models")
    kubeconfig = release.service_account_kubeconfig(tmp_path / "operator.kubeconfig")
    env = {**release.deployment_env(), "KUBECONFIG": str(kubeconfig)}
    # The chart's settings, with the scope narrowed to the test namespace (a cluster-wide operator
    # here would also act on other tests' resources); the ClusterRole is still what authorizes it.
    operator = LocalOperator(env, [f"--namespace={work}"], tmp_path / "operator.log")
    try:
        run_scenarios(cluster, release, work, operator)
        assert forbidden_lines(operator.logs()) == []
        assert operator.metric("kubetune_api_requests_total", code="403") == 0
        assert_rules_are_used(release, requests(operator))
    finally:
        operator.stop()
        print(f"--- operator log (last lines) ---\n{operator.logs()[-6000:]}")


def run_scenarios(cluster: Cluster, release: Release, work: str, operator: LocalOperator) -> None:
    """Success with deploy and TTL, a failing train step, suspend; then no request was refused."""
    assert operator.http("/healthz") == "ok"
    wait_for(lambda: operator.metric("kubetune_leader") == 1, timeout=30, description="the operator to lead")
    lease = cluster.get("lease", release.lease, namespace=release.namespace)
    assert lease["spec"]["holderIdentity"].startswith(f"{release.fullname}-local")

    # 1. Success, with a ModelDeployment to create and a TTL that deletes the finished job.
    cluster.apply(
        finetunejob("ok", deploy={"backend": "python", "resources": {"gpus": 0}}, ttlSecondsAfterFinished=3),
        namespace=work,
    )
    done = wait_phase(cluster, work, "ok", "Succeeded")
    assert done["artifact"]["uri"] == "s3://kubetune-test/ok/model"
    deployment = cluster.get("modeldeployments", "ok", namespace=work)
    assert deployment["spec"]["model"] == {"fineTuneJobRef": {"name": "ok"}}
    assert deployment["metadata"]["ownerReferences"][0]["name"] == "ok"
    trainer_role = cluster.get("role", "ok-trainer", namespace=work)
    assert trainer_role["rules"][0]["resourceNames"] == ["ok"]
    wait_for(
        lambda: "ok" not in [j["metadata"]["name"] for j in cluster.get("finetunejobs", namespace=work)["items"]],
        timeout=60,
        description="the finished FineTuneJob to be deleted after its TTL",
    )

    # 2. A train step that fails: the operator reads the pods to say why.
    failing = {"kubetune.dev/train-pod-labels": json.dumps({"kwok.x-k8s.io/fail": "true"})}
    failing["kubetune.dev/train-pod-annotations"] = json.dumps({"kwok.x-k8s.io/exit-code": "137"})
    cluster.apply(finetunejob("fails", failing, retries={"maxRetries": 0}), namespace=work)
    failed = wait_phase(cluster, work, "fails", "Failed")
    assert "137" in json.dumps(failed["conditions"])

    # 3. Suspending a running train step deletes its Job.
    slow = {"kubetune.dev/train-pod-annotations": json.dumps({"kwok.x-k8s.io/duration": "600s"})}
    cluster.apply(finetunejob("pauses", slow), namespace=work)
    wait_phase(cluster, work, "pauses", "Training")
    cluster.kubectl("patch", "ftj", "pauses", "-n", work, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_phase(cluster, work, "pauses", "Suspended")

    # 4. A ModelDeployment that builds, serves with an autoscaler, then drops the autoscaler.
    fast = json.dumps({"kwok.x-k8s.io/duration": "150ms"})
    serving = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "chat",
            "annotations": {f"kubetune.dev/{c}-pod-annotations": fast for c in ("build", "smoke")},
        },
        "spec": {"model": {"uri": "pvc://models/chat/v1"}, "autoscaling": {"minReplicas": 1, "maxReplicas": 2}},
    }
    cluster.apply(serving, namespace=work)
    wait_deployment(cluster, work, "chat", "Ready")
    assert cluster.get("hpa", "chat", namespace=work)["spec"]["maxReplicas"] == 2
    cluster.kubectl(
        "patch", "mdep", "chat", "-n", work, "--type=json", "-p", '[{"op":"remove","path":"/spec/autoscaling"}]'
    )
    wait_for(
        lambda: "chat" not in [h["metadata"]["name"] for h in cluster.get("hpa", namespace=work)["items"]],
        timeout=60,
        description="the HorizontalPodAutoscaler to be deleted",
    )
    wait_deployment(cluster, work, "chat", "Ready")


def wait_deployment(cluster: Cluster, namespace: str, name: str, wanted: str, timeout: float = 120) -> dict[str, Any]:
    """Wait until the ModelDeployment's status is ``wanted`` for its current generation."""

    def reached() -> tuple[bool, Any]:
        body = cluster.get("modeldeployments", name, namespace=namespace)
        status = body.get("status", {})
        current = status.get("observedGeneration") == body["metadata"]["generation"]
        return status.get("phase") == wanted and current, status

    return wait_for(reached, timeout=timeout, interval=0.25, description=f"ModelDeployment {name} to be {wanted}")


#: HTTP method of the operator's client -> the RBAC verbs it may stand for.
VERBS_OF_METHOD = {
    "GET": {"get", "list"},
    "POST": {"create"},
    "PUT": {"update"},
    "PATCH": {"patch"},
    "DELETE": {"delete"},
}

#: Rules the scenarios cannot show in the operator's request counter, and why they are needed.
NOT_COUNTED = {
    ("finetunejobs", "watch"): "kopf watches FineTuneJobs (its requests are not counted)",
    ("modeldeployments", "watch"): "kopf watches ModelDeployments",
    ("jobs", "watch"): "kopf watches the Jobs of both controllers",
    ("deployments", "watch"): "kopf watches Triton Deployments",
    ("pods", "watch"): "kopf watches prepare pods (their success starts training)",
    ("finetunejobs/status", "get"): "granted on to each per-job trainer Role (escalation check)",
    ("modeldeployments", "create"): "server-side apply of an object that does not exist yet needs create",
    ("deployments", "create"): "server-side apply of an object that does not exist yet needs create",
    ("services", "create"): "server-side apply of the Triton Service / create of a rendezvous Service",
    ("horizontalpodautoscalers", "create"): "server-side apply of an object that does not exist yet needs create",
    ("services", "get"): "create-or-adopt after AlreadyExists (a restart between create and status write)",
    ("serviceaccounts", "get"): "create-or-adopt after AlreadyExists",
    ("roles", "get"): "create-or-adopt after AlreadyExists",
    ("rolebindings", "get"): "create-or-adopt after AlreadyExists",
}


def requests(operator: LocalOperator) -> set[tuple[str, str]]:
    """(method, resource) of every request the operator's client sent, from its metrics."""
    seen = set()
    for line in operator.http("/metrics").splitlines():
        if line.startswith("kubetune_api_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            seen.add((labels["method"], labels["resource"]))
    return seen


def assert_rules_are_used(release: Release, seen: set[tuple[str, str]]) -> None:
    """Every verb the chart grants on a namespaced resource was used (or is explained), and vice versa."""
    names = (release.fullname, f"{release.fullname}-leader-election")
    roles = [o for o in release.manifest() if o["kind"] in ("ClusterRole", "Role") and o["metadata"]["name"] in names]
    granted = {
        (res, verb) for role in roles for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]
    }
    granted -= {("customresourcedefinitions", "list"), ("customresourcedefinitions", "watch")}  # kopf's scan
    granted -= {("namespaces", "list"), ("namespaces", "watch")}  # kopf, namespaced mode only
    ungranted = sorted((m, r) for m, r in seen if not {(r, verb) for verb in VERBS_OF_METHOD[m]} & granted)
    assert ungranted == [], f"requests no rule allows: {ungranted}"
    used = {(resource, verb) for method, resource in seen for verb in VERBS_OF_METHOD[method]}
    unexplained = sorted(key for key in granted if key not in used and key not in NOT_COUNTED)
    assert unexplained == [], f"granted but never used by the scenarios: {unexplained}"
    stale = sorted(key for key in NOT_COUNTED if key not in granted)
    assert stale == [], f"explanations for rules the chart no longer grants: {stale}"
