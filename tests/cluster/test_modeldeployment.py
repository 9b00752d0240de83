"""The ModelDeployment controller against the real control plane (kwok nodes, the operator as a process).

Covers the issue's acceptance: a deployment waits for its FineTuneJob, builds, deploys and becomes
Ready; a new quantization is a new revision rolled out while the old ReplicaSet keeps serving (and
switching back reuses the cached engine); a failing smoke test rolls back to the previous revision
with phase Degraded; deleting the ModelDeployment removes its children; a FineTuneJob's
``spec.deploy`` ends in a Ready deployment.

kwok completes Job pods and makes Deployment pods ready; the pass-through annotations
``kubetune.dev/<component>-pod-annotations`` make Job pods finish in 150 ms and
``kubetune.dev/smoke-pod-labels`` carries kwok's failure label onto the smoke-test pod only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.cluster import Cluster, KubectlError
from tests.support.wait import wait_for

FAST = json.dumps({"kwok.x-k8s.io/duration": "150ms"})
FAIL = json.dumps({"kwok.x-k8s.io/fail": "true"})
MODEL_URI = "pvc://models/chat/v1"
DIGEST = "sha256:" + "5" * 64


class Deployments:
    """Create and inspect ModelDeployments (and their children) in the test's namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def apply(self, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> None:
        """Server-side apply a ModelDeployment whose Job pods finish fast."""
        fast = {f"kubetune.dev/{c}-pod-annotations": FAST for c in ("build", "smoke")}
        self.cluster.apply(
            {
                "apiVersion": "kubetune.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": name, "annotations": {**fast, **(annotations or {})}},
                "spec": spec,
            },
            namespace=self.namespace,
        )

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the ModelDeployment (spec, annotations)."""
        self.cluster.kubectl(
            "patch", "modeldeployment", name, "-n", self.namespace, "--type=merge", "-p", json.dumps(patch)
        )

    def status(self, name: str) -> dict[str, Any]:
        """Its status ({} before the operator wrote one)."""
        return self.cluster.get("modeldeployment", name, namespace=self.namespace).get("status") or {}

    def wait(self, name: str, phase: str, timeout: float = 90.0, **fields: Any) -> dict[str, Any]:
        """Wait for ``phase`` (and status fields equal to ``fields``); return the status."""

        def reached() -> tuple[bool, Any]:
            status = self.status(name)
            ok = status.get("phase") == phase and all(status.get(k) == v for k, v in fields.items())
            summary = {
                "phase": status.get("phase"),
                "revision": status.get("revision"),
                "previousRevision": status.get("previousRevision"),
                "conditions": [
                    (c["type"], c["status"], c["reason"], c.get("message")) for c in status.get("conditions", [])
                ],
                "jobs": self.job_states(name),
            }
            return ok, summary

        wait_for(reached, timeout=timeout, interval=0.2, description=f"ModelDeployment {name} {phase} {fields}")
        return self.status(name)

    def conditions(self, name: str) -> dict[str, tuple[str, str]]:
        """type -> (status, reason)."""
        return {c["type"]: (c["status"], c["reason"]) for c in self.status(name).get("conditions", [])}

    def children(self, kind: str, name: str) -> list[dict[str, Any]]:
        """Objects of ``kind`` labelled as this ModelDeployment's children."""
        items: list[dict[str, Any]] = self.cluster.get(
            kind, namespace=self.namespace, label=f"kubetune.dev/modeldeployment={name}"
        )["items"]
        return items

    def job_states(self, name: str) -> dict[str, str]:
        """Child Job name -> Complete, Failed or Active."""
        out = {}
        for job in self.children("jobs", name):
            done = {c["type"] for c in job.get("status", {}).get("conditions", []) if c["status"] == "True"}
            out[job["metadata"]["name"]] = (
                "Complete" if "Complete" in done else "Failed" if "Failed" in done else "Active"
            )
        return out

    def deployment(self, name: str) -> dict[str, Any]:
        """The Triton Deployment."""
        result: dict[str, Any] = self.cluster.get("deployment", name, namespace=self.namespace)
        return result

    def served_revision(self, name: str) -> str:
        """The revision in the Deployment's pod template."""
        return str(self.deployment(name)["spec"]["template"]["metadata"]["annotations"]["kubetune.dev/revision"])

    def ready_by_revision(self, name: str) -> dict[str, int]:
        """Ready pods per revision, from one list of the ReplicaSets (a consistent snapshot)."""
        out: dict[str, int] = {}
        for rs in self.children("replicasets", name):
            revision = rs["spec"]["template"]["metadata"]["labels"]["kubetune.dev/revision"]
            out[revision] = out.get(revision, 0) + int(rs.get("status", {}).get("readyReplicas") or 0)
        return out

    def events(self, name: str) -> list[tuple[str, str]]:
        """(type, reason) of the events about the ModelDeployment."""
        items = self.cluster.get(
            "events", namespace=self.namespace, field=f"involvedObject.kind=ModelDeployment,involvedObject.name={name}"
        )["items"]
        return [(e["type"], e["reason"]) for e in items]


