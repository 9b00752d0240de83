"""Clients of a served model: Triton's HTTP generate endpoint, tritonclient infer, and the smoke test.

Why this module exists: ``kubetune run --local``, the operator's smoke-test Job, the tests and the
benchmark all ask a served model for text. One module knows the tensor names (``text_input``,
``max_tokens`` -> ``text_output``, shared by both backends) and the URL forms, so callers pass a URL,
a model name and a prompt.

URLs: ``http://host:port`` (HTTP/REST) or ``grpc://host:port`` (gRPC); a bare ``host:port`` means HTTP
for :func:`generate` and the ``protocol`` argument for :func:`infer`. gRPC calls use a stream, which
serves decoupled models (the TensorRT-LLM ensemble) as well as ordinary ones; HTTP infer does not
support decoupled models, which is why the smoke test of a tensorrtllm deployment should use gRPC.
tritonclient is imported lazily: the operator imports this module's siblings without it.
"""

from __future__ import annotations

import json
import queue
import time
import urllib.error
import urllib.request
from typing import Any, Literal
from urllib.parse import urlsplit

from kubetune_trainer.cli import TrainerError

Protocol = Literal["http", "grpc"]


class InferenceError(TrainerError):
    """The server was unreachable, rejected the request, or answered nothing."""


def split_url(url: str, default: Protocol = "http") -> tuple[Protocol, str]:
    """Split ``scheme://host:port`` into the protocol and the ``host:port`` tritonclient wants.

    Raises:
        InferenceError: an unknown scheme or no port.
    """
    parts = urlsplit(url if "://" in url else f"{default}://{url}")
    if parts.scheme not in ("http", "grpc"):
        raise InferenceError(f"unsupported URL scheme {parts.scheme!r} in {url!r}: use http:// or grpc://")
    if not parts.hostname or parts.port is None:
        raise InferenceError(f"URL {url!r} needs a host and a port")
    return parts.scheme, parts.netloc  # type: ignore[return-value]


def generate(url: str, model: str, prompt: str, max_tokens: int = 16, *, timeout: float = 120.0) -> str:
    """Ask a model for text through Triton's generate extension (``POST /v2/models/<m>/generate``).

    Args:
        url: ``http://host:port`` of the server.
        model: model name.
        prompt: the user's message (the model applies its chat template).
        max_tokens: most tokens to generate.
        timeout: seconds for the whole request.

    Returns:
        The generated text.

    Raises:
        InferenceError: connection failure, an error answer, or no ``text_output`` in the answer.
    """
    protocol, address = split_url(url)
    if protocol != "http":
        raise InferenceError("the generate endpoint is HTTP only; pass an http:// URL")
    body = json.dumps({"text_input": prompt, "max_tokens": max_tokens}).encode("utf-8")
    request = urllib.request.Request(
        f"http://{address}/v2/models/{model}/generate",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", errors="replace")
        raise InferenceError(f"generate on {model} failed: HTTP {err.code}: {detail}") from err
    except (urllib.error.URLError, OSError) as err:
        raise InferenceError(f"cannot reach {url}: {err}") from err
    text = answer.get("text_output")
    if isinstance(text, list):
        text = "".join(str(part) for part in text)
    if text is None:
        raise InferenceError(f"generate on {model} answered without text_output: {answer}")
    return str(text)


def _inputs(module: Any, prompt: str, max_tokens: int) -> list[Any]:
    """The request tensors (batch of one) for tritonclient's http or grpc module."""
    import numpy as np

    text = module.InferInput("text_input", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[prompt.encode("utf-8")]], dtype=np.object_))
    tokens = module.InferInput("max_tokens", [1, 1], "INT32")
    tokens.set_data_from_numpy(np.array([[max_tokens]], dtype=np.int32))
    return [text, tokens]


def _decode(array: Any) -> str:
    """Join the strings of a ``text_output`` tensor."""
    if array is None:
        raise InferenceError("the answer has no text_output")
    return "".join(item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in array.reshape(-1))


