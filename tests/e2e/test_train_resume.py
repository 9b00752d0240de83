"""Resuming: a run stopped at step 2 and resumed to step 4 ends where an uninterrupted run does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from kubetune_trainer import cli
from kubetune_trainer.recipes import EXIT_INTERRUPTED, checkpoints
from safetensors.torch import load_file

# Dropout on: the resumed run must also restore the RNG state to match.
SETTINGS: dict[str, Any] = {"training": {"maxSteps": 4, "loggingSteps": 1, "checkpointSteps": 1000}}


def report(config: Path) -> dict[str, Any]:
    return json.loads((config.parent / config.stem / "reports" / "training.json").read_text())


def adapter_weights(config: Path) -> dict[str, torch.Tensor]:
    return load_file(config.parent / config.stem / "checkpoints" / "final" / "adapter_model.safetensors")


def test_stop_and_resume_matches_an_uninterrupted_run(make_config: Any) -> None:
    straight = make_config(name="straight", **SETTINGS)
    assert cli.main(["train", "--config", str(straight)]) == 0

    resumed = make_config(name="resumed", **SETTINGS)
    assert cli.main(["train", "--config", str(resumed), "--stop-at", "2"]) == EXIT_INTERRUPTED
    first = report(resumed)
    assert (first["step"], first["interrupted"]) == (2, True)
    latest = checkpoints.latest_complete(resumed.parent / "resumed" / "checkpoints")
    assert latest is not None and latest.name == "checkpoint-2"
    assert not (resumed.parent / "resumed" / "checkpoints" / "final").exists()

    assert cli.main(["train", "--config", str(resumed)]) == 0  # --resume auto is the default
    second = report(resumed)
    assert (second["step"], second["totalSteps"], second["interrupted"]) == (4, 4, False)
    assert [step for step, _ in second["losses"]] == [3, 4]

    expected = dict(report(straight)["losses"])
    assert second["losses"][-1][1] == pytest.approx(expected[4], abs=1e-5)
    assert first["losses"][-1][1] == pytest.approx(expected[2], abs=1e-5)
    for name, tensor in adapter_weights(straight).items():
        torch.testing.assert_close(adapter_weights(resumed)[name], tensor, rtol=0, atol=1e-6)


def test_resume_none_starts_over(make_config: Any) -> None:
    config = make_config(**SETTINGS)
    assert cli.main(["train", "--config", str(config), "--stop-at", "2"]) == EXIT_INTERRUPTED
    assert cli.main(["train", "--config", str(config), "--resume", "none", "--max-steps", "1"]) == 0
    assert report(config)["losses"][0][0] == 1  # started again at step 1
    assert not list((config.parent / "work" / "checkpoints").glob("checkpoint-2"))


def test_resume_from_a_checkpoint_that_does_not_exist(make_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(**SETTINGS)
    assert cli.main(["train", "--config", str(config), "--resume", str(config.parent / "nowhere")]) == 2
    assert "checkpoint to resume from not found" in capsys.readouterr().err
