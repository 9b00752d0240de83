from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from kubetune_trainer.serve import server


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(server.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_installation_assembles_a_private_backend_dir(cache: Path) -> None:
    installation = server.find_installation()
    assert installation.binary.is_file() and os.access(installation.binary, os.X_OK)
    python = installation.backend_dir / "python"
    assert installation.backend_dir.parent == cache / "triton-backends"
    for name in ("libtriton_python.so", "triton_python_backend_utils.py", "triton_python_backend_stub"):
        assert (python / name).exists(), name
    stub = (python / "triton_python_backend_stub").resolve()
    assert stub.parent.name == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert server.find_installation().backend_dir == installation.backend_dir  # built once, then reused


def test_a_python_without_stub_is_reported(cache: Path) -> None:
    root = server._pytriton_root()
    with pytest.raises(server.ServerError, match=r"no Python backend stub for Python 2\.7"):
        server._assemble_backend_dir(root, "2.7")


def test_environment_puts_this_interpreter_first_and_the_bundled_libraries(cache: Path) -> None:
    installation = server.find_installation()
    env = server.server_environment(installation, {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"})
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    libraries = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert libraries[-1] == "/opt/lib"
    assert any(Path(p).name == "nvidia_pytriton.libs" for p in libraries)


def test_free_ports_are_distinct() -> None:
    ports = server.free_ports(5)
    assert len(set(ports)) == 5 and all(p > 0 for p in ports)


def test_server_needs_an_existing_repository(tmp_path: Path) -> None:
    with pytest.raises(server.ServerError, match="does not exist"):
        server.TritonServer(tmp_path / "missing")


def test_command_line_binds_the_given_address_and_ports(tmp_path: Path, cache: Path) -> None:
    triton = server.TritonServer(tmp_path, 18000, 18001, 18002, host="0.0.0.0", log_path=tmp_path / "log")
    argv = triton.command(server.find_installation())
    assert f"--model-repository={tmp_path.resolve()}" in argv
    assert {"--http-port=18000", "--grpc-port=18001", "--metrics-port=18002", "--http-address=0.0.0.0"} <= set(argv)
    assert triton.http_url == "http://127.0.0.1:18000"  # a wildcard bind is reached on loopback
    assert triton.grpc_url == "127.0.0.1:18001"
    assert triton.metrics_url == "http://127.0.0.1:18002/metrics"


def test_stopping_a_server_that_never_started_is_harmless(tmp_path: Path) -> None:
    triton = server.TritonServer(tmp_path, log_path=tmp_path / "log")
    triton.stop()
    assert triton.log_tail() == ""