def _infer_http(address: str, model: str, prompt: str, max_tokens: int, timeout: float) -> str:
    """One tritonclient HTTP infer call."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(address, connection_timeout=timeout, network_timeout=timeout)
    try:
        result = client.infer(model, _inputs(httpclient, prompt, max_tokens))
    except InferenceServerException as err:
        raise InferenceError(f"infer on {model} at {address} failed: {err.message()}") from err
    except OSError as err:
        raise InferenceError(f"infer on {model} at {address} failed: {err}") from err
    finally:
        client.close()
    return _decode(result.as_numpy("text_output"))


def _infer_grpc(address: str, model: str, prompt: str, max_tokens: int, timeout: float) -> str:
    """One tritonclient gRPC streaming call, gathering responses until the final one."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(address)
    parts: list[str] = []
    try:
        client.start_stream(callback=lambda result, error: answers.put((result, error)), stream_timeout=timeout)
        client.async_stream_infer(model, _inputs(grpcclient, prompt, max_tokens), enable_empty_final_response=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                result, error = answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty as err:
                raise InferenceError(f"no answer from {model} at {address} within {timeout:g}s") from err
            if error is not None:
                message = error.message() if isinstance(error, InferenceServerException) else str(error)
                raise InferenceError(f"infer on {model} at {address} failed: {message}")
            response = result.get_response()
            if result.as_numpy("text_output") is not None:
                parts.append(_decode(result.as_numpy("text_output")))
            final = response.parameters.get("triton_final_response")
            if final is None or final.bool_param:
                break
    except InferenceServerException as err:
        raise InferenceError(f"infer on {model} at {address} failed: {err.message()}") from err
    finally:
        client.stop_stream()
        client.close()
    return "".join(parts)


def infer(
    url: str, model: str, prompt: str, max_tokens: int = 16, *, protocol: Protocol = "http", timeout: float = 120.0
) -> str:
    """Ask a model for text with tritonclient (the KServe v2 infer API).

    Args:
        url: ``http://host:port``, ``grpc://host:port``, or ``host:port`` with ``protocol``.
        model: model name.
        prompt: the user's message.
        max_tokens: most tokens to generate.
        protocol: the protocol of a URL without scheme.
        timeout: seconds for the call.

    Returns:
        The generated text.

    Raises:
        InferenceError: connection failure, an error answer, or no ``text_output``.
    """
    scheme, address = split_url(url, protocol)
    if scheme == "grpc":
        return _infer_grpc(address, model, prompt, max_tokens, timeout)
    return _infer_http(address, model, prompt, max_tokens, timeout)


def wait_model_ready(url: str, model: str, timeout: float, *, protocol: Protocol = "http") -> None:
    """Wait until the server reports ``model`` ready.

    Raises:
        InferenceError: not ready within ``timeout``; the message says what was last seen.
    """
    scheme, address = split_url(url, protocol)
    if scheme == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    deadline = time.monotonic() + timeout
    last: str = "no answer yet"
    while True:
        client = module.InferenceServerClient(address)
        try:
            if client.is_model_ready(model):
                return
            last = f"server up, model {model!r} not ready"
        except Exception as err:  # any failure means "not yet"; reported below
            last = f"{type(err).__name__}: {err}"
        finally:
            client.close()
        if time.monotonic() >= deadline:
            raise InferenceError(f"model {model!r} at {url} not ready after {timeout:g}s; last: {last}")
        time.sleep(1.0)


def smoke(url: str, model: str, prompt: str, max_tokens: int = 16, timeout: float = 120.0) -> str:
    """The smoke test of a new revision: wait for the model, ask it once, demand a non-empty answer.

    Args:
        url: server URL (``grpc://`` for decoupled models such as the TensorRT-LLM ensemble).
        model: model name.
        prompt: prompt to send.
        max_tokens: tokens to generate.
        timeout: seconds for waiting and answering together.

    Returns:
        The answer.

    Raises:
        InferenceError: not ready, failed, or answered only whitespace.
    """
    start = time.monotonic()
    wait_model_ready(url, model, timeout)
    remaining = max(1.0, timeout - (time.monotonic() - start))
    answer = infer(url, model, prompt, max_tokens, timeout=remaining)
    if not answer.strip():
        raise InferenceError(f"model {model!r} at {url} answered an empty text to {prompt!r}")
    return answer
