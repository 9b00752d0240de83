"""Play the trainer pods' part of the status contract on kwok, where no container runs.

In a real cluster the train pod reports ``status.progress`` and the evaluate pod reports
``status.metrics`` and ``status.artifact.digest``, through the per-job ServiceAccount whose Role
allows only ``get``/``patch`` on that one FineTuneJob's status. On the local control plane kwok
only pretends to run pods, so ``make demo`` runs this stand-in beside them: it takes a token of
the job's own ServiceAccount (TokenRequest) and reports with the trainer's own code
(``kubetune_trainer.status.StatusReporter``), so the demo exercises the real permission and
patch path. The numbers it reports are illustrative (a decaying loss curve), and it says so.

Usage: python hack/kwok_trainer.py NAMESPACE FINETUNEJOB [--steps N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubetune.api import v1alpha1
from kubetune_trainer import status


def kubectl(*args: str) -> str:
    """Run kubectl (KUBECONFIG from the environment) and return its output."""
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, check=True).stdout


def phase(namespace: str, name: str) -> str:
    """The FineTuneJob's phase, or '' before the operator set one."""
    out = subprocess.run(
        ["kubectl", "get", "ftj", name, "-n", namespace, "-o", "jsonpath={.status.phase}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def wait_for_phase(namespace: str, name: str, wanted: set[str], timeout: float = 240) -> str:
    """Poll until the phase is one of ``wanted`` (or a terminal one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = phase(namespace, name)
        if current in wanted | {"Succeeded", "Failed"}:
            return current
        time.sleep(0.5)
    raise SystemExit(f"kwok_trainer: {name} did not reach {sorted(wanted)}")


def reporter(namespace: str, name: str, workdir: Path) -> status.StatusReporter:
    """A reporter authenticated as the job's own ServiceAccount, as in the pod."""
    config = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster = config["clusters"][0]["cluster"]
    ca = workdir / "ca.crt"
    if "certificate-authority-data" in cluster:
        import base64

        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    else:
        ca.write_text(Path(cluster["certificate-authority"]).read_text())
    token = workdir / "token"
    token.write_text(kubectl("create", "token", f"{name}-trainer", "-n", namespace, "--duration=1h").strip())
    server = status.ApiServer(base_url=cluster["server"], token_path=str(token), ca_path=str(ca))
    return status.StatusReporter(v1alpha1.StatusTarget(name=name, namespace=namespace), server, min_interval=0)


def main() -> int:
    """Report training progress, then metrics and the artifact digest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("namespace")
    parser.add_argument("name")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if wait_for_phase(args.namespace, args.name, {"Training"}) != "Training":
            return 0
        report = reporter(args.namespace, args.name, Path(tmp))
        for step in range(0, args.steps + 1, 5):
            loss = 0.6 + 2.2 * math.exp(-step / 20)
            progress = status.build_progress(
                step=step,
                total_steps=args.steps,
                epoch=step / args.steps,
                loss=round(loss, 3),
                learning_rate=1e-4 * 0.5 * (1 + math.cos(math.pi * step / args.steps)),
                tokens_per_second=5400.0,
                seconds_per_step=0.2,
            )
            if not report.report_progress(progress, force=True):
                print("kwok_trainer: the status patch was refused", file=sys.stderr)
                return 1
            time.sleep(0.2)
        if wait_for_phase(args.namespace, args.name, {"Evaluating"}) != "Evaluating":
            return 0
        digest = "sha256:" + hashlib.sha256(f"kwok-demo/{args.namespace}/{args.name}".encode()).hexdigest()
        metrics = v1alpha1.Metrics(perplexity=7.9, bleu=21.4, rouge_l=0.41, eval_loss=2.07)
        artifact = v1alpha1.Artifact(digest=digest)
        report.send({"status": {"metrics": metrics.to_k8s(), "artifact": artifact.to_k8s()}})
    print(f"kwok_trainer: reported progress, metrics and the artifact digest of {args.name} (illustrative values)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
