from __future__ import annotations

import pytest
from kubetune_trainer.serve import client
from kubetune_trainer.serve.server import free_ports


@pytest.mark.parametrize(
    ("url", "default", "expected"),
    [
        ("http://127.0.0.1:8000", "grpc", ("http", "127.0.0.1:8000")),
        ("grpc://triton.ns.svc:8001", "http", ("grpc", "triton.ns.svc:8001")),
        ("localhost:9000", "http", ("http", "localhost:9000")),
        ("localhost:9001", "grpc", ("grpc", "localhost:9001")),
    ],
)
def test_split_url(url: str, default: client.Protocol, expected: tuple[str, str]) -> None:
    assert client.split_url(url, default) == expected


@pytest.mark.parametrize(("url", "message"), [("https://h:1", "unsupported URL scheme"), ("http://host", "port")])
def test_split_url_rejects(url: str, message: str) -> None:
    with pytest.raises(client.InferenceError, match=message):
        client.split_url(url)


def _dead_url() -> str:
    return f"127.0.0.1:{free_ports(1)[0]}"


def test_generate_reports_an_unreachable_server() -> None:
    with pytest.raises(client.InferenceError, match="cannot reach"):
        client.generate(f"http://{_dead_url()}", "llm", "hi", timeout=5)


def test_generate_is_http_only() -> None:
    with pytest.raises(client.InferenceError, match="HTTP only"):
        client.generate("grpc://127.0.0.1:8001", "llm", "hi")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_infer_reports_an_unreachable_server(protocol: client.Protocol) -> None:
    with pytest.raises(client.InferenceError, match=r"failed|no answer"):
        client.infer(_dead_url(), "llm", "hi", protocol=protocol, timeout=5)


def test_wait_model_ready_says_what_it_last_saw() -> None:
    with pytest.raises(client.InferenceError, match=r"not ready after 0\.5s; last: .*Error"):
        client.wait_model_ready(f"http://{_dead_url()}", "llm", timeout=0.5)
