"""Fixtures of the cluster tests: the CRDs, and ``kubetune operator`` running as a subprocess.

Why this module exists: controller tests need the real operator process against the real
control plane, started and stopped per test (some tests SIGKILL it on purpose), with its log in
a file a failing test can show. :class:`OperatorProcess` wraps that; the ``operator`` fixture
runs one standalone operator watching the test's namespace, and ``start_operator`` starts more
(e.g. two replicas with leader election). Both are meant for every controller's tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import REPO_ROOT, Cluster
from tests.support.crds import install_crds
from tests.support.wait import wait_for

#: How long an operator may take to start acting (imports, kopf's first listing).
START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    """``kubetune operator`` as a child process, killable and restartable.

    Args:
        cluster: the cluster (its kubeconfig is passed to the operator).
        log_path: file that collects stdout and stderr of every run (appended).
        namespaces: namespaces to watch.
        args: extra command-line flags (e.g. leader election timings).
        env: extra environment variables.
    """

    def __init__(
        self,
        cluster: Cluster,
        log_path: Path,
        namespaces: list[str],
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.log_path = log_path
        self.namespaces = namespaces
        self.args = list(args or [])
        self.env = {**cluster.env(), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def pid(self) -> int:
        """The running process's pid."""
        assert self.process is not None, "the operator is not running"
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The command line."""
        scope = [arg for ns in self.namespaces for arg in ("--namespace", ns)]
        return [
            str(Path(sys.executable).parent / "kubetune"), "operator", *scope,
            "--metrics-port", str(self.metrics_port), "--kubeconfig", str(self.cluster.kubeconfig), *self.args,
        ]  # fmt: skip

    def start(self, wait: bool = True) -> OperatorProcess:
        """Start the process (its output appended to the log file).

        Args:
            wait: block until ``/readyz`` answers (the HTTP server is the first thing it starts).
        """
        assert not self.alive, "already running"
        self.runs += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== run {self.runs}: {' '.join(self.command())}\n".encode())
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the process serves ``/readyz`` (and fail early if it exits)."""

        def ready() -> tuple[bool, str]:
            if not self.alive:
                raise AssertionError(f"the operator exited with {self.returncode()}:\n{self.log_tail()}")
            try:
                return self.http("/readyz") == "ok", "not ready"
            except OSError as err:
                return False, str(err)

        wait_for(ready, timeout=timeout, interval=0.1, description="the operator's /readyz")

    def returncode(self) -> int | None:
        """The exit status, or None while running."""
        return None if self.process is None else self.process.poll()

    def kill(self, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` (SIGKILL by default) and wait for the process to end.

        Returns:
            Its exit status.
        """
        if self.process is None:
            return None
        if self.alive:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """Stop gracefully (SIGTERM), killing it if it does not exit in time."""
        return self.kill(signal.SIGTERM)

    def restart(self, sig: int = signal.SIGKILL) -> OperatorProcess:
        """Kill (SIGKILL by default) and start again."""
        self.kill(sig)
        return self.start()

    def http(self, path: str, timeout: float = 5.0) -> str:
        """GET a path of the operator's HTTP server (``/metrics``, ``/healthz``, ``/readyz``)."""
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
        total = 0.0
        for line in self.http("/metrics").splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            series, _, value = line.rpartition(" ")
            sample, _, label_text = series.partition("{")
            if sample != name:
                continue
            if all(f'{key}="{val}"' in label_text for key, val in labels.items()):
                total += float(value)
        return total

    def peak_rss_bytes(self) -> int:
        """The process's peak resident memory (VmHWM), while it runs."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmHWM not found")

    def logs(self) -> str:
        """Everything the operator printed so far (all runs)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the log."""
        return "\n".join(self.logs().splitlines()[-lines:])


@pytest.fixture(scope="session")
def kubetune_crds(cluster: Cluster) -> None:
    """The kubetune CRDs, installed (server-side applied) once per session."""
    install_crds(cluster)


@pytest.fixture
def start_operator(
    cluster: Cluster, kubetune_crds: None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operator processes; each is stopped at the end of the test and its log tail printed.

    Call it as ``start_operator([namespace], args=[...], env={...}, wait=True)``.
    """
    started: list[OperatorProcess] = []

    def start(
        namespaces: list[str], args: list[str] | None = None, env: dict[str, str] | None = None, wait: bool = True
    ) -> OperatorProcess:
        log_path = tmp_path / f"operator-{len(started)}.log"
        process = OperatorProcess(cluster, log_path, namespaces, args, env)
        started.append(process)
        return process.start(wait=wait)

    yield start
    for process in started:
        process.stop()
        print(f"--- operator log {process.log_path} (last lines) ---\n{process.log_tail(80)}")
        if os.environ.get("KUBETUNE_KEEP_LOGS"):
            print(process.logs())


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess], namespace: str) -> OperatorProcess:
    """One standalone operator watching the test's namespace."""
    return start_operator([namespace], args=["--standalone", "--workers", "8"])


#: Pod annotations that make kwok finish pods in 0.1-0.3 s instead of 1-3 s (keeps tests fast).
FAST_PODS = {"kwok.x-k8s.io/duration": "150ms"}


class FineTuneJobs:
    """Create and inspect FineTuneJobs in one namespace (what most controller tests do).

    Args:
        cluster: the cluster.
        namespace: the test's namespace.
    """

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def manifest(
        self,
        name: str,
        spec: dict[str, Any] | None = None,
        pod_annotations: dict[str, dict[str, str]] | None = None,
        pod_labels: dict[str, dict[str, str]] | None = None,
        fast: bool = True,
    ) -> dict[str, Any]:
        """A FineTuneJob (minimal LoRA job on s3:// by default) with per-component pod overrides.

        Args:
            name: metadata.name.
            spec: spec fields replacing the defaults.
            pod_annotations: component -> extra pod annotations (kwok behaviour).
            pod_labels: component -> extra pod labels (e.g. the kwok failure label).
            fast: add :data:`FAST_PODS` to every component's pods (unless given).
        """
        full_spec = {
            "baseModel": {"uri": "hf://org/base@main"},
            "dataset": {"uri": "s3://data-bucket/dialogues.jsonl"},
            "output": {"uri": f"s3://out-bucket/{name}"},
            "retries": {"maxRetries": 1, "backoffSeconds": 1},
            **(spec or {}),
        }
        annotations: dict[str, str] = {}
        for component in ("prepare", "train", "evaluate"):
            pod_ann = {**(FAST_PODS if fast else {}), **(pod_annotations or {}).get(component, {})}
            if pod_ann:
                annotations[f"kubetune.dev/{component}-pod-annotations"] = json.dumps(pod_ann)
            if pod_labels and component in pod_labels:
                annotations[f"kubetune.dev/{component}-pod-labels"] = json.dumps(pod_labels[component])
        return {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": self.namespace, "annotations": annotations},
            "spec": full_spec,
        }

    def create(self, name: str, spec: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Create a FineTuneJob (see :meth:`manifest`)."""
        return self.cluster.apply(self.manifest(name, spec, **kwargs))[0]

    def get(self, name: str) -> dict[str, Any]:
        """The FineTuneJob as stored."""
        result: dict[str, Any] = self.cluster.get("finetunejobs", name, namespace=self.namespace)
        return result

    def status(self, name: str) -> dict[str, Any]:
        """Its status (empty when unset)."""
        return self.get(name).get("status") or {}

    def conditions(self, name: str) -> list[tuple[str, str, str]]:
        """(type, status, reason) of each condition, in order."""
        return [(c["type"], c["status"], c["reason"]) for c in self.status(name).get("conditions", [])]

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        """One condition (KeyError when absent)."""
        for condition in self.status(name).get("conditions", []):
            if condition["type"] == type_:
                return dict(condition)
        raise KeyError(f"{name} has no condition {type_}: {self.conditions(name)}")

    def wait_phase(self, name: str, *phases: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the job's phase is one of ``phases``; return its status."""

        def reached() -> tuple[bool, Any]:
            status = self.status(name)
            return status.get("phase") in phases, {
                "phase": status.get("phase"),
                "conditions": [
                    (c["type"], c["status"], c["reason"], c.get("message")) for c in status.get("conditions", [])
                ],
                "jobs": self.job_states(name),
            }

        wait_for(reached, timeout=timeout, interval=0.2, description=f"{name} in {phases}")
        return self.status(name)

    def jobs(self, name: str) -> list[dict[str, Any]]:
        """The job's child Jobs, by creation."""
        items = self.cluster.get("jobs", namespace=self.namespace, label=f"kubetune.dev/finetunejob={name}")["items"]
        return sorted(items, key=lambda j: (j["metadata"]["creationTimestamp"], j["metadata"]["name"]))

    def job_states(self, name: str) -> dict[str, str]:
        """Child Job name -> its finished condition (or Active/Suspended)."""
        out = {}
        for job in self.jobs(name):
            conditions = {c["type"] for c in job.get("status", {}).get("conditions", []) if c["status"] == "True"}
            state = "Complete" if "Complete" in conditions else "Failed" if "Failed" in conditions else "Active"
            if job["spec"].get("suspend"):
                state = "Suspended"
            out[job["metadata"]["name"]] = state
        return out

    def pods(self, name: str, component: str | None = None) -> list[dict[str, Any]]:
        """The job's pods (optionally of one component)."""
        selector = f"kubetune.dev/finetunejob={name}"
        if component:
            selector += f",app.kubernetes.io/component={component}"
        items: list[dict[str, Any]] = self.cluster.get("pods", namespace=self.namespace, label=selector)["items"]
        return items

    def patch_status(self, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the status subresource, as the trainer does."""
        self.cluster.kubectl(
            "patch", "finetunejob", name, "--namespace", self.namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip

    def patch_spec(self, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the object (spec, metadata)."""
        self.cluster.kubectl(
            "patch", "finetunejob", name, "--namespace", self.namespace, "--type=merge", "-p", json.dumps(patch)
        )

    def events(self, name: str) -> list[tuple[str, str]]:
        """(type, reason) of the events about the job, oldest first."""
        items = self.cluster.get(
            "events", namespace=self.namespace, field=f"involvedObject.kind=FineTuneJob,involvedObject.name={name}"
        )["items"]
        items.sort(key=lambda e: (e.get("lastTimestamp") or "", e["metadata"]["creationTimestamp"]))
        return [(e["type"], e["reason"]) for e in items]


@pytest.fixture
def ftjs(cluster: Cluster, kubetune_crds: None, namespace: str) -> FineTuneJobs:
    """Helpers to create and inspect FineTuneJobs in the test's namespace."""
    return FineTuneJobs(cluster, namespace)


@pytest.fixture
def volumes(cluster: Cluster, namespace: str) -> Iterator[Callable[..., None]]:
    """Create PersistentVolumeClaims bound to static PersistentVolumes (kwok pods need bound claims).

    Call it with claim names; the PersistentVolumes are deleted at the end of the test.
    """
    created: list[str] = []

    def make(*claims: str) -> None:
        for claim in claims:
            volume = f"{namespace}-{claim}"[:63]
            created.append(volume)
            cluster.apply(
                [
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolume",
                        "metadata": {"name": volume},
                        "spec": {
                            "capacity": {"storage": "1Gi"},
                            "accessModes": ["ReadWriteMany"],
                            "persistentVolumeReclaimPolicy": "Retain",
                            "storageClassName": "",
                            "hostPath": {"path": f"/tmp/kubetune-test/{volume}"},
                            "claimRef": {"namespace": namespace, "name": claim},
                        },
                    },
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": {"name": claim, "namespace": namespace},
                        "spec": {
                            "accessModes": ["ReadWriteMany"],
                            "storageClassName": "",
                            "volumeName": volume,
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    },
                ]
            )
        for claim in claims:
            wait_for(
                lambda claim=claim: (
                    cluster.get("pvc", claim, namespace=namespace).get("status", {}).get("phase") == "Bound"
                ),
                timeout=60,
                description=f"PVC {claim} bound",
            )

    yield make
    for volume in created:
        cluster.delete("pv", volume)
