"""Run a real Triton Inference Server on this machine, on CPU, from the ``nvidia-pytriton`` wheel.

Why this module exists: ``kubetune run --local``, the tests, the benchmarks and ``python -m
kubetune_trainer serve`` must serve a model repository exactly as a Triton pod would, without
Docker or a GPU. The ``nvidia-pytriton`` wheel ships a ``tritonserver`` binary (Triton 2.51) and the
Python backend; three things make it run here:

* the Python backend needs its stub process next to ``libtriton_python.so``, and the wheel keeps
  the stubs elsewhere (one per Python version). We assemble a private backend directory under
  ``~/.cache/kubetune/triton-backends/`` (symlinks into the wheel) instead of modifying
  site-packages, which may be read-only or shared;
* the binaries find their bundled libraries through ``LD_LIBRARY_PATH`` (``nvidia_pytriton.libs``);
* the stub embeds Debian's ``libpython3.11`` in *isolated* mode, so ``PYTHONPATH`` is ignored. It
  does resolve ``python3`` on ``PATH`` to find its prefix, so putting this virtualenv's ``bin``
  first on ``PATH`` makes the stub read the venv's ``pyvenv.cfg`` and import its packages (torch,
  transformers). This needs a venv made from the same Debian python3.11 the stub links.

:class:`TritonServer` runs the server in its own process group, writes its log to a file, waits
for ``/v2/health/ready`` and, on exit, stops the whole group (server and stubs): no orphans. If the
Python process is killed outright, Linux sends the server SIGTERM (parent-death signal; set when the
server is started from the main thread), and the stubs follow their server.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kubetune_trainer.cli import TrainerError

log = logging.getLogger(__name__)

#: Where private backend directories are assembled (override with KUBETUNE_CACHE_DIR).
CACHE_ENV = "KUBETUNE_CACHE_DIR"
_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
_STUB = "triton_python_backend_stub"
_LOG_TAIL_CHARS = 4000
_PR_SET_PDEATHSIG = 1
#: Triton's error lines look like ``E1124 13:40:40.602548 13121 model_lifecycle.cc:642] "failed to load ..."``.
_ERROR_LINE = re.compile(r"^E\d{4} |^error: ")
_ERROR_LINE_CHARS = 800


class ServerError(TrainerError):
    """tritonserver could not be found, did not start, or did not become ready."""


@dataclass(frozen=True)
class Installation:
    """The pieces of a runnable tritonserver."""

    binary: Path
    backend_dir: Path
    library_dirs: tuple[Path, ...]


def cache_dir() -> Path:
    """Cache directory of kubetune (``$KUBETUNE_CACHE_DIR`` or ``~/.cache/kubetune``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kubetune")


def _pytriton_root() -> Path:
    """The ``pytriton/tritonserver`` directory of the installed wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("tritonserver not found: install the serve extra (pip install 'kubetune[serve]')")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise ServerError(f"tritonserver not found under {root}")
    return root


def _assemble_backend_dir(root: Path, python_version: str) -> Path:
    """Build (once) a backend directory whose ``python/`` holds the backend library and the stub.

    The directory is keyed by the wheel's location and the Python version, built under a temporary
    name and renamed into place, so concurrent callers never see a half-built one.
    """
    stub = root / "python_backend_stubs" / python_version / _STUB
    if not stub.is_file():
        raise ServerError(f"the nvidia-pytriton wheel has no Python backend stub for Python {python_version}")
    key = hashlib.sha256(f"{root.resolve()}|{python_version}".encode()).hexdigest()[:12]
    target = cache_dir() / "triton-backends" / key
    if (target / "python" / _STUB).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        (staging / "python").mkdir()
        for name in _BACKEND_FILES:
            (staging / "python" / name).symlink_to(root / "backends" / "python" / name)
        (staging / "python" / _STUB).symlink_to(stub)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "python" / _STUB).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def find_installation() -> Installation:
    """Locate tritonserver and prepare its backend directory for this Python.

    Raises:
        ServerError: the wheel is missing or lacks a stub for this Python version.
    """
    root = _pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return Installation(
        binary=root / "bin" / "tritonserver",
        backend_dir=_assemble_backend_dir(root, version),
        library_dirs=(libs,) if libs.is_dir() else (),
    )


def server_environment(installation: Installation, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver: bundled libraries, and this interpreter's ``bin`` first on PATH.

    Args:
        installation: from :func:`find_installation`.
        base: the environment to extend (default: this process's).

    Returns:
        A new environment dict.
    """
    env = dict(os.environ if base is None else base)
    libraries = [str(path) for path in installation.library_dirs]
    if env.get("LD_LIBRARY_PATH"):
        libraries.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libraries)
    # Not resolved: the venv's bin/ (with pyvenv.cfg one level up) is what the stub must find.
    interpreter_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([interpreter_bin, env.get("PATH", "")])
    return env


