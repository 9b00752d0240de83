"""``kubetune run -f FILE --local``: run a FineTuneJob manifest on this machine, for real.

An ML engineer should be able to try a FineTuneJob before it spends GPU hours, and a newcomer
should see the whole product work on a laptop. This module runs the very steps the pods run -
``python -m kubetune_trainer prepare``, ``train``, ``evaluate``, ``export`` and ``serve`` -
through the same entry points and the same :class:`~kubetune.api.v1alpha1.TrainerConfig` the
operator writes; nothing is reimplemented here. It only resolves what a cluster would resolve
(``pvc://`` claims become directories under ``--pvc-root``), then serves the exported model with a
real local tritonserver (Triton's Python backend, since there is no GPU) and sends the deployment's
smoke-test prompt.

Output: a summary a person can read - data report, loss curve, metrics, artifact, endpoint and
the answer of the served model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from kubetune.api import v1alpha1

#: ``--base-model tiny``: build a tiny Llama-style model instead of loading one.
TINY_BASE_MODEL = "tiny"
#: Where runs go by default, relative to the current directory.
DEFAULT_WORKDIR_ROOT = Path(".kubetune") / "runs"

#: Name of the model in the local Triton repository (the python backend's default).
MODEL_NAME = "llm"

_SPARK = "▁▂▃▄▅▆▇█"


class LocalRunError(Exception):
    """Bad input for a local run (invalid manifest, missing file); exit code 2."""


@dataclass
class LocalRun:
    """One local run: the validated job and where everything lives."""

    job: v1alpha1.FineTuneJob
    manifest_path: Path
    workdir: Path
    pvc_root: Path
    base_model: str
    max_steps: int | None = None
    serve: bool = True
    prompt: str | None = None
    resume: bool = False
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The FineTuneJob's name."""
        return str(self.job.metadata.get("name", "local"))

    @property
    def config_path(self) -> Path:
        """The trainer config this run writes, as the operator writes the ConfigMap."""
        return self.workdir / "config.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``kubetune run``."""
    parser.add_argument("-f", "--filename", required=True, type=Path, help="FineTuneJob manifest (YAML)")
    parser.add_argument("--local", action="store_true", required=True, help="run on this machine (required)")
    parser.add_argument("--max-steps", type=int, help="stop training after N optimizer steps (a quick try)")
    parser.add_argument(
        "--base-model",
        help=f"local checkpoint directory to start from, or '{TINY_BASE_MODEL}' for a tiny model built on the spot",
    )
    parser.add_argument("--workdir", type=Path, help="where outputs go (default: .kubetune/runs/<name>)")
    parser.add_argument(
        "--pvc-root",
        type=Path,
        help="directory standing in for PersistentVolumeClaims: pvc://CLAIM/PATH is read from "
        "PVC_ROOT/CLAIM/PATH (default: <manifest directory>/pvc)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue training from the latest complete checkpoint in the workdir (e.g. after Ctrl-C); "
        "default: train from scratch",
    )
    parser.add_argument("--no-serve", action="store_true", help="stop after export (no Triton server)")
    parser.add_argument("--prompt", help="prompt for the served model (default: spec.deploy's smoke-test prompt)")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``kubetune run --local``: validate, run every step, print the summary."""
    try:
        local = plan(
            args.filename,
            base_model=args.base_model,
            workdir=args.workdir,
            pvc_root=args.pvc_root,
            max_steps=args.max_steps,
            serve=not args.no_serve,
            prompt=args.prompt,
            resume=args.resume,
        )
    except LocalRunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    code = execute(local)
    print(render_summary(local))
    return code


def load_manifest(path: Path) -> v1alpha1.FineTuneJob:
    """Read and validate a FineTuneJob manifest the way admission would (schema and CEL rules).

    Args:
        path: a YAML file holding one FineTuneJob (other documents are ignored).

    Returns:
        The validated job with defaults filled in.

    Raises:
        LocalRunError: the file is missing, holds no FineTuneJob, or the job is invalid; the
            message names the offending field (e.g. ``spec.lora.r``).
    """
    if not path.is_file():
        raise LocalRunError(f"manifest not found: {path}")
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except yaml.YAMLError as err:
        raise LocalRunError(f"{path} is not valid YAML: {err}") from err
    jobs = [d for d in documents if isinstance(d, dict) and d.get("kind") == "FineTuneJob"]
    if not jobs:
        raise LocalRunError(f"{path} holds no FineTuneJob")
    try:
        return v1alpha1.FineTuneJob.model_validate(jobs[0], context={"cel": True})
    except pydantic.ValidationError as err:
        raise LocalRunError(f"invalid FineTuneJob in {path}: {v1alpha1.describe_errors(err)}") from err


def resolve_location(uri: str, pvc_root: Path, field_name: str) -> str:
    """Map a spec URI to what this machine can read: pvc:// to a directory, others unchanged.

    Args:
        uri: the URI from the spec.
        pvc_root: the directory standing in for PersistentVolumeClaims.
        field_name: the spec field, for the error message.

    Returns:
        A local path (pvc://) or the URI itself (s3://, hf://, read through fsspec / the hub).

    Raises:
        LocalRunError: a pvc:// path that does not exist here.
    """
    parsed = v1alpha1.parse_uri(uri)
    if parsed.scheme != "pvc":
        return uri
    local = Path(parsed.local_path(str(pvc_root)))
    if not local.exists():
        raise LocalRunError(f"{field_name} {uri} was looked for at {local}, which does not exist (see --pvc-root)")
    return str(local)


def plan(
    manifest_path: Path,
    *,
    base_model: str | None = None,
    workdir: Path | None = None,
    pvc_root: Path | None = None,
    max_steps: int | None = None,
    serve: bool = True,
    prompt: str | None = None,
    resume: bool = False,
) -> LocalRun:
    """Validate the manifest and resolve every location, before anything runs.

    Args:
        manifest_path: the FineTuneJob manifest.
        base_model: a local checkpoint, ``tiny``, or None for the spec's base model.
        workdir: the output directory (default ``.kubetune/runs/<name>``).
        pvc_root: the directory standing in for PVCs (default ``<manifest dir>/pvc``).
        max_steps: cap on optimizer steps.
        serve: serve the exported model with a local tritonserver.
        prompt: prompt for the served model.
        resume: continue from the workdir's latest complete checkpoint instead of starting over.

    Returns:
        The planned run.

    Raises:
        LocalRunError: anything a user must fix first.
    """
    job = load_manifest(manifest_path)
    pvc_root = pvc_root or manifest_path.resolve().parent / "pvc"
    resolve_location(job.spec.dataset.uri, pvc_root, "spec.dataset.uri")
    if base_model and base_model != TINY_BASE_MODEL and not Path(base_model).is_dir():
        raise LocalRunError(f"--base-model {base_model} is not a directory")
    if not base_model and job.spec.base_model.fine_tune_job_ref is not None:
        raise LocalRunError("spec.baseModel.fineTuneJobRef needs a cluster; pass --base-model PATH locally")
    name = str(job.metadata.get("name", "local"))
    local = LocalRun(
        job=job,
        manifest_path=manifest_path,
        workdir=(workdir or DEFAULT_WORKDIR_ROOT / name).resolve(),
        pvc_root=pvc_root,
        base_model=base_model or str(job.spec.base_model.uri),
        max_steps=max_steps,
        serve=serve,
        prompt=prompt,
        resume=resume,
    )
    if base_model and base_model != TINY_BASE_MODEL:
        local.base_model = str(Path(base_model).resolve())
    return local


def trainer_config(local: LocalRun, base_model_path: str) -> v1alpha1.TrainerConfig:
    """The config the pods would get, with this machine's paths."""
    return v1alpha1.TrainerConfig(
        spec=local.job.spec,
        paths=v1alpha1.TrainerPaths(
            dataset=resolve_location(local.job.spec.dataset.uri, local.pvc_root, "spec.dataset.uri"),
            base_model=base_model_path,
            work_dir=str(local.workdir),
        ),
        max_steps=local.max_steps,
    )


def execute(local: LocalRun) -> int:
    """Run prepare, train, evaluate, export and serve; stop at the first failing step.

    Args:
        local: the planned run; its ``summary`` is filled as the steps finish.

    Returns:
        0 when every step succeeded, else the failing step's exit code.
    """
    from kubetune_trainer.cli import main as trainer_main
    from kubetune_trainer.config import save_config

    local.workdir.mkdir(parents=True, exist_ok=True)
    base_model = _base_model(local)
    save_config(trainer_config(local, base_model), local.config_path)
    # A rerun prepares the data again: resuming an older run's checkpoints only when asked.
    resume = "auto" if local.resume else "none"
    steps: list[tuple[str, Callable[[], int]]] = [
        ("prepare", lambda: trainer_main(["prepare", "--config", str(local.config_path)])),
        ("train", lambda: trainer_main(["train", "--config", str(local.config_path), "--resume", resume])),
        ("evaluate", lambda: trainer_main(["evaluate", "--config", str(local.config_path)])),
        ("export", lambda: trainer_main(["export", "--config", str(local.config_path)])),
    ]
    if local.serve:
        steps.append(("serve", lambda: _serve(local)))
    for step, action in steps:
        _banner(step)
        code = action()
        _collect(local)
        if code != 0:
            local.summary["failed"] = f"step {step} exited with {code}"
            return code
    return 0


def _banner(step: str) -> None:
    print(f"\n=== kubetune run --local: {step} ===", file=sys.stderr, flush=True)


def _base_model(local: LocalRun) -> str:
    """The base model directory: as given, a tiny model built now, or the spec's URI."""
    if local.base_model != TINY_BASE_MODEL:
        return local.base_model
    from kubetune_trainer.tiny import build_tiny_model

    target = local.workdir / "base-model"
    if not (target / "config.json").is_file():
        corpus = _corpus(Path(resolve_location(local.job.spec.dataset.uri, local.pvc_root, "spec.dataset.uri")))
        build_tiny_model(target, corpus)
    local.summary["baseModel"] = f"tiny Llama-style model built by kubetune for this run ({target})"
    return str(target)


def _corpus(dataset: Path, limit: int = 2000) -> list[str]:
    """Text to train the tiny model's tokenizer on: the dataset's own strings."""
    texts: list[str] = []
    with dataset.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if len(texts) >= limit:
                break
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                texts.extend(v for v in record.values() if isinstance(v, str))
    return texts


def _serve(local: LocalRun) -> int:
    """Build a python-backend Triton repository from the export, serve it, send the prompt."""
    from kubetune_trainer.cli import main as trainer_main
    from kubetune_trainer.serve import client, server

    model_dir = local.workdir / "model" / "merged"
    if not model_dir.is_dir():
        local.summary["serve"] = "skipped: the export has no merged model (set spec.output.mergeAdapter)"
        return 0
    deploy = local.job.spec.deploy or v1alpha1.DeployTemplate()
    spec_file = local.workdir / "serving.json"
    serving = deploy.model_copy(update={"backend": v1alpha1.Backend.PYTHON, "quantization": v1alpha1.Quantization.FP16})
    spec_file.write_text(json.dumps(serving.to_k8s()), encoding="utf-8")
    repository = local.workdir / "triton"
    code = trainer_main(
        ["serve", "build", "--model", str(model_dir), "--output", str(repository), "--spec", str(spec_file)]
    )
    if code != 0:
        return code
    prompt = local.prompt or deploy.rollout.smoke_test.prompt
    max_tokens = deploy.rollout.smoke_test.max_tokens
    with server.start_server(repository, log_path=local.workdir / "tritonserver.log") as triton:
        answer = client.generate(triton.http_url, MODEL_NAME, prompt, max_tokens=max_tokens)
        local.summary["serve"] = {
            "endpoint": triton.http_url,
            "grpc": triton.grpc_url,
            "model": MODEL_NAME,
            "prompt": prompt,
            "answer": answer,
        }
    return 0 if answer.strip() else 1


def _collect(local: LocalRun) -> None:
    """Read the reports the steps wrote into the summary."""
    reports = local.workdir / "reports"
    for key, name in (
        ("data", "report.json"),
        ("training", "training.json"),
        ("metrics", "metrics.json"),
        ("artifact", "artifact.json"),
    ):
        path = reports / name
        if path.is_file():
            local.summary[key] = json.loads(path.read_text(encoding="utf-8"))


def sparkline(values: Sequence[float]) -> str:
    """A one-line chart of a series, e.g. the training loss."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(_SPARK[min(len(_SPARK) - 1, int((v - low) / span * (len(_SPARK) - 1) + 0.5))] for v in values)


def render_summary(local: LocalRun) -> str:
    """The human-readable result of a local run."""
    summary = local.summary
    lines = [f"\nFineTuneJob {local.name} ({local.job.spec.method.value}), run locally in {local.workdir}"]
    if "baseModel" in summary:
        lines.append(f"  base model: {summary['baseModel']}")
    lines += _data_lines(summary.get("data"))
    lines += _training_lines(summary.get("training"))
    lines += _metric_lines(summary.get("metrics"))
    artifact = summary.get("artifact")
    if artifact:
        lines.append(f"  artifact:   {local.workdir / 'model'}  (digest {artifact.get('digest')})")
    serve = summary.get("serve")
    if isinstance(serve, dict):
        lines.append(f"  endpoint:   {serve['endpoint']}/v2/models/{serve['model']}/generate (stopped after the test)")
        lines.append(f"  prompt:     {serve['prompt']}")
        lines.append(f"  answer:     {serve['answer']!r}")
    elif serve:
        lines.append(f"  serving:    {serve}")
    if "failed" in summary:
        lines.append(f"  FAILED:     {summary['failed']}")
    return "\n".join(lines)


def _data_lines(report: dict[str, Any] | None) -> list[str]:
    if not report:
        return []
    lines = [
        f"  data:       {report.get('recordsIn')} records in, {report.get('recordsOut')} kept "
        f"({report.get('trainRecords')} train / {report.get('validationRecords')} validation)"
    ]
    if report.get("dropped"):
        lines.append("  dropped:    " + ", ".join(f"{k} {v}" for k, v in sorted(report["dropped"].items())))
    if report.get("redactions"):
        lines.append("  PII:        " + ", ".join(f"{k} {v}" for k, v in sorted(report["redactions"].items())))
    if report.get("intentsAfter"):
        lines.append("  intents:    " + ", ".join(f"{k} {v}" for k, v in sorted(report["intentsAfter"].items())))
    return lines


def _training_lines(training: dict[str, Any] | None) -> list[str]:
    if not training:
        return []
    losses = [float(loss) for _, loss in training.get("losses", [])]
    line = f"  training:   {training.get('step')}/{training.get('totalSteps')} steps"
    if losses:
        line += f", loss {losses[0]:.3f} -> {losses[-1]:.3f}  {sparkline(losses)}"
    return [line]


def _metric_lines(metrics: dict[str, Any] | None) -> list[str]:
    if not metrics:
        return []
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, int | float))
    return [f"  metrics:    {shown}"]
