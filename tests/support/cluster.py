"""A handle on the local Kubernetes control plane that ``hack/cluster.sh`` runs.

Why this module exists: cluster and end-to-end tests need the same few things (the
kubeconfig, the API server's URL and admin token, a kubectl built for the same
Kubernetes version, fresh namespaces) and should not each re-discover them. A
:class:`Cluster` is built from the files ``hack/cluster.sh up`` writes under
``.cluster/`` (``env`` and ``kubeconfig``); it talks to the API server with the built
kubectl, or with plain HTTPS for raw API calls (e.g. with another bearer token).

It deliberately has no Kubernetes client library: tests exercise what users run.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.wait import wait_for

__all__ = ["REPO_ROOT", "STATE_DIR", "ApiError", "Cluster", "KubectlError"]

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = REPO_ROOT / ".cluster"

Manifest = str | Mapping[str, Any] | Iterable[Mapping[str, Any]]


class KubectlError(RuntimeError):
    """kubectl exited with a non-zero status.

    Attributes:
        command: The kubectl arguments (without the binary and kubeconfig).
        returncode: kubectl's exit status.
        stdout: What kubectl printed on stdout.
        stderr: What kubectl printed on stderr (the useful part).
    """

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} exited with {returncode}: {stderr.strip() or stdout.strip()}")
        self.command = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def not_found(self) -> bool:
        """Whether the failure is a NotFound from the API server."""
        return "NotFound" in self.stderr or "not found" in self.stderr


class ApiError(RuntimeError):
    """The API server answered a raw request with an HTTP error.

    Attributes:
        status: The HTTP status code.
        body: The decoded response body (a ``Status`` object as a dict when JSON).
    """

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body}")
        self.status = status
        self.body = body


def _read_env_file(path: Path) -> dict[str, str]:
    """Parse the ``KEY=VALUE`` lines that ``hack/cluster.sh up`` writes.

    Args:
        path: The env file.

    Returns:
        The variables it defines.
    """
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def _dns_label(text: str, limit: int) -> str:
    """Turn free text (e.g. a test name) into a valid DNS-1123 label prefix.

    Args:
        text: Any string.
        limit: Maximum length of the result.

    Returns:
        Lowercase letters, digits and dashes, not starting or ending with a dash.
    """
    label = re.sub(r"[^a-z0-9]+", "-", text.lower())[:limit].strip("-")
    return label or "test"


def _to_yaml(manifest: Manifest) -> str:
    """Render a manifest given as YAML text, one object, or several objects.

    Args:
        manifest: YAML/JSON text, a mapping, or an iterable of mappings.

    Returns:
        A YAML stream kubectl can read.
    """
    if isinstance(manifest, str):
        return manifest
    if isinstance(manifest, Mapping):
        return yaml.safe_dump(dict(manifest), sort_keys=False)
    return yaml.safe_dump_all([dict(m) for m in manifest], sort_keys=False)


@dataclass(frozen=True)
class Cluster:
    """A running Kubernetes API server and the tools to drive it.

    Attributes:
        kubeconfig: Admin kubeconfig (user in group ``system:masters``).
        server: The API server URL, e.g. ``https://127.0.0.1:16443``.
        token: The admin bearer token.
        ca_pem: PEM of the CA that signed the API server's serving certificate.
        kubectl_bin: The kubectl built for the server's version.
        version: The Kubernetes version the binaries were built as (``v1.34.4``).
    """

    kubeconfig: Path
    server: str
    token: str = field(repr=False)
    ca_pem: str = field(repr=False)
    kubectl_bin: Path
    version: str = ""

    @classmethod
    def from_state(cls, state_dir: Path = STATE_DIR) -> Cluster:
        """Build a handle from the files ``hack/cluster.sh up`` wrote.

        Args:
            state_dir: The cluster state directory (``.cluster/`` by default).

        Returns:
            The handle; it does not check that the cluster answers (see
            :meth:`is_ready`).

        Raises:
            FileNotFoundError: ``up`` has never run with this state directory.
        """
        env = _read_env_file(state_dir / "env")
        kubeconfig = Path(env.get("KUBECONFIG", state_dir / "kubeconfig"))
        config = yaml.safe_load(kubeconfig.read_text())
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        return cls(
            kubeconfig=kubeconfig,
            server=cluster["server"],
            token=user["token"],
            ca_pem=ca_pem,
            kubectl_bin=Path(env["KUBECTL_BIN"]),
            version=env.get("KUBE_VERSION", ""),
        )

    # -- raw HTTPS -------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        """Return a TLS context that trusts the cluster's CA only."""
        return ssl.create_default_context(cadata=self.ca_pem)

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """Send one HTTPS request to the API server.

        Args:
            method: HTTP method (``GET``, ``POST``, ...).
            path: Absolute API path, e.g. ``/api/v1/namespaces``.
            body: JSON body to send, if any.
            token: Bearer token to use instead of the admin token (e.g. a
                ServiceAccount token).
            timeout: Socket timeout in seconds.

        Returns:
            The decoded JSON response, or the text when it is not JSON.

        Raises:
            ApiError: The server answered with an HTTP error status.
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as r:
                raw = r.read().decode()
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            try:
                detail: Any = json.loads(text)
            except ValueError:
                detail = text
            raise ApiError(method, path, err.code, detail) from None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def is_ready(self, timeout: float = 3.0) -> bool:
        """Whether the API server answers ``/readyz`` with ``ok``.

        Args:
            timeout: Socket timeout in seconds.

        Returns:
            True when ready; False when it is down, unreachable or not ready.
        """
        try:
            return self.request("GET", "/readyz", timeout=timeout) == "ok"
        except (OSError, ApiError):
            return False

    # -- kubectl ----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for subprocesses that should use this cluster.

        Returns:
            ``os.environ`` plus ``KUBECONFIG`` and the built kubectl first on ``PATH``.
        """
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.kubectl_bin.parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> str:
        """Run the built kubectl against this cluster.

        Args:
            *args: kubectl arguments, e.g. ``("get", "pods", "-n", ns)``.
            input: Text for kubectl's stdin (e.g. a manifest for ``-f -``).
            check: Raise :class:`KubectlError` when kubectl fails.
            timeout: Seconds before the call is abandoned.

        Returns:
            kubectl's stdout (with ``check=False``, also when it failed).

        Raises:
            KubectlError: kubectl failed and ``check`` is true.
            subprocess.TimeoutExpired: kubectl ran longer than ``timeout``.
        """
        argv = [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise KubectlError(list(args), proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout

    def kubectl_json(self, *args: str, timeout: float = 120.0) -> Any:
        """Run kubectl with ``-o json`` and decode the output.

        Args:
            *args: kubectl arguments (without ``-o``).
            timeout: Seconds before the call is abandoned.

        Returns:
            The decoded JSON.
        """
        return json.loads(self.kubectl(*args, "-o", "json", timeout=timeout))

    def get(self, kind: str, name: str | None = None, namespace: str | None = None, **selectors: str) -> Any:
        """Fetch one object, or a list of objects, as a dict.

        Args:
            kind: Resource, e.g. ``job``, ``pods``, ``nodes``, ``finetunejobs``.
            name: Object name; omit to list (then the result has ``items``).
            namespace: Namespace for namespaced kinds.
            **selectors: ``label`` and/or ``field`` selector strings.

        Returns:
            The object or ``List`` as a dict.

        Raises:
            KubectlError: e.g. ``.not_found`` when the object does not exist.
        """
        args = ["get", kind]
        if name:
            args.append(name)
        if namespace:
            args += ["--namespace", namespace]
        if "label" in selectors:
            args += ["--selector", selectors["label"]]
        if "field" in selectors:
            args += ["--field-selector", selectors["field"]]
        return self.kubectl_json(*args)

    def apply(self, manifest: Manifest, namespace: str | None = None) -> list[dict[str, Any]]:
        """Server-side apply one or more objects.

        Server-side apply keeps no ``last-applied`` annotation, so large objects
        (CRDs) apply too; conflicts with other field managers are forced.

        Args:
            manifest: YAML text, one object as a dict, or an iterable of dicts.
            namespace: Default namespace for namespaced objects without one.

        Returns:
            The objects as the server stored them.
        """
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=kubetune-tests"]
        if namespace:
            args += ["--namespace", namespace]
        out = self.kubectl(*args, "-f", "-", "-o", "json", input=_to_yaml(manifest))
        result = json.loads(out)
        return result["items"] if result.get("kind") == "List" else [result]

    def delete(self, kind: str, name: str, namespace: str | None = None, wait: bool = False) -> None:
        """Delete an object; a missing object is not an error.

        Args:
            kind: Resource kind.
            name: Object name.
            namespace: Namespace for namespaced kinds.
            wait: Block until the object is gone.
        """
        args = ["delete", kind, name, "--ignore-not-found", f"--wait={str(wait).lower()}"]
        if namespace:
            args += ["--namespace", namespace]
        self.kubectl(*args)

    # -- namespaces -------------------------------------------------------------------

    def create_namespace(self, prefix: str = "kt-test", labels: Mapping[str, str] | None = None) -> str:
        """Create a uniquely named namespace and wait until pods can be created in it.

        Pods need the namespace's ``default`` ServiceAccount, which the controller
        manager creates shortly after the namespace; this waits for it.

        Args:
            prefix: Start of the name (sanitised to a DNS label, e.g. a test name).
            labels: Extra labels (e.g. Pod Security Admission levels).

        Returns:
            The namespace name, ``<prefix>-<6 hex digits>``.
        """
        name = f"{_dns_label(prefix, 55)}-{secrets.token_hex(3)}"
        all_labels = {"kubetune.dev/test": "true", **(labels or {})}
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": all_labels},
            }
        )
        wait_for(
            lambda: self.get("serviceaccount", "default", namespace=name),
            timeout=60,
            description=f"ServiceAccount default in namespace {name}",
            ignore=(KubectlError,),
        )
        return name

    def delete_namespace(self, name: str, wait: bool = False) -> None:
        """Delete a namespace (and everything in it).

        Args:
            name: The namespace.
            wait: Block until it is gone (kwok deletes pods at once, so this is
                quick, but usually unnecessary).
        """
        self.delete("namespace", name, wait=wait)
