from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.serve import pbtxt, repository


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kubetune_trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", vocab_size=300, hidden_size=32)


def _spec(backend: str = "python", **engine: object) -> v1alpha1.ServingSpec:
    return v1alpha1.ServingSpec.model_validate({"backend": backend, "engine": engine, "resources": {"gpus": 1}})


def test_python_repository_copies_the_weights_into_the_version_dir(model_dir: Path, tmp_path: Path) -> None:
    root = repository.build_repository(model_dir, tmp_path / "repo", _spec(maxBatchSize=3))
    weights = root / "llm" / "1" / "model"
    assert sorted(p.name for p in weights.iterdir()) == sorted(p.name for p in model_dir.iterdir())
    config = pbtxt.validate_config((root / "llm" / "config.pbtxt").read_text())
    assert config.max_batch_size == 3 and config.parameters["model_dir"].string_value == "model"
    assert (root / "llm" / "1" / "model.py").read_text().startswith('"""Triton Python-backend model')
    manifest = json.loads((root / repository.MANIFEST).read_text())
    assert manifest["backend"] == "python" and manifest["model"] == "llm"
    assert "llm/1/model/model.safetensors" in manifest["files"]
    assert not list(tmp_path.glob(".repo*"))  # no temporary directory left behind


def test_python_repository_can_reference_the_model_in_place(model_dir: Path, tmp_path: Path) -> None:
    root = repository.build_repository(model_dir, tmp_path / "repo", _spec(), weights="reference", model_name="chat")
    config = pbtxt.validate_config((root / "chat" / "config.pbtxt").read_text())
    assert config.parameters["model_dir"].string_value == str(model_dir.resolve())
    assert not (root / "chat" / "1" / "model").exists()


def test_unknown_weights_mode_is_rejected(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="copy or reference"):
        repository.build_repository(model_dir, tmp_path / "repo", _spec(), weights="move")  # type: ignore[arg-type]
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("quantization", ["int8", "w4a16", "fp8"])
def test_python_backend_serves_fp16_only(model_dir: Path, tmp_path: Path, quantization: str) -> None:
    spec = v1alpha1.ServingSpec.model_validate({"backend": "python", "quantization": quantization})
    with pytest.raises(TrainerError, match=f"quantization {quantization} needs the tensorrtllm backend"):
        repository.build_repository(model_dir, tmp_path / "repo", spec)


def test_tensorrtllm_repository_has_the_four_models_and_tokenizers(model_dir: Path, tmp_path: Path) -> None:
    root = repository.build_repository(model_dir, tmp_path / "repo", _spec("tensorrtllm"), engine_dir="/models/e")
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "llm",
        "postprocessing",
        "preprocessing",
        "tensorrt_llm",
    ]
    for step in ("preprocessing", "postprocessing"):
        assert (root / step / "1" / "tokenizer" / "tokenizer_config.json").is_file()
    config = pbtxt.validate_config((root / "tensorrt_llm" / "config.pbtxt").read_text())
    assert config.parameters["gpt_model_path"].string_value == "/models/e"


def test_tensorrtllm_engine_dir_defaults_to_the_repository(model_dir: Path, tmp_path: Path) -> None:
    root = repository.build_repository(model_dir, tmp_path / "repo", _spec("tensorrtllm"))
    config = pbtxt.validate_config((root / "tensorrt_llm" / "config.pbtxt").read_text())
    assert config.parameters["gpt_model_path"].string_value == str(root / "tensorrt_llm" / "1")


def test_tensorrtllm_engine_source_is_placed_in_the_version_dir(model_dir: Path, tmp_path: Path) -> None:
    engine = tmp_path / "engine"
    engine.mkdir()
    (engine / "config.json").write_text("{}")
    (engine / "rank0.engine").write_bytes(b"\0engine")
    root = repository.build_repository(model_dir, tmp_path / "repo", _spec("tensorrtllm"), engine_source=engine)
    assert (root / "tensorrt_llm" / "1" / "rank0.engine").read_bytes() == b"\0engine"


def test_tensorrtllm_rejects_a_directory_that_is_no_engine(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="not a TensorRT-LLM engine"):
        repository.build_repository(model_dir, tmp_path / "repo", _spec("tensorrtllm"), engine_source=tmp_path)
    assert not (tmp_path / "repo").exists()


def test_tensorrtllm_rejects_a_relative_engine_dir(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="absolute"):
        repository.build_repository(model_dir, tmp_path / "repo", _spec("tensorrtllm"), engine_dir="engine")


def test_tensorrtllm_rejects_an_entry_name_that_collides(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="collides"):
        repository.build_repository(model_dir, tmp_path / "r", _spec("tensorrtllm"), model_name="preprocessing")


def test_a_directory_without_config_json_is_no_model(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match=r"not a model directory \(no config.json\)"):
        repository.build_repository(tmp_path, tmp_path / "repo", _spec())


def test_an_invalid_config_fails_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(pbtxt.ConfigError, match=r"bad/config\.pbtxt"):
        repository.write_files(tmp_path, {"good.txt": "x", "bad/config.pbtxt": 'name: "bad"\n'})
    assert list(tmp_path.iterdir()) == []


def test_rebuilding_replaces_the_old_repository(model_dir: Path, tmp_path: Path) -> None:
    first = repository.build_repository(model_dir, tmp_path / "repo", _spec(maxBatchSize=2))
    (first / "stale.txt").write_text("old")
    second = repository.build_repository(model_dir, tmp_path / "repo", _spec(maxBatchSize=4))
    assert not (second / "stale.txt").exists()
    assert pbtxt.validate_config((second / "llm" / "config.pbtxt").read_text()).max_batch_size == 4


def test_digest_is_stable_and_follows_the_content(model_dir: Path, tmp_path: Path) -> None:
    a = repository.build_repository(model_dir, tmp_path / "a", _spec())
    b = repository.build_repository(model_dir, tmp_path / "b", _spec())
    c = repository.build_repository(model_dir, tmp_path / "c", _spec(maxBatchSize=5))
    assert repository.repository_digest(a) == repository.repository_digest(b)
    assert repository.repository_digest(a) != repository.repository_digest(c)
    assert repository.repository_digest(a).startswith("sha256:")


def test_digest_of_a_foreign_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="not a kubetune model repository"):
        repository.repository_digest(tmp_path)
