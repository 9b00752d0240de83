"""status: the patch body, the rate limit, and real PATCH requests to a local HTTP server."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer import status

from tests.support import specs

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
NOW_JSON = "2026-01-02T03:04:05Z"  # seconds precision: the status shows no microseconds
TARGET = v1alpha1.StatusTarget(name="chat-lora", namespace="team-a")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, None), (-1, None), (float("nan"), None), (0, "0s"), (45.4, "45s"), (725, "12m05s"),
     (3720, "1h02m"), (2 * 86400 + 3 * 3600 + 59, "2d03h")],
)  # fmt: skip
def test_format_eta(seconds: float | None, shown: str | None) -> None:
    assert status.format_eta(seconds) == shown


def test_build_progress_derives_percent_summary_and_eta() -> None:
    progress = status.build_progress(
        step=120,
        total_steps=500,
        epoch=0.72,
        loss=1.25,
        learning_rate=9e-5,
        tokens_per_second=5210.44,
        seconds_per_step=0.5,
        now=NOW,
    )
    assert progress.to_k8s() == {
        "step": 120,
        "totalSteps": 500,
        "epoch": 0.72,
        "loss": 1.25,
        "learningRate": 9e-5,
        "tokensPerSecond": 5210.4,
        "eta": "3m10s",
        "percent": 24,
        "summary": "120/500 (24%)",
        "updated": NOW_JSON,
    }


def test_build_progress_without_a_total_or_a_finite_loss() -> None:
    progress = status.build_progress(step=7, total_steps=None, loss=float("nan"), learning_rate=float("inf"), now=NOW)
    body = progress.to_k8s()
    assert body["summary"] == "7"
    assert "percent" not in body and "eta" not in body and "loss" not in body and "learningRate" not in body


def test_patch_body_is_a_merge_patch_of_the_status() -> None:
    progress = status.build_progress(step=1, total_steps=2, now=NOW)
    checkpoint = v1alpha1.CheckpointStatus(uri="pvc://artifacts/job/checkpoints/checkpoint-1", step=1)
    body = status.status_patch(progress=progress, checkpoint=checkpoint)
    assert body == {
        "status": {
            "progress": {"step": 1, "totalSteps": 2, "percent": 50, "summary": "1/2 (50%)", "updated": NOW_JSON},
            "checkpoint": {"uri": "pvc://artifacts/job/checkpoints/checkpoint-1", "step": 1},
        }
    }
    # The body validates as a FineTuneJob status: the API server would accept its fields.
    v1alpha1.FineTuneJobStatus.model_validate(body["status"])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_lets_one_call_through_per_interval() -> None:
    clock = FakeClock()
    limiter = status.RateLimiter(10, clock)
    assert limiter.ready()
    clock.now += 9.9
    assert not limiter.ready()
    assert limiter.ready(force=True)  # the final report always goes out, and restarts the interval
    clock.now += 5
    assert not limiter.ready()
    clock.now += 5
    assert limiter.ready()


class Recorder(BaseHTTPRequestHandler):
    """Records each request; answers with the next status code queued on the server (default 200)."""

    server: RecordingServer

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
        code = self.server.codes.pop(0) if self.server.codes else 200
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"kind": "Status", "message": "nope"}' if code >= 400 else b"{}")

    def log_message(self, *args: Any) -> None:
        pass


class RecordingServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Recorder)
        self.requests: list[dict[str, Any]] = []
        self.codes: list[int] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@pytest.fixture
def api_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def reporter_for(server: RecordingServer, tmp_path: Path, clock: FakeClock | None = None) -> status.StatusReporter:
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    api = status.ApiServer(base_url=server.url, token_path=str(token), ca_path=None)
    return status.StatusReporter(TARGET, api, min_interval=10, clock=clock or FakeClock())


def test_reporter_patches_the_status_subresource(api_server: RecordingServer, tmp_path: Path) -> None:
    reporter = reporter_for(api_server, tmp_path)
    progress = status.build_progress(step=3, total_steps=10, loss=2.5, now=NOW)
    assert reporter.report_progress(progress)
    [request] = api_server.requests
    assert request["path"] == "/apis/kubetune.dev/v1alpha1/namespaces/team-a/finetunejobs/chat-lora/status"
    assert request["headers"]["Content-Type"] == "application/merge-patch+json"
    assert request["headers"]["Authorization"] == "Bearer secret-token"
    assert request["body"] == status.status_patch(progress=progress)


def test_reporter_is_rate_limited_but_the_final_report_goes_out(api_server: RecordingServer, tmp_path: Path) -> None:
    clock = FakeClock()
    reporter = reporter_for(api_server, tmp_path, clock)
    for step in range(1, 6):
        reporter.report_progress(status.build_progress(step=step, total_steps=5, now=NOW))
        clock.now += 3
    assert [r["body"]["status"]["progress"]["step"] for r in api_server.requests] == [1, 5]
    reporter.report_progress(status.build_progress(step=5, total_steps=5, now=NOW), force=True)
    assert len(api_server.requests) == 3


def test_checkpoints_are_reported_immediately(api_server: RecordingServer, tmp_path: Path) -> None:
    reporter = reporter_for(api_server, tmp_path)
    reporter.report_progress(status.build_progress(step=1, total_steps=5, now=NOW))
    assert reporter.report_checkpoint(v1alpha1.CheckpointStatus(uri="pvc://a/checkpoints/checkpoint-1", step=1))
    checkpoint = {"uri": "pvc://a/checkpoints/checkpoint-1", "step": 1}
    assert api_server.requests[-1]["body"] == {"status": {"checkpoint": checkpoint}}


def test_a_rejected_patch_is_logged_not_raised(
    api_server: RecordingServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api_server.codes.append(403)
    reporter = reporter_for(api_server, tmp_path)
    assert not reporter.report_progress(status.build_progress(step=1, total_steps=5, now=NOW))
    assert reporter.failures == 1
    assert "HTTP 403" in caplog.text and "team-a/chat-lora" in caplog.text


def test_an_unreachable_server_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    port = server.server_address[1]
    server.server_close()  # nothing listens on the port any more
    api = status.ApiServer(base_url=f"http://127.0.0.1:{port}", token_path=None, ca_path=None)
    reporter = status.StatusReporter(TARGET, api, timeout=2)
    assert not reporter.report_progress(status.build_progress(step=1, total_steps=5, now=NOW))
    assert reporter.failures == 1 and "could not report status" in caplog.text


def test_a_missing_token_file_is_logged_not_raised(api_server: RecordingServer, tmp_path: Path) -> None:
    api = status.ApiServer(base_url=api_server.url, token_path=str(tmp_path / "absent"), ca_path=None)
    reporter = status.StatusReporter(TARGET, api)
    assert not reporter.report_progress(status.build_progress(step=1, total_steps=5, now=NOW))
    assert reporter.failures == 1 and not api_server.requests


def test_in_cluster_server_from_the_pod_environment(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert status.ApiServer.in_cluster(env, account_dir=str(tmp_path)) is None  # no token: not in a pod
    (tmp_path / "token").write_text("t\n")
    server = status.ApiServer.in_cluster(env, account_dir=str(tmp_path))
    assert server == status.ApiServer("https://10.96.0.1:6443", str(tmp_path / "token"), str(tmp_path / "ca.crt"))
    assert server.bearer_token() == "t"
    assert status.ApiServer.in_cluster({}, account_dir=str(tmp_path)) is None
    ipv6 = status.ApiServer.in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1"}, account_dir=str(tmp_path))
    assert ipv6 is not None and ipv6.base_url == "https://[fd00::1]:443"


def test_make_reporter_needs_a_target_and_a_server(tmp_path: Path) -> None:
    paths = {"dataset": "d", "baseModel": "m", "workDir": str(tmp_path)}
    without = v1alpha1.TrainerConfig.model_validate({"spec": specs.job(), "paths": paths})
    api = status.ApiServer(base_url="http://127.0.0.1:1", token_path=None, ca_path=None)
    assert status.make_reporter(without, api) is None
    with_target = without.model_copy(update={"status_target": TARGET})
    reporter = status.make_reporter(with_target, api, min_interval=3)
    assert reporter is not None and reporter.target == TARGET


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RecordingServer, Path]]:
    """The recording server behind TLS, with a self-signed certificate for 127.0.0.1 (made by openssl)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate")
    cert, key = tmp_path / "ca.crt", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = RecordingServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, cert
    server.shutdown()
    server.server_close()


