"""Finding the API server and credentials: kubeconfig files and the in-cluster service account."""

from __future__ import annotations

import base64
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune.kube import config


def write_kubeconfig(path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None, **extra: Any) -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443/", **(cluster or {})}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "team"}}],
        "current-context": "ctx",
        **extra,
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed CA and a client certificate/key made with openssl."""
    directory = tmp_path_factory.mktemp("pki")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=test", "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return {"cert": (directory / "cert.pem").read_text(), "key": (directory / "key.pem").read_text()}


def test_token_and_ca_data(tmp_path: Path, pki: dict[str, str]) -> None:
    ca = base64.b64encode(pki["cert"].encode()).decode()
    path = write_kubeconfig(tmp_path / "kc", {"token": "abc"}, {"certificate-authority-data": ca})
    loaded = config.from_kubeconfig(path)
    assert loaded.server == "https://10.0.0.1:6443"
    assert loaded.bearer_token() == "abc"
    assert loaded.ca_data == pki["cert"]
    assert loaded.namespace == "team"
    assert isinstance(loaded.ssl_context(), ssl.SSLContext)


def test_files_relative_to_the_kubeconfig_and_client_certificates(tmp_path: Path, pki: dict[str, str]) -> None:
    (tmp_path / "ca.crt").write_text(pki["cert"])
    (tmp_path / "tls.crt").write_text(pki["cert"])
    (tmp_path / "tls.key").write_text(pki["key"])
    (tmp_path / "token").write_text("from-file\n")
    user = {"client-certificate": "tls.crt", "client-key": "tls.key", "tokenFile": "token"}
    loaded = config.from_kubeconfig(write_kubeconfig(tmp_path / "kc", user, {"certificate-authority": "ca.crt"}))
    assert loaded.client_cert_data == pki["cert"] and loaded.client_key_data == pki["key"]
    assert loaded.bearer_token() == "from-file"
    loaded.ssl_context()  # loads the client certificate through private temporary files


def test_insecure_and_explicit_context(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", {"token": "t"}, {"insecure-skip-tls-verify": True})
    loaded = config.from_kubeconfig(path, context="ctx")
    assert loaded.insecure and loaded.ssl_context().verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("user", "extra", "message"),
    [
        ({"exec": {"command": "aws"}}, {}, "exec plugin"),
        ({"auth-provider": {"name": "gcp"}}, {}, "exec plugin or auth provider"),
        ({"token": "t"}, {"current-context": "other"}, "no context named 'other'"),
        ({"token": "t"}, {"current-context": ""}, "no current-context"),
    ],
)
def test_unusable_kubeconfigs(tmp_path: Path, user: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    path = write_kubeconfig(tmp_path / "kc", user, **extra)
    with pytest.raises(config.ConfigError, match=message):
        config.from_kubeconfig(path)


def test_missing_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read kubeconfig"):
        config.from_kubeconfig(tmp_path / "absent")


def test_in_cluster(tmp_path: Path, pki: dict[str, str]) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_text(pki["cert"])
    (tmp_path / "namespace").write_text("kubetune-system\n")
    loaded = config.in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}, tmp_path)
    assert loaded.server == "https://[fd00::1]:443"
    assert loaded.bearer_token() == "sa-token"
    assert loaded.namespace == "kubetune-system"
    with pytest.raises(config.ConfigError, match="not in a cluster"):
        config.in_cluster({}, tmp_path)


def test_load_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write_kubeconfig(tmp_path / "explicit", {"token": "explicit"})
    env = write_kubeconfig(tmp_path / "env", {"token": "env"})
    monkeypatch.setenv("KUBECONFIG", f"{env}:{tmp_path / 'second'}")
    assert config.load(str(explicit)).token == "explicit"
    assert config.load().token == "env"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(config.ConfigError, match="no kubeconfig"):
        config.load()
    (tmp_path / ".kube").mkdir()
    write_kubeconfig(tmp_path / ".kube" / "config", {"token": "home"})
    assert config.load().token == "home"
