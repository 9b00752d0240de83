"""``python -m kubetune_trainer serve``: build a Triton model repository, serve it, smoke-test it.

Why this module exists: the ModelDeployment build Job, the smoke-test Job and a developer at a
laptop run the same steps; this is their command line over :mod:`~kubetune_trainer.serve.repository`,
:mod:`~kubetune_trainer.serve.server` and :mod:`~kubetune_trainer.serve.client`::

    python -m kubetune_trainer serve --repository R [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
    python -m kubetune_trainer serve build --model DIR --output R [--backend python] [--spec deployment.yaml]
    python -m kubetune_trainer serve engine-script --model DIR --output ENGINE [--spec deployment.yaml]
    python -m kubetune_trainer serve smoke --url grpc://host:8001 --model llm --prompt "Hi" [--max-tokens 16]
    python -m kubetune_trainer serve fetch --uri hf://org/name@rev --output DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer.cli import TrainerError
from kubetune_trainer.serve import client, engine, fetch, python_backend, repository

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the serve options and its ``build``, ``engine-script``, ``smoke`` and ``fetch`` sub-commands."""
    parser.add_argument("--repository", help="model repository to serve (runs tritonserver until interrupted)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 inside a pod)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port")
    parser.add_argument("--log-file", help="tritonserver log (default: a temporary file)")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for the models to load")
    sub = parser.add_subparsers(dest="serve_command", metavar="SUBCOMMAND")

    build = sub.add_parser("build", help="write a Triton model repository for a merged model")
    build.add_argument("--model", required=True, help="merged model directory (weights, tokenizer)")
    build.add_argument("--output", required=True, help="model repository to write")
    _add_spec_arguments(build)
    build.add_argument("--model-name", default=python_backend.DEFAULT_MODEL_NAME, help="entry model name")
    build.add_argument(
        "--weights",
        choices=("copy", "reference"),
        default="copy",
        help="python backend: copy the weights into the repository, or reference them in place",
    )
    build.add_argument(
        "--num-threads", type=int, default=0, help="python backend: torch threads (0: the CPUs it may use)"
    )
    build.add_argument("--engine-dir", help="tensorrtllm: engine directory as the Triton pod sees it")
    build.add_argument("--engine-source", help="tensorrtllm: built engine to place into the repository")

    script = sub.add_parser("engine-script", help="print the TensorRT-LLM engine build script")
    script.add_argument("--model", required=True, help="merged model directory, as the build pod sees it")
    script.add_argument("--output", required=True, help="engine directory to build")
    _add_spec_arguments(script)
    script.add_argument("--model-family", default="llama", choices=engine.MODEL_FAMILIES)
    script.add_argument("--int8-mode", default="weight_only", choices=engine.INT8_MODES)
    script.add_argument("--calib-dataset", help="calibration dataset (hub name or local directory)")

    smoke = sub.add_parser("smoke", help="send one prompt with tritonclient; fail unless the answer is non-empty")
    smoke.add_argument("--url", required=True, help="grpc://host:8001 or http://host:8000")
    smoke.add_argument("--model", default=python_backend.DEFAULT_MODEL_NAME, help="model name")
    smoke.add_argument("--prompt", default=v1alpha1.ServingSpec().rollout.smoke_test.prompt, help="prompt to send")
    smoke.add_argument("--max-tokens", type=int, default=16, help="tokens to generate")
    smoke.add_argument("--timeout", type=float, default=120.0, help="seconds for readiness and the answer")

    copy = sub.add_parser("fetch", help="copy an hf:// or s3:// model into a directory (skipped when complete)")
    copy.add_argument("--uri", required=True, help="hf://org/name[@revision] or s3://bucket/prefix")
    copy.add_argument("--output", required=True, help="directory to create")