def _die_with_parent() -> None:
    """In the forked child, before exec: ask Linux to SIGTERM it when its parent dies.

    Covers the one case ``stop()`` cannot: the Python process killed outright (SIGKILL, OOM).
    Linux ties this to the *thread* that forked, so :meth:`TritonServer.start` only asks for it
    from the main thread.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the OS reports free right now (all held open together, so they are distinct)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def _url_host(host: str) -> str:
    """The host to connect to for a bind address (a wildcard bind is reached on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


class TritonServer:
    """A tritonserver process serving one model repository.

    Use it as a context manager (``with start_server(repo) as server:``) or call :meth:`stop`.

    Attributes:
        repository: the model repository.
        http_port, grpc_port, metrics_port: the ports it listens on.
        log_path: the file its output goes to.
    """

    def __init__(
        self,
        repository: str | Path,
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        *,
        host: str = "127.0.0.1",
        log_path: str | Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise ServerError(f"model repository {self.repository} does not exist")
        picked = iter(free_ports(3, _url_host(host)))
        self.http_port = http_port or next(picked)
        self.grpc_port = grpc_port or next(picked)
        self.metrics_port = metrics_port or next(picked)
        self.host = host
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(handle)
            log_path = name
        self.log_path = Path(log_path)
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP/REST endpoint, e.g. ``http://127.0.0.1:8000``."""
        return f"http://{_url_host(self.host)}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """Address of the gRPC endpoint, e.g. ``127.0.0.1:8001``."""
        return f"{_url_host(self.host)}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics."""
        return f"http://{_url_host(self.host)}:{self.metrics_port}/metrics"

    def command(self, installation: Installation) -> list[str]:
        """The tritonserver command line."""
        return [
            str(installation.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={installation.backend_dir}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--disable-auto-complete-config",
            "--exit-timeout-secs=10",
            *self.extra_args,
        ]

    def start(self, timeout: float = 300.0) -> TritonServer:
        """Start tritonserver and wait until every model is loaded.

        Args:
            timeout: seconds to wait for ``/v2/health/ready``.

        Returns:
            self.

        Raises:
            ServerError: the server exited or did not become ready in time (it is stopped then);
                the message ends with the tail of its log.
        """
        if self.process is not None:
            raise ServerError("server already started")
        installation = find_installation()
        on_main_thread = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.command(installation),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=server_environment(installation),
                start_new_session=True,
                preexec_fn=_die_with_parent if on_main_thread and sys.platform == "linux" else None,
            )
        atexit.register(self.stop)
        log.info("tritonserver pid %d on %s (log %s)", self.process.pid, self.http_url, self.log_path)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        """Whether ``/v2/health/ready`` answers 200 (all models loaded)."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        """Poll readiness until ``timeout``; fail at once if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ServerError(f"tritonserver exited with code {code} before it was ready\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.5)
        raise ServerError(f"tritonserver not ready after {timeout:g}s\n{self.log_tail()}")

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        """The server's error lines (model load failures), then the end of its log."""
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""
        errors = [line[:_ERROR_LINE_CHARS] for line in text.splitlines() if _ERROR_LINE.match(line)]
        if not errors:
            return text[-chars:]
        return "errors:\n" + "\n".join(errors[-10:]) + f"\nlog tail:\n{text[-chars // 2 :]}"

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server and its stub processes (SIGTERM to the group, SIGKILL after ``timeout``)."""
        process, self.process = self.process, None
        atexit.unregister(self.stop)
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                log.warning("tritonserver pid %d did not stop after %s", process.pid, sig.name)
        # Stubs outlive the server for a moment; make sure none is left in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self) -> TritonServer:
        if self.process is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def start_server(
    repository: str | Path,
    http_port: int = 0,
    grpc_port: int = 0,
    metrics_port: int = 0,
    *,
    host: str = "127.0.0.1",
    log_path: str | Path | None = None,
    timeout: float = 300.0,
) -> TritonServer:
    """Start tritonserver on a model repository and wait until it is ready.

    Args:
        repository: the model repository.
        http_port: HTTP port (0: a free one).
        grpc_port: gRPC port (0: a free one).
        metrics_port: metrics port (0: a free one).
        host: address to bind (loopback by default).
        log_path: file for the server's output (default: a new temporary file).
        timeout: seconds to wait for readiness.

    Returns:
        The running server; use it as a context manager so it is always stopped.

    Raises:
        ServerError: tritonserver is missing, exited, or was not ready in time.
    """
    server = TritonServer(repository, http_port, grpc_port, metrics_port, host=host, log_path=log_path)
    return server.start(timeout)
