"""SIGTERM (preemption, node drain, suspend) makes the trainer save a checkpoint and exit 75.

The CLI runs in a subprocess, as in a pod, and gets a real SIGTERM once training is under way.
Periodic checkpoints are off, so the checkpoint found afterwards can only come from the signal.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from kubetune_trainer import cli
from kubetune_trainer.config import load_config
from kubetune_trainer.recipes import EXIT_INTERRUPTED, checkpoints

from tests.support.wait import wait_for


def test_sigterm_leaves_a_complete_loadable_checkpoint(make_config: Any, tmp_path: Path) -> None:
    config_path = make_config(training={"maxSteps": 100_000, "checkpointSteps": 100_000, "loggingSteps": 1})
    config = load_config(config_path)
    log_path = tmp_path / "train.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubetune_trainer", "train", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                lambda: (" 1/100000 " in log_path.read_text(), log_path.read_text()[-2000:]),
                timeout=180,
                description="the first training step in the log",
            )
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=120)
        finally:
            process.kill()
    output = log_path.read_text()
    assert returncode == EXIT_INTERRUPTED, output[-3000:]
    assert "SIGTERM received" in output

    saved = checkpoints.list_checkpoints(config.paths.checkpoints_dir)
    assert len(saved) == 1 and checkpoints.is_complete(saved[0]), saved
    step = json.loads((saved[0] / "trainer_state.json").read_text())["global_step"]
    assert saved[0].name == f"checkpoint-{step}" and 1 <= step < 100_000
    assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"} <= {
        p.name for p in saved[0].iterdir()
    }
    report = json.loads(Path(config.paths.reports_dir, "training.json").read_text())
    assert (report["interrupted"], report["step"]) == (True, step)

    # Loadable: as an adapter on the base model, and as a resume point for the next attempt.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(config.paths.base_model, dtype=torch.float32)
    adapter = PeftModel.from_pretrained(base, str(saved[0]))
    assert torch.isfinite(adapter(input_ids=torch.tensor([[3, 4, 5]])).logits).all()
    assert cli.main(["train", "--config", str(config_path), "--max-steps", str(step + 1)]) == 0
    resumed = json.loads(Path(config.paths.reports_dir, "training.json").read_text())
    assert resumed["step"] == step + 1 and resumed["losses"][0][0] == step + 1