def _add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that choose the serving settings."""
    parser.add_argument("--spec", help="YAML: a ModelDeployment, a FineTuneJob (its spec.deploy) or a bare spec")
    parser.add_argument("--backend", choices=[b.value for b in v1alpha1.Backend], help="override spec.backend")
    parser.add_argument(
        "--quantization", choices=[q.value for q in v1alpha1.Quantization], help="override spec.quantization"
    )


def load_serving_spec(path: str | Path | None, **overrides: Any) -> v1alpha1.ServingSpec:
    """Read serving settings from a YAML file (or defaults), then apply non-None overrides.

    Args:
        path: a ModelDeployment manifest, a FineTuneJob manifest (its ``spec.deploy``), a bare
            spec mapping, or None for the defaults.
        **overrides: top-level spec fields (snake_case), e.g. ``backend="python"``.

    Returns:
        The validated settings.

    Raises:
        TrainerError: unreadable file, or settings the API rejects.
    """
    import yaml
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    if path is not None:
        try:
            document = yaml.safe_load(Path(path).read_text("utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise TrainerError(f"cannot read {path}: {err}") from err
        if not isinstance(document, dict):
            raise TrainerError(f"{path} must hold a mapping")
        kind = document.get("kind")
        data = dict(document.get("spec") or {}) if kind else document
        if kind == "FineTuneJob":
            data = dict(data.get("deploy") or {})
        for key in ("model", "name"):
            data.pop(key, None)
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return v1alpha1.ServingSpec.model_validate(data)
    except ValidationError as err:
        raise TrainerError(f"invalid serving settings in {path or 'defaults'}:\n{err}") from err


def _spec_from_args(args: argparse.Namespace) -> v1alpha1.ServingSpec:
    """The serving settings named by ``--spec``, ``--backend`` and ``--quantization``."""
    return load_serving_spec(args.spec, backend=args.backend, quantization=args.quantization)


def _run_build(args: argparse.Namespace) -> int:
    """``serve build``: write the repository and print what was written."""
    spec = _spec_from_args(args)
    output = repository.build_repository(
        args.model,
        args.output,
        spec,
        model_name=args.model_name,
        weights=args.weights,
        engine_dir=args.engine_dir,
        engine_source=args.engine_source,
        num_threads=args.num_threads,
    )
    summary = {
        "repository": str(output),
        "backend": spec.backend.value,
        "model": args.model_name,
        "digest": repository.repository_digest(output),
    }
    print(json.dumps(summary))
    return 0


def _run_engine_script(args: argparse.Namespace) -> int:
    """``serve engine-script``: print the engine build script."""
    spec = _spec_from_args(args)
    if spec.backend is not v1alpha1.Backend.TENSORRTLLM:
        raise TrainerError("the python backend has no engine to build; use --backend tensorrtllm")
    try:
        script = engine.build_script(
            spec,
            args.model,
            args.output,
            model_family=args.model_family,
            int8_mode=args.int8_mode,
            calib_dataset=args.calib_dataset,
        )
    except ValueError as err:
        raise TrainerError(str(err)) from err
    sys.stdout.write(script)
    return 0


def _run_smoke(args: argparse.Namespace) -> int:
    """``serve smoke``: exit 0 with the answer printed, 1 with the reason."""
    try:
        answer = client.smoke(args.url, args.model, args.prompt, args.max_tokens, args.timeout)
    except client.InferenceError as err:
        print(f"smoke test failed: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"model": args.model, "prompt": args.prompt, "answer": answer}, ensure_ascii=False))
    return 0


def _run_server(args: argparse.Namespace) -> int:
    """``serve --repository R``: serve until SIGINT/SIGTERM; 1 if the server dies on its own."""
    from kubetune_trainer.serve import server

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server.start_server(
        args.repository,
        args.http_port,
        args.grpc_port,
        args.metrics_port,
        host=args.host,
        log_path=args.log_file,
        timeout=args.ready_timeout,
    ) as running:
        print(
            json.dumps(
                {
                    "http": running.http_url,
                    "grpc": running.grpc_url,
                    "metrics": running.metrics_url,
                    "log": str(running.log_path),
                }
            ),
            flush=True,
        )
        while not stop.wait(1.0):
            if running.process is None or running.process.poll() is not None:
                print(f"tritonserver exited\n{running.log_tail()}", file=sys.stderr)
                return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch ``serve`` and its sub-commands."""
    if args.serve_command == "build":
        return _run_build(args)
    if args.serve_command == "engine-script":
        return _run_engine_script(args)
    if args.serve_command == "smoke":
        return _run_smoke(args)
    if args.serve_command == "fetch":
        fetch.fetch(args.uri, args.output)
        return 0
    if not args.repository:
        raise TrainerError("pass --repository R to serve, or one of: build, engine-script, smoke, fetch")
    return _run_server(args)
