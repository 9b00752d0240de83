from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.cli import TrainerError, main
from kubetune_trainer.serve import engine
from kubetune_trainer.serve.command import load_serving_spec
from kubetune_trainer.serve.server import free_ports

MODEL_DEPLOYMENT = """
apiVersion: kubetune.dev/v1alpha1
kind: ModelDeployment
metadata: {name: support-bot}
spec:
  model: {fineTuneJobRef: {name: support-bot}}
  backend: tensorrtllm
  quantization: int8
  engine: {maxBatchSize: 16, maxInputLen: 1024}
  resources: {gpus: 1}
"""

FINE_TUNE_JOB = """
apiVersion: kubetune.dev/v1alpha1
kind: FineTuneJob
metadata: {name: support-bot}
spec:
  deploy: {name: bot, backend: python, engine: {maxBatchSize: 2, dynamicBatching: false}}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_spec_from_a_model_deployment(tmp_path: Path) -> None:
    spec = load_serving_spec(_write(tmp_path, MODEL_DEPLOYMENT))
    assert spec.backend is v1alpha1.Backend.TENSORRTLLM
    assert spec.quantization is v1alpha1.Quantization.INT8
    assert spec.engine.max_batch_size == 16 and spec.engine.max_input_len == 1024


def test_spec_from_a_fine_tune_jobs_deploy_section(tmp_path: Path) -> None:
    spec = load_serving_spec(_write(tmp_path, FINE_TUNE_JOB))
    assert spec.backend is v1alpha1.Backend.PYTHON
    assert spec.engine.max_batch_size == 2 and spec.engine.dynamic_batching is False


def test_spec_from_a_bare_mapping_with_overrides(tmp_path: Path) -> None:
    spec = load_serving_spec(_write(tmp_path, "engine: {maxOutputLen: 7}\n"), backend="python", quantization=None)
    assert spec.backend is v1alpha1.Backend.PYTHON and spec.engine.max_output_len == 7


def test_defaults_without_a_file() -> None:
    assert load_serving_spec(None) == v1alpha1.ServingSpec()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("engine: {maxBatchSize: 0}\n", "invalid serving settings"),
        ("- a list\n", "must hold a mapping"),
        ("engine: [unclosed\n", "cannot read"),
    ],
)
def test_bad_spec_files_are_reported(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TrainerError, match=message):
        load_serving_spec(_write(tmp_path, text))


def test_missing_spec_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="cannot read"):
        load_serving_spec(tmp_path / "absent.yaml")


def test_serve_without_repository_or_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
    assert "pass --repository" in capsys.readouterr().err


def test_serve_missing_repository_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--repository", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_engine_script_prints_the_build_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = _write(tmp_path, MODEL_DEPLOYMENT)
    argv = ["serve", "engine-script", "--model", "/m", "--output", "/e", "--spec", str(spec_file)]
    assert main([*argv, "--int8-mode", "smoothquant"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [shlex.split(line) for line in out if line.startswith(("python3", "trtllm"))]
    expected = engine.engine_build_commands(load_serving_spec(spec_file), "/m", "/e", int8_mode="smoothquant")
    assert lines == expected


def test_engine_script_for_the_python_backend_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "engine-script", "--model", "/m", "--output", "/e", "--backend", "python"]) == 2
    assert "no engine to build" in capsys.readouterr().err


def test_build_writes_a_repository_and_prints_its_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kubetune_trainer.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "model", vocab_size=300, hidden_size=32)
    argv = ["serve", "build", "--model", str(model), "--output", str(tmp_path / "repo"), "--backend", "python"]
    assert main([*argv, "--weights", "reference", "--model-name", "bot", "--num-threads", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])  # (DeepSpeed may log to stdout first)
    assert summary["model"] == "bot" and summary["backend"] == "python"
    assert summary["digest"].startswith("sha256:")
    config = (tmp_path / "repo" / "bot" / "config.pbtxt").read_text()
    assert 'key: "num_threads"\n  value { string_value: "2" }' in config


def test_build_of_a_non_model_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "build", "--model", str(tmp_path), "--output", str(tmp_path / "r")]) == 2
    assert "not a model directory" in capsys.readouterr().err


def test_smoke_against_nothing_fails_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    assert main(["serve", "smoke", "--url", url, "--model", "llm", "--timeout", "1"]) == 1
    assert "smoke test failed: model 'llm'" in capsys.readouterr().err
