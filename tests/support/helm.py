"""Run the Helm binary that ``hack/build-tools.sh`` builds, on the chart under charts/kubetune.

Why this module exists: the chart tests render, lint, install and upgrade the chart with the
real ``helm`` (v3.19), not with a Python imitation of Go templates. The binary is a source
build whose default Kubernetes version is v1.20, so every render passes ``--kube-version``
explicitly (the chart requires >= 1.29). Helm's cache, config and data directories are kept
under ``.cluster/helm`` so tests never touch the user's ``~/.config/helm``.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import REPO_ROOT, STATE_DIR, Cluster

__all__ = ["CHART", "Helm", "HelmError", "Release", "find_helm"]

CHART = REPO_ROOT / "charts" / "kubetune"
DEFAULT_KUBE_VERSION = "v1.34.4"


class HelmError(RuntimeError):
    """helm exited with a non-zero status.

    Attributes:
        command: The helm arguments.
        returncode: helm's exit status.
        stderr: What helm printed on stderr.
    """

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} exited with {returncode}: {stderr.strip() or stdout.strip()}")
        self.command = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def find_helm() -> Path:
    """Locate the helm binary built by ``hack/build-tools.sh`` (building it if missing).

    Returns:
        The path of the helm binary.

    Raises:
        RuntimeError: build-tools.sh failed or printed no HELM_BIN.
    """
    proc = subprocess.run(
        [str(REPO_ROOT / "hack" / "build-tools.sh"), "--env"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    for line in proc.stdout.splitlines():
        key, _, value = line.strip().removeprefix("export ").partition("=")
        if key == "HELM_BIN" and value:
            return Path(value.strip("'\""))
    raise RuntimeError(f"hack/build-tools.sh --env printed no HELM_BIN (exit {proc.returncode}): {proc.stderr[-2000:]}")


@dataclass(frozen=True)
class Helm:
    """The helm binary, bound to a kubeconfig and a Kubernetes version.

    Attributes:
        binary: Path of helm.
        kubeconfig: Kubeconfig for commands that talk to a cluster.
        kube_version: Kubernetes version used for offline rendering (``helm template``/``lint``).
    """

    binary: Path
    kubeconfig: Path
    kube_version: str = DEFAULT_KUBE_VERSION

    def env(self) -> dict[str, str]:
        """Environment of a helm run: the kubeconfig and private cache/config/data directories."""
        home = STATE_DIR / "helm"
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
        )
        return env

    def run(self, *args: str, timeout: float = 300.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm.

        Args:
            *args: helm arguments.
            timeout: Seconds before the call is abandoned.
            check: Raise :class:`HelmError` when helm fails.

        Returns:
            The completed process (stdout and stderr as text).

        Raises:
            HelmError: helm failed and ``check`` is true.
        """
        argv = [str(self.binary), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env(), check=False)
        if check and proc.returncode != 0:
            raise HelmError(args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    @staticmethod
    def values_args(values: Mapping[str, Any] | None, tmp_dir: Path) -> list[str]:
        """Write ``values`` to a file under ``tmp_dir`` and return the ``--values`` arguments."""
        if not values:
            return []
        tmp_dir.mkdir(parents=True, exist_ok=True)
        path = tmp_dir / f"values-{len(list(tmp_dir.glob('values-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(dict(values)), encoding="utf-8")
        return ["--values", str(path)]

    def template_text(
        self,
        release: str,
        namespace: str,
        values: Mapping[str, Any] | None,
        tmp_dir: Path,
        chart: Path = CHART,
    ) -> str:
        """Render the chart offline; return the YAML stream."""
        args = ["template", release, str(chart), "--namespace", namespace, "--kube-version", self.kube_version]
        return self.run(*args, *self.values_args(values, tmp_dir)).stdout

    def template(
        self,
        release: str,
        namespace: str,
        values: Mapping[str, Any] | None,
        tmp_dir: Path,
        chart: Path = CHART,
    ) -> list[dict[str, Any]]:
        """Render the chart offline; return the objects."""
        text = self.template_text(release, namespace, values, tmp_dir, chart)
        return [obj for obj in yaml.safe_load_all(text) if obj]


class Release:
    """One helm release of the chart in its own namespace, uninstalled by :meth:`cleanup`.

    Args:
        cluster: the cluster.
        helm: the helm binary.
        tmp_path: where values files are written.
        labels: labels of the release namespace (e.g. Pod Security levels).
    """

    def __init__(self, cluster: Cluster, helm: Helm, tmp_path: Path, labels: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.helm = helm
        self.tmp_path = tmp_path
        self.name = f"kt-{secrets.token_hex(3)}"
        self.namespace = cluster.create_namespace(prefix=f"helm-{self.name}", labels=labels)
        self.fullname = f"{self.name}-kubetune"
        self.service_account = f"system:serviceaccount:{self.namespace}:{self.fullname}"

    @property
    def lease(self) -> str:
        """Name of the leader-election Lease."""
        return f"{self.fullname}-leader"

    def install(self, values: dict[str, Any] | None = None, *extra: str, chart: Path = CHART) -> str:
        """``helm upgrade --install --wait``; returns helm's output (the notes)."""
        args = ["upgrade", "--install", self.name, str(chart), "--namespace", self.namespace]
        args += [*self.helm.values_args(values, self.tmp_path), "--wait", "--timeout", "120s", *extra]
        return self.helm.run(*args, timeout=180).stdout

    def cleanup(self) -> None:
        """Uninstall (ignoring errors) and delete the namespace."""
        self.helm.run("uninstall", self.name, "--namespace", self.namespace, "--wait", check=False)
        self.cluster.delete_namespace(self.namespace)

    def manifest(self) -> list[dict[str, Any]]:
        """The objects of the installed release (``helm get manifest``)."""
        text = self.helm.run("get", "manifest", self.name, "--namespace", self.namespace).stdout
        return [obj for obj in yaml.safe_load_all(text) if obj]

    def service_account_token(self, seconds: int = 3600) -> str:
        """A bound token of the operator's ServiceAccount (TokenRequest, as a pod would get)."""
        args = ["create", "token", self.fullname, "--namespace", self.namespace, f"--duration={seconds}s"]
        return self.cluster.kubectl(*args).strip()

    def service_account_kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig that authenticates as the operator's ServiceAccount; return its path."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": self.cluster.server, "certificate-authority-data":
                          base64.b64encode(self.cluster.ca_pem.encode()).decode()}}],
            "users": [{"name": "operator", "user": {"token": self.service_account_token()}}],
            "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
            "current-context": "operator",
        }  # fmt: skip
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        path.chmod(0o600)
        return path

    def deployment_env(self) -> dict[str, str]:
        """The operator container's environment as the installed Deployment sets it.

        ``fieldRef`` variables are resolved the way the kubelet would for a pod named
        ``<fullname>-local`` in the release namespace.
        """
        deployment = next(o for o in self.manifest() if o["kind"] == "Deployment")
        env = {}
        for entry in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field == "metadata.name":
                env[entry["name"]] = f"{self.fullname}-local"
            elif field == "metadata.namespace":
                env[entry["name"]] = self.namespace
            else:
                env[entry["name"]] = entry["value"]
        return env

    def can(self, verb: str, resource: str, namespace: str | None = None, subresource: str = "") -> bool:
        """``kubectl auth can-i`` as the operator's ServiceAccount."""
        args = ["auth", "can-i", verb, resource, f"--as={self.service_account}"]
        args += ["--namespace", namespace] if namespace else ["--all-namespaces"]
        if subresource:
            args.append(f"--subresource={subresource}")
        answer = self.cluster.kubectl(*args, check=False).strip()
        assert answer in ("yes", "no"), answer
        return answer == "yes"