def test_reporter_verifies_the_api_server_with_the_ca_file(tls_server: tuple[RecordingServer, Path]) -> None:
    server, cert = tls_server
    url = server.url.replace("http://", "https://")
    trusted = status.StatusReporter(TARGET, status.ApiServer(url, token_path=None, ca_path=str(cert)))
    assert trusted.report_progress(status.build_progress(step=1, total_steps=2, now=NOW))
    assert len(server.requests) == 1

    untrusted = status.StatusReporter(TARGET, status.ApiServer(url, token_path=None, ca_path=None))
    assert not untrusted.report_progress(status.build_progress(step=2, total_steps=2, now=NOW))
    assert untrusted.failures == 1 and len(server.requests) == 1


def test_an_explicit_api_server_in_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    env = {
        "KUBETUNE_API_URL": "https://127.0.0.1:6443",
        "KUBETUNE_API_TOKEN_FILE": str(tmp_path / "token"),
        "KUBETUNE_API_CA_FILE": str(tmp_path / "ca.crt"),
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    }
    server = status.ApiServer.from_environment(env)
    assert server == status.ApiServer("https://127.0.0.1:6443", str(tmp_path / "token"), str(tmp_path / "ca.crt"))
    assert status.ApiServer.from_environment({}) is None or Path(status.SERVICE_ACCOUNT_DIR, "token").exists()
