"""checkpoints: completion markers, the latest complete checkpoint, and what a run resumes from."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.recipes import checkpoints

from tests.support import specs


def config_in(work: Path, resume_from: str | None = None) -> v1alpha1.TrainerConfig:
    return v1alpha1.TrainerConfig.model_validate(
        {
            "spec": specs.job(),
            "paths": {"dataset": "d.jsonl", "baseModel": "m", "workDir": str(work)},
            "resumeFrom": resume_from,
        }
    )


def make_checkpoint(root: Path, step: int, complete: bool) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if complete:
        checkpoints.mark_complete(path, step)
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    root = tmp_path / "checkpoints"
    make_checkpoint(root, 10, complete=True)
    make_checkpoint(root, 100, complete=True)
    make_checkpoint(root, 20, complete=True)
    make_checkpoint(root, 200, complete=False)  # the pod died while saving
    (root / "final").mkdir()
    (root / "checkpoint-x").mkdir()
    return tmp_path


def test_checkpoints_are_listed_by_step_not_by_name(work: Path) -> None:
    names = [p.name for p in checkpoints.list_checkpoints(work / "checkpoints")]
    assert names == ["checkpoint-10", "checkpoint-20", "checkpoint-100", "checkpoint-200"]


def test_latest_complete_skips_the_one_being_written(work: Path) -> None:
    latest = checkpoints.latest_complete(work / "checkpoints")
    assert latest is not None and latest.name == "checkpoint-100"


def test_no_checkpoints_at_all(tmp_path: Path) -> None:
    assert checkpoints.latest_complete(tmp_path / "missing") is None
    assert checkpoints.resolve_resume("auto", config_in(tmp_path)) is None


def test_remove_incomplete(work: Path) -> None:
    removed = checkpoints.remove_incomplete(work / "checkpoints")
    assert [p.name for p in removed] == ["checkpoint-200"]
    assert not (work / "checkpoints" / "checkpoint-200").exists()
    assert (work / "checkpoints" / "checkpoint-100").exists()


def test_remove_all_keeps_other_directories(work: Path) -> None:
    checkpoints.remove_all(work / "checkpoints")
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["checkpoint-x", "final"]


def test_resume_defaults_to_the_latest_complete_checkpoint(work: Path) -> None:
    assert checkpoints.resolve_resume(None, config_in(work)) == work / "checkpoints" / "checkpoint-100"
    assert checkpoints.resolve_resume("auto", config_in(work)) == work / "checkpoints" / "checkpoint-100"


def test_resume_none_starts_from_scratch(work: Path) -> None:
    assert checkpoints.resolve_resume("none", config_in(work)) is None


def test_resume_from_the_config_then_the_command_line(work: Path) -> None:
    config = config_in(work, resume_from=str(work / "checkpoints" / "checkpoint-10"))
    assert checkpoints.resolve_resume(None, config) == work / "checkpoints" / "checkpoint-10"
    explicit = str(work / "checkpoints" / "checkpoint-20")
    assert checkpoints.resolve_resume(explicit, config) == work / "checkpoints" / "checkpoint-20"


def test_resume_from_a_missing_checkpoint_fails(work: Path) -> None:
    with pytest.raises(TrainerError, match="checkpoint to resume from not found"):
        checkpoints.resolve_resume(str(work / "checkpoints" / "checkpoint-999"), config_in(work))


def test_resume_from_an_incomplete_checkpoint_fails(work: Path) -> None:
    with pytest.raises(TrainerError, match="checkpoint-200 is incomplete"):
        checkpoints.resolve_resume(str(work / "checkpoints" / "checkpoint-200"), config_in(work))


def test_reading_the_summary_before_training_fails(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="run the train step first"):
        checkpoints.read_training_summary(checkpoints.final_dir(config_in(tmp_path).paths))


def test_checkpoint_uri_is_under_the_output_uri(tmp_path: Path) -> None:
    assert checkpoints.checkpoint_uri(config_in(tmp_path).spec, 42) == "pvc://artifacts/job/checkpoints/checkpoint-42"
