"""How the FineTuneJob controller scales: N jobs at once, against kube-controller-manager's own pace.

Run against the local control plane (``make cluster-up``)::

    .venv/bin/python bench/operator_scale.py --sizes 200 1000

For each N it measures, in fresh namespaces:

1. **baseline**: N plain Jobs created at once; the time until kube-controller-manager has created
   a pod for every one of them (what any Job-based workload pays);
2. **operator**: N FineTuneJobs created at once with ``kubetune operator`` running; the time until
   every one has its train Job and a status. That path includes a whole prepare Job per
   FineTuneJob (created by the operator, run by kube-controller-manager and kwok), so it
   contains the baseline's work and more;
3. the operator's peak RSS (VmHWM), its API writes per FineTuneJob (from its own
   ``kubetune_api_requests_total``), and the lag between a prepare pod's success and the
   creation of its train Job (what the operator itself adds).

Simulated pods finish after 150 ms (kwok ``duration`` annotation) and prepare pods request 10m
CPU, so that node capacity and kwok delays do not dominate what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubetune.kube import client as kube_client  # noqa: E402
from kubetune.kube import config as kube_config  # noqa: E402
from kubetune.kube import errors  # noqa: E402

FAST = {"kwok.x-k8s.io/duration": "150ms"}
IMAGE = "registry.invalid/kubetune/noop:1"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def control_plane_cpu() -> dict[str, float]:
    """CPU seconds used so far by each control-plane process started by hack/cluster.sh."""
    out = {}
    for name in CONTROL_PLANE:
        try:
            pid = int((REPO / ".cluster" / "pids" / f"{name}.pid").read_text())
            out[name] = cpu_seconds(pid)
        except (OSError, ValueError):
            continue
    return out


def cpu_delta(before: dict[str, float]) -> dict[str, float]:
    after = control_plane_cpu()
    return {name: round(after[name] - before[name], 1) for name in before if name in after}


#: APF flow schema of the controllers in kube-controller-manager (per-controller service accounts).
CONTROLLERS_FLOW = "kube-system-service-accounts"


async def controller_requests(api: kube_client.Client) -> float:
    """Requests the API server dispatched for kube-controller-manager's controllers so far."""
    text = await api.request("GET", "/metrics")
    total = 0.0
    for line in str(text).splitlines():
        if (
            line.startswith("apiserver_flowcontrol_dispatched_requests_total{")
            and f'flow_schema="{CONTROLLERS_FLOW}"' in line
        ):
            total += float(line.rpartition(" ")[2])
    return total


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


async def create_all(api: kube_client.Client, resource: kube_client.Resource, manifests: list[dict[str, Any]]) -> None:
    """Create every manifest, 64 requests in flight."""
    gate = asyncio.Semaphore(64)

    async def one(manifest: dict[str, Any]) -> None:
        async with gate:
            await api.create(resource, manifest)

    await asyncio.gather(*(one(m) for m in manifests))