@pytest.fixture
def mdeps(cluster: Cluster, kubetune_crds: None, namespace: str) -> Deployments:
    return Deployments(cluster, namespace)


def _serving(**overrides: Any) -> dict[str, Any]:
    return {"model": {"uri": MODEL_URI}, "rollout": {"smokeTest": {"timeoutSeconds": 30}}, **overrides}


def _ready(mdeps: Deployments, name: str, **overrides: Any) -> dict[str, Any]:
    mdeps.apply(name, _serving(**overrides))
    return mdeps.wait(name, "Ready")


def test_waits_for_its_finetunejob_then_builds_deploys_and_is_ready(
    mdeps: Deployments, ftjs: Any, operator: Any, volumes: Callable[..., None], cluster: Cluster, namespace: str
) -> None:
    volumes("models")
    # Applied before the FineTuneJob exists, as one GitOps commit with both would be.
    mdeps.apply("chat", {"model": {"fineTuneJobRef": {"name": "tune"}}, "replicas": 2})
    mdeps.wait("chat", "WaitingForModel")
    assert mdeps.conditions("chat")["ModelReady"] == ("False", "FineTuneJobNotFound")
    assert mdeps.children("jobs", "chat") == []

    ftjs.create("tune", {"output": {"uri": "pvc://models/runs/tune"}})
    ftjs.patch_status("tune", {"artifact": {"digest": DIGEST}})  # what the trainer's export step reports
    ftjs.wait_phase("tune", "Succeeded", timeout=90)
    status = mdeps.wait("chat", "Ready", timeout=90)

    revision = status["revision"]
    assert mdeps.conditions("chat") == {
        "ModelReady": ("True", "FineTuneJobSucceeded"),
        "EngineBuilt": ("True", "BuildSucceeded"),
        "Progressing": ("False", "RolloutComplete"),
        "Available": ("True", "MinimumReplicasAvailable"),
        "Degraded": ("False", "AsExpected"),
        "SmokeTested": ("True", "SmokeTestPassed"),
        "Ready": ("True", "Serving"),
    }
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    assert status["endpoint"] == {
        "http": f"http://chat.{namespace}.svc.cluster.local:8000",
        "grpc": f"chat.{namespace}.svc.cluster.local:8001",
    }
    assert status["engine"]["uri"] == f"pvc://models/runs/tune/engines/{revision}"
    assert (status["ready"], status["replicas"], status["readyReplicas"]) == ("2/2", 2, 2)
    assert status.get("previousRevision") is None
    assert mdeps.job_states("chat") == {f"chat-build-{revision}": "Complete", f"chat-smoke-{revision}": "Complete"}
    triton = mdeps.deployment("chat")["spec"]["template"]["spec"]["containers"][0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    service = cluster.get("service", "chat", namespace=namespace)
    assert [p["port"] for p in service["spec"]["ports"]] == [8000, 8001, 8002]
    engines = cluster.get("configmap", "chat-engines", namespace=namespace)["data"]
    assert json.loads(engines[revision])["modelDigest"] == DIGEST
    assert ("Normal", "Serving") in mdeps.events("chat")
    ready_pods = [p for p in mdeps.children("pods", "chat") if p["status"].get("phase") == "Running"]
    assert {p["spec"]["nodeName"] for p in ready_pods} <= {"gpu-a100-0", "gpu-a100-1"}


def test_new_quantization_rolls_out_while_the_old_replicaset_serves(
    mdeps: Deployments, operator: Any, volumes: Callable[..., None]
) -> None:
    volumes("models")
    first = _ready(mdeps, "chat", replicas=2)["revision"]

    mdeps.patch("chat", {"spec": {"quantization": "int8"}})
    samples: list[dict[str, int]] = []

    def rolled_out() -> tuple[bool, Any]:
        samples.append(mdeps.ready_by_revision("chat"))
        status = mdeps.status("chat")
        done = status.get("phase") == "Ready" and status.get("revision") not in (None, first)
        return done, {"phase": status.get("phase"), "revision": status.get("revision"), "ready": samples[-1]}

    wait_for(rolled_out, timeout=90, interval=0.05, description="the int8 revision Ready")
    status = mdeps.status("chat")
    second = status["revision"]
    assert status["previousRevision"] == first
    assert mdeps.served_revision("chat") == second
    # maxUnavailable 0: at every instant at least 2 pods were ready, and the old revision's pods
    # kept serving until pods of the new one were ready.
    assert all(sum(sample.values()) >= 2 for sample in samples), samples
    for sample in samples:
        if sample.get(first, 0) < 2:
            assert sample.get(second, 0) >= 1, samples
    assert any(sample.get(first, 0) >= 2 for sample in samples)
    assert mdeps.job_states("chat") == {
        f"chat-build-{first}": "Complete", f"chat-smoke-{first}": "Complete",
        f"chat-build-{second}": "Complete", f"chat-smoke-{second}": "Complete",
    }  # fmt: skip

    # Back to fp16: the first revision's engine is cached, nothing is rebuilt.
    mdeps.patch("chat", {"spec": {"quantization": "fp16"}})
    status = mdeps.wait("chat", "Ready", revision=first)
    assert status["previousRevision"] == second
    assert mdeps.conditions("chat")["EngineBuilt"] == ("True", "BuildSucceeded")
    assert len([j for j in mdeps.job_states("chat") if "-build-" in j]) == 2
    assert mdeps.served_revision("chat") == first


def test_failed_smoke_test_rolls_back_to_the_previous_revision(
    mdeps: Deployments, operator: Any, volumes: Callable[..., None]
) -> None:
    volumes("models")
    first = _ready(mdeps, "chat")["revision"]

    mdeps.patch(
        "chat",
        {"metadata": {"annotations": {"kubetune.dev/smoke-pod-labels": FAIL}}, "spec": {"quantization": "w4a16"}},
    )
    status = mdeps.wait("chat", "Degraded", previousRevision=first)
    second = status["revision"]
    assert second != first
    conditions = mdeps.conditions("chat")
    assert conditions["Degraded"] == ("True", "SmokeTestFailed")
    assert conditions["Ready"] == ("False", "SmokeTestFailed")
    assert conditions["Progressing"] == ("False", "RolledBack")
    message = next(c["message"] for c in status["conditions"] if c["type"] == "Degraded")
    assert f"chat-smoke-{second}" in message and "exited with code 1" in message
    assert f"rolled back to revision {first}" in message
    assert mdeps.job_states("chat")[f"chat-smoke-{second}"] == "Failed"
    wait_for(
        lambda: mdeps.served_revision("chat") == first,
        timeout=30,
        description="the Deployment back at the first revision",
    )
    wait_for(
        lambda: mdeps.ready_by_revision("chat").get(first) == 1, timeout=30, description="the first revision serving"
    )
    assert ("Warning", "SmokeTestFailed") in mdeps.events("chat")
    # It stays rolled back: no second smoke test of the failed revision.
    assert mdeps.status("chat")["phase"] == "Degraded"
    assert len([j for j in mdeps.job_states("chat") if "-smoke-" in j]) == 2


def test_deleting_the_modeldeployment_removes_its_children(
    mdeps: Deployments, operator: Any, volumes: Callable[..., None], cluster: Cluster, namespace: str
) -> None:
    volumes("models")
    _ready(mdeps, "chat")
    kinds = ("jobs", "deployments", "services", "configmaps", "replicasets")
    assert all(mdeps.children(kind, "chat") for kind in kinds)
    cluster.delete("modeldeployment", "chat", namespace=namespace)

    def gone() -> tuple[bool, Any]:
        left = {kind: [o["metadata"]["name"] for o in mdeps.children(kind, "chat")] for kind in kinds}
        return not any(left.values()), left

    wait_for(gone, timeout=60, description="the children garbage collected")
    with pytest.raises(KubectlError):
        cluster.get("modeldeployment", "chat", namespace=namespace)


def test_finetunejob_spec_deploy_ends_ready(
    mdeps: Deployments, ftjs: Any, operator: Any, volumes: Callable[..., None]
) -> None:
    volumes("models")
    deploy = {"name": "served", "backend": "python", "resources": {"gpus": 0, "cpu": "2", "memory": "4Gi"}}
    ftjs.create("tune", {"output": {"uri": "pvc://models/runs/tune"}, "deploy": deploy})
    ftjs.patch_status("tune", {"artifact": {"digest": DIGEST}})
    ftjs.wait_phase("tune", "Succeeded", timeout=90)
    status = mdeps.wait("served", "Ready", timeout=90)
    assert mdeps.conditions("served")["ModelReady"] == ("True", "FineTuneJobSucceeded")
    triton = mdeps.deployment("served")["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in triton["resources"]["limits"]
    assert status["engine"]["uri"].startswith("pvc://models/runs/tune/engines/")


def test_a_hub_model_is_copied_into_the_engine_storage_and_served(
    mdeps: Deployments, operator: Any, volumes: Callable[..., None], cluster: Cluster, namespace: str
) -> None:
    volumes("engines")
    hub = {"uri": "hf://org/chat-model@main", "secretRef": {"name": "hub-token"}}
    cpu = {"gpus": 0, "cpu": "2", "memory": "4Gi"}
    status = _ready(mdeps, "hub", model=hub, engineStorage="pvc://engines/cache", backend="python", resources=cpu)
    revision = status["revision"]
    assert mdeps.conditions("hub")["ModelReady"] == ("True", "ModelURIGiven")
    assert status["engine"]["uri"] == f"pvc://engines/cache/engines/{revision}"
    build = cluster.get("job", f"hub-build-{revision}", namespace=namespace)["spec"]["template"]["spec"]
    (fetch,) = build["initContainers"]
    copy = f"/mnt/pvc/engines/cache/engines/{revision}.model"
    assert fetch["command"][-4:] == ["--uri", "hf://org/chat-model@main", "--output", copy]
    token = next(e for e in fetch["env"] if e["name"] == "HF_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hub-token", "key": "HF_TOKEN", "optional": False}
    claims = [v["persistentVolumeClaim"]["claimName"] for v in build["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["engines"]
    served = mdeps.deployment("hub")["spec"]["template"]["spec"]
    assert [v["persistentVolumeClaim"] for v in served["volumes"] if "persistentVolumeClaim" in v] == [
        {"claimName": "engines", "readOnly": True}
    ]


def test_rollout_past_its_deadline_rolls_back_across_an_operator_restart(
    mdeps: Deployments, operator: Any, volumes: Callable[..., None]
) -> None:
    volumes("models")
    # The python backend serves on CPU; switched to tensorrtllm, each replica asks for 9 GPUs, more
    # than a node has, so the new pods never schedule (the build only needs tensorParallelism GPUs).
    rollout = {"progressDeadlineSeconds": 30, "smokeTest": {"timeoutSeconds": 30}}
    first = _ready(mdeps, "chat", backend="python", resources={"gpus": 9}, rollout=rollout)["revision"]

    mdeps.patch("chat", {"spec": {"backend": "tensorrtllm"}})
    status = mdeps.wait("chat", "Deploying", previousRevision=first)
    second = status["revision"]
    operator.restart()  # SIGKILL mid-rollout: the next process decides from what it observes
    status = mdeps.wait("chat", "Degraded", timeout=120, revision=second)
    conditions = mdeps.conditions("chat")
    assert conditions["Degraded"] == ("True", "RolloutTimedOut")
    assert conditions["Progressing"] == ("False", "RolledBack")
    message = next(c["message"] for c in status["conditions"] if c["type"] == "Degraded")
    assert "timed out progressing" in message and f"rolled back to revision {first}" in message
    wait_for(
        lambda: mdeps.served_revision("chat") == first,
        timeout=30,
        description="the Deployment back at the first revision",
    )
    wait_for(lambda: mdeps.ready_by_revision("chat") == {first: 1, second: 0}, timeout=30,
             description="the first revision serving, the second scaled down")  # fmt: skip
    assert mdeps.job_states("chat") == {
        f"chat-build-{first}": "Complete", f"chat-smoke-{first}": "Complete", f"chat-build-{second}": "Complete",
    }  # fmt: skip


def test_a_foreign_object_with_a_childs_name_is_not_taken_over(
    mdeps: Deployments, operator: Any, volumes: Callable[..., None], cluster: Cluster, namespace: str
) -> None:
    volumes("models")
    cluster.apply(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat"},
         "spec": {"selector": {"app": "other"}, "ports": [{"name": "web", "port": 80}]}},
        namespace=namespace,
    )  # fmt: skip
    mdeps.apply("chat", _serving())
    wait_for(
        lambda: ("Warning", "ChildConflict") in mdeps.events("chat"), timeout=60, description="a ChildConflict event"
    )
    service = cluster.get("service", "chat", namespace=namespace)
    assert "ownerReferences" not in service["metadata"]
    assert [p["port"] for p in service["spec"]["ports"]] == [80]
    assert mdeps.status("chat").get("phase") != "Ready"
    # Once the user removes the foreign Service, the deployment proceeds (the operator retries every
    # 30 s; touching the ModelDeployment makes it look at once).
    cluster.delete("service", "chat", namespace=namespace)
    mdeps.patch("chat", {"metadata": {"annotations": {"example.com/touched": "1"}}})
    mdeps.wait("chat", "Ready", timeout=60)
