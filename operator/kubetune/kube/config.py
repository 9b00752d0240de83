"""Where the API server is and how to authenticate: a kubeconfig file or the pod's service account.

The operator needs the same credentials twice: for kopf's watches and for its own client. This
module reads them once, the way kubectl does for the common cases (a token, a token file, client
certificates, a CA given as data or as a file), and hands both consumers the same
:class:`ConnectionConfig`. Exec plugins and auth providers are not supported: in a cluster the
operator runs with its service account, and locally with a kubeconfig holding credentials.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Where Kubernetes mounts a pod's service-account credentials.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ConfigError(RuntimeError):
    """No usable API server configuration was found."""


@dataclass(frozen=True)
class ConnectionConfig:
    """How to reach and authenticate to one API server.

    Attributes:
        server: base URL, e.g. ``https://127.0.0.1:6443``.
        ca_data: PEM of the CA to trust (None: the system store).
        token: a static bearer token.
        token_file: a file holding the bearer token, re-read as it rotates (service accounts).
        client_cert_data: PEM client certificate.
        client_key_data: PEM client key.
        insecure: skip TLS verification (kubeconfig ``insecure-skip-tls-verify``).
        namespace: the default namespace (the pod's namespace in a cluster).
    """

    server: str
    ca_data: str | None = None
    token: str | None = None
    token_file: str | None = None
    client_cert_data: str | None = None
    client_key_data: str | None = None
    insecure: bool = False
    namespace: str = "default"

    def bearer_token(self) -> str | None:
        """The current token (read from ``token_file`` when set)."""
        if self.token_file:
            return Path(self.token_file).read_text(encoding="utf-8").strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context trusting ``ca_data`` and presenting the client certificate, if any."""
        context = ssl.create_default_context(cadata=self.ca_data) if self.ca_data else ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert_data and self.client_key_data:
            _load_cert_chain(context, self.client_cert_data, self.client_key_data)
        return context


def _load_cert_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    """``ssl`` only loads certificates from files: write them to private temporary files."""
    with tempfile.TemporaryDirectory(prefix="kubetune-tls-") as directory:
        cert_path, key_path = Path(directory, "tls.crt"), Path(directory, "tls.key")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
        context.load_cert_chain(cert_path, key_path)


def in_cluster(environ: Mapping[str, str] | None = None, sa_dir: Path = SERVICE_ACCOUNT_DIR) -> ConnectionConfig:
    """The configuration of a pod: ``KUBERNETES_SERVICE_HOST/PORT`` and the service-account files.

    Args:
        environ: the environment (default: ``os.environ``).
        sa_dir: the service-account directory (token, ca.crt, namespace).

    Returns:
        The configuration, with the token read from its file on each use.

    Raises:
        ConfigError: not running in a pod.
    """
    env = os.environ if environ is None else environ
    host = env.get("KUBERNETES_SERVICE_HOST")
    token_file = sa_dir / "token"
    if not host or not token_file.is_file():
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST or the service-account token is missing")
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    ca_file = sa_dir / "ca.crt"
    namespace_file = sa_dir / "namespace"
    return ConnectionConfig(
        server=f"https://{host}:{port}",
        ca_data=ca_file.read_text(encoding="utf-8") if ca_file.is_file() else None,
        token_file=str(token_file),
        namespace=namespace_file.read_text(encoding="utf-8").strip() if namespace_file.is_file() else "default",
    )


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path) -> str | None:
    """A kubeconfig ``<key>-data`` (base64) or ``<key>`` (file path, relative to the kubeconfig)."""
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"]).decode()
    if entry.get(key):
        return (base / str(entry[key])).read_text(encoding="utf-8")
    return None


def _named(items: list[dict[str, Any]], name: str, what: str, path: Path) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(what) or {})
    raise ConfigError(f"{path}: no {what} named {name!r}")


def from_kubeconfig(path: Path, context: str | None = None) -> ConnectionConfig:
    """The configuration of one context of a kubeconfig file.

    Args:
        path: the kubeconfig.
        context: the context to use (default: ``current-context``).

    Returns:
        The configuration.

    Raises:
        ConfigError: the file, context, cluster or user is missing, or the user authenticates
            with an exec plugin or auth provider.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"cannot read kubeconfig {path}: {err}") from err
    name = context or document.get("current-context")
    if not name:
        raise ConfigError(f"{path}: no current-context")
    ctx = _named(document.get("contexts", []), name, "context", path)
    cluster = _named(document.get("clusters", []), ctx.get("cluster", ""), "cluster", path)
    user = _named(document.get("users", []), ctx.get("user", ""), "user", path) if ctx.get("user") else {}
    if user.get("exec") or user.get("auth-provider"):
        raise ConfigError(f"{path}: user {ctx.get('user')!r} uses an exec plugin or auth provider (not supported)")
    base = path.parent
    token_file = user.get("tokenFile")
    return ConnectionConfig(
        server=str(cluster["server"]).rstrip("/"),
        ca_data=_data_or_file(cluster, "certificate-authority", base),
        token=user.get("token"),
        token_file=str(base / token_file) if token_file else None,
        client_cert_data=_data_or_file(user, "client-certificate", base),
        client_key_data=_data_or_file(user, "client-key", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        namespace=ctx.get("namespace") or "default",
    )


def load(kubeconfig: str | None = None, context: str | None = None) -> ConnectionConfig:
    """Find the configuration the way kubectl does.

    Order: an explicit ``kubeconfig``, then ``$KUBECONFIG`` (its first file), then the pod's
    service account, then ``~/.kube/config``.

    Args:
        kubeconfig: a kubeconfig path given on the command line.
        context: the kubeconfig context to use.

    Returns:
        The configuration.

    Raises:
        ConfigError: nothing usable was found.
    """
    explicit = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if explicit:
        return from_kubeconfig(Path(explicit).expanduser(), context)
    try:
        return in_cluster()
    except ConfigError:
        pass
    default = Path("~/.kube/config").expanduser()
    if default.is_file():
        return from_kubeconfig(default, context)
    raise ConfigError("no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not running in a cluster")