async def namespace(api: kube_client.Client, prefix: str) -> str:
    """Create a fresh namespace ``<prefix>-<random>`` and wait until pods can be created in it."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    await api.create(kube_client.NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    while True:  # pods need the namespace's default ServiceAccount
        try:
            await api.get(kube_client.SERVICEACCOUNTS, "default", name)
            return name
        except errors.NotFound:
            await asyncio.sleep(0.2)


async def delete_namespace(api: kube_client.Client, name: str, timeout: float = 600) -> None:
    """Delete a namespace and wait until it is gone, so its cleanup does not overlap the next run."""
    with contextlib.suppress(errors.NotFound):
        await api.delete(kube_client.NAMESPACES, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await api.get(kube_client.NAMESPACES, name)
        except errors.NotFound:
            return
        await asyncio.sleep(2)
    print(f"warning: namespace {name} still exists after {timeout}s", flush=True)


def plain_job(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": FAST},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": IMAGE, "resources": {"requests": {"cpu": "10m"}}}],
                },
            },
        },
    }


def finetunejob(name: str, ns: str) -> dict[str, Any]:
    annotations = {f"kubetune.dev/{c}-pod-annotations": json.dumps(FAST) for c in ("prepare", "train", "evaluate")}
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {
            "baseModel": {"uri": "hf://org/base@main"},
            "dataset": {"uri": "s3://bench-data/dialogues.jsonl"},
            "output": {"uri": f"s3://bench-out/{name}"},
            "resources": {"gpusPerNode": 0, "cpu": "10m", "memory": "64Mi"},
        },
    }


def _elapsed(started: datetime, last: datetime) -> float:
    """Seconds from ``started`` to a server timestamp (which has 1 s resolution: round up)."""
    return max(0.0, (last - started).total_seconds() + 1.0)


async def wait_until(check: Any, timeout: float, interval: float = 2.0) -> float:
    """Poll ``check()`` (async, returns (done, progress)) until done; return seconds waited.

    The poll is slow on purpose (the benchmark's own lists load the API server); times are
    taken from the objects' server-side timestamps, not from when the poll noticed.
    """
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        done, progress = await check()
        if progress != last:
            print(f"    {time.monotonic() - start:6.1f}s {progress}", flush=True)
            last = progress
        if done:
            return time.monotonic() - start
        await asyncio.sleep(interval)
    raise TimeoutError(f"not done after {timeout}s: {last}")


async def baseline(api: kube_client.Client, n: int, timeout: float) -> dict[str, Any]:
    ns = await namespace(api, f"bench-jobs-{n}")
    try:
        manifests = [plain_job(f"job-{i}", ns) for i in range(n)]
        cpu_before = control_plane_cpu()
        kcm_before = await controller_requests(api)
        started = datetime.now(UTC)
        await create_all(api, kube_client.JOBS, manifests)
        pods: list[dict[str, Any]] = []

        async def pods_exist() -> tuple[bool, str]:
            nonlocal pods
            pods = await api.list(kube_client.PODS, ns)
            jobs = {p["metadata"]["labels"].get("batch.kubernetes.io/job-name") for p in pods}
            return len(jobs) >= n, f"{len(jobs)}/{n} Jobs have a pod"

        await wait_until(pods_exist, timeout)
        last = max(_time(p["metadata"]["creationTimestamp"]) or started for p in pods)
        seconds = _elapsed(started, last)
        kcm = await controller_requests(api) - kcm_before
        return {"seconds": seconds, "cpu": cpu_delta(cpu_before), "kcm_requests_per_second": kcm / seconds}
    finally:
        await delete_namespace(api, ns)


class Operator:
    """``kubetune operator`` watching one namespace, with its log in a file."""

    def __init__(self, ns: str, log: Path, port: int, workers: int) -> None:
        env = {**os.environ, "KUBECONFIG": str(REPO / ".cluster" / "kubeconfig"), "KUBETUNE_PREPARE_CPU": "10m",
               "KUBETUNE_PREPARE_MEMORY": "64Mi"}  # fmt: skip
        command = [
            str(Path(sys.executable).parent / "kubetune"), "operator", "--standalone", "--namespace", ns,
            "--metrics-port", str(port), "--workers", str(workers),
        ]  # fmt: skip
        self.port = port
        self.handle = log.open("ab")
        self.process = subprocess.Popen(command, stdout=self.handle, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.http("/readyz") == "ok":
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"the operator did not start; see {log}") from None
                time.sleep(0.1)

    def http(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
            return response.read().decode()

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    def requests(self) -> dict[str, float]:
        """kubetune_api_requests_total by HTTP method."""
        totals: dict[str, float] = {}
        for line in self.http("/metrics").splitlines():
            if line.startswith("kubetune_api_requests_total{"):
                labels, _, value = line.rpartition(" ")
                method = labels.split('method="', 1)[1].split('"', 1)[0]
                totals[method] = totals.get(method, 0.0) + float(value)
        return totals

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.handle.close()


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


async def operator_run(api: kube_client.Client, n: int, timeout: float, workers: int, log: Path) -> dict[str, Any]:
    ns = await namespace(api, f"bench-ftj-{n}")
    operator = Operator(ns, log, 18900 + n % 100, workers)
    try:
        manifests = [finetunejob(f"ftj-{i}", ns) for i in range(n)]
        cpu_before = control_plane_cpu()
        operator_cpu_before = cpu_seconds(operator.process.pid)
        kcm_before = await controller_requests(api)
        started = datetime.now(UTC)
        await create_all(api, kube_client.FINETUNEJOBS, manifests)
        created = (datetime.now(UTC) - started).total_seconds()

        async def trained() -> tuple[bool, str]:
            jobs = await api.list(kube_client.JOBS, ns, label_selector="app.kubernetes.io/component=train")
            owners = {j["metadata"]["labels"]["kubetune.dev/finetunejob"] for j in jobs}
            ftjs = await api.list(kube_client.FINETUNEJOBS, ns)
            with_status = sum(1 for f in ftjs if (f.get("status") or {}).get("phase"))
            return len(owners) >= n and with_status >= n, f"{len(owners)}/{n} train Jobs, {with_status}/{n} statuses"

        await wait_until(trained, timeout)
        kcm = await controller_requests(api) - kcm_before
        requests = operator.requests()
        rss = operator.peak_rss_mib()
        cpu = {**cpu_delta(cpu_before), "operator": round(cpu_seconds(operator.process.pid) - operator_cpu_before, 1)}
        jobs = await api.list(kube_client.JOBS, ns)
        trains = [j for j in jobs if j["metadata"]["labels"].get("app.kubernetes.io/component") == "train"]
        last = max(_time(j["metadata"]["creationTimestamp"]) or started for j in trains)
        prepare_pods = await api.list(kube_client.PODS, ns, label_selector="app.kubernetes.io/component=prepare")
        lags = _operator_lags(jobs, prepare_pods)
        seconds = _elapsed(started, last)
        return {
            "seconds": seconds,
            "kcm_requests_per_second": kcm / seconds,
            "cpu": cpu,
            "create_seconds": created,
            "peak_rss_mib": rss,
            "writes_per_job": sum(requests.get(m, 0.0) for m in WRITE_METHODS) / n,
            "reads_per_job": requests.get("GET", 0.0) / n,
            "requests": requests,
            "lag_p50_seconds": statistics.median(lags) if lags else None,
            "lag_max_seconds": max(lags) if lags else None,
        }
    finally:
        operator.stop()
        await delete_namespace(api, ns)


def _operator_lags(jobs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[float]:
    """Seconds from each prepare pod's success to the creation of its train Job (1 s resolution).

    The prepare pod's container finishing is what the operator reacts to (it watches prepare
    pods); the Job controller counts the pod later.
    """
    prepared: dict[str, datetime] = {}
    for pod in pods:
        owner = pod["metadata"]["labels"].get("kubetune.dev/finetunejob", "")
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            finished = _time(((container.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            if finished and pod["status"].get("phase") == "Succeeded":
                prepared[owner] = finished
    train_created: dict[str, datetime] = {}
    for job in jobs:
        labels = job["metadata"]["labels"]
        created = _time(job["metadata"]["creationTimestamp"])
        if labels.get("app.kubernetes.io/component") == "train" and created:
            train_created[labels.get("kubetune.dev/finetunejob", "")] = created
    return [(train_created[o] - prepared[o]).total_seconds() for o in train_created if o in prepared]


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    config = kube_config.from_kubeconfig(REPO / ".cluster" / "kubeconfig")
    results = []
    async with kube_client.Client(config, max_connections=64) as api:
        for n in args.sizes:
            print(f"N={n}: baseline (plain Jobs -> pods)", flush=True)
            base = await baseline(api, n, args.timeout)
            await asyncio.sleep(args.settle)
            print(f"N={n}: operator (FineTuneJobs -> train Job + status)", flush=True)
            ours = await operator_run(api, n, args.timeout, args.workers, Path(args.log_dir) / f"operator-{n}.log")
            result = {
                "n": n,
                "baseline_seconds": base["seconds"],
                "baseline_cpu": base["cpu"],
                "baseline_kcm_requests_per_second": base["kcm_requests_per_second"],
                **ours,
                "ratio": ours["seconds"] / base["seconds"],
            }
            print(json.dumps(result, indent=2), flush=True)
            results.append(result)
            await asyncio.sleep(args.settle)
    return results


def markdown(results: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}; "
        "local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler v1.34.4, kwok).",
        "",
        "| N | plain Jobs -> pods (KCM) | FineTuneJobs -> train Job + status | ratio | operator peak RSS | "
        "API writes / job | reads / job | prepare pod done -> train Job (p50 / max) | KCM requests/s (plain / ours) | "
        "KCM requests / job (plain / ours) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['n']} | {r['baseline_seconds']:.1f} s | {r['seconds']:.1f} s | {r['ratio']:.2f} | "
            f"{r['peak_rss_mib']:.0f} MiB | {r['writes_per_job']:.1f} | {r['reads_per_job']:.1f} | "
            f"{r['lag_p50_seconds']:.0f} s / {r['lag_max_seconds']:.0f} s | "
            f"{r['baseline_kcm_requests_per_second']:.0f} / {r['kcm_requests_per_second']:.0f} | "
            f"{r['baseline_kcm_requests_per_second'] * r['baseline_seconds'] / r['n']:.1f} / "
            f"{r['kcm_requests_per_second'] * r['seconds'] / r['n']:.1f} |"
        )
    lines += ["", "CPU seconds used during each measurement (2 shared cores):", ""]
    lines += [
        "| N | run | " + " | ".join(CONTROL_PLANE) + " | operator |",
        "|---:|---|" + "---:|" * (len(CONTROL_PLANE) + 1),
    ]
    for r in results:
        for label, cpu in (("plain Jobs", r["baseline_cpu"]), ("FineTuneJobs", r["cpu"])):
            cells = [f"{cpu.get(name, 0):.0f}" for name in (*CONTROL_PLANE, "operator")]
            lines.append(f"| {r['n']} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per measurement")
    parser.add_argument("--workers", type=int, default=16, help="operator workers")
    parser.add_argument("--settle", type=float, default=10.0, help="pause between runs (namespace cleanup)")
    parser.add_argument("--log-dir", default="/tmp", help="where the operator logs go")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument("--from-json", type=Path, help="print the tables of a saved --output file; measure nothing")
    options = parser.parse_args()
    if options.from_json:
        saved = json.loads(options.from_json.read_text())
        print(markdown(saved["results"], saved["machine"]))
        raise SystemExit(0)
    info = machine()
    measured = asyncio.run(main(options))
    if options.output:
        options.output.write_text(json.dumps({"machine": info, "results": measured}, indent=2))
    print(markdown(measured, info))
