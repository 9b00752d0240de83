"""Two training processes under torchrun (DDP over gloo on CPU), stopped by SIGTERM as a pod would be.

Kubernetes signals the container's main process, torchrun, which forwards SIGTERM to its workers.
Both ranks must agree to stop after the same step and save one complete checkpoint, holding the
RNG state of each rank, from which the next attempt resumes. torchrun itself then exits 1 (its
own reaction to the signal), so the operator goes by the checkpoint, not the exit code.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubetune_trainer.config import load_config
from kubetune_trainer.recipes import checkpoints

from tests.support.wait import wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def torchrun(config: Path, log: Any, *train_args: str) -> subprocess.Popen[bytes]:
    """``torchrun --nproc-per-node 2 -m kubetune_trainer train --config CONFIG ...``."""
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
    ]
    command = [*launcher, "-m", "kubetune_trainer", "train", "--config", str(config), *train_args]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def test_two_ranks_stop_together_on_sigterm_and_resume(make_config: Any, tmp_path: Path) -> None:
    config_path = make_config(
        training={"maxSteps": 100_000, "checkpointSteps": 100_000, "loggingSteps": 1, "perDeviceBatchSize": 2}
    )
    config = load_config(config_path)
    log_path = tmp_path / "torchrun.log"
    with log_path.open("w") as log:
        process = torchrun(config_path, log)
        try:
            wait_for(
                lambda: (" 2/100000 " in log_path.read_text(), log_path.read_text()[-2000:]),
                timeout=240,
                description="two training steps in the log",
            )
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        finally:
            process.kill()
    output = log_path.read_text()
    assert output.count("SIGTERM received") == 2, output[-3000:]  # one per rank

    saved = checkpoints.list_checkpoints(config.paths.checkpoints_dir)
    assert len(saved) == 1 and checkpoints.is_complete(saved[0]), output[-3000:]
    assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt"} <= {p.name for p in saved[0].iterdir()}
    report = json.loads(Path(config.paths.reports_dir, "training.json").read_text())
    step = report["step"]
    assert report["recipe"] == "lora_distributed" and report["interrupted"] is True
    assert saved[0].name == f"checkpoint-{step}"

    # The next attempt, two ranks again, resumes from it and finishes (two more steps).
    with log_path.open("w") as log:
        assert torchrun(config_path, log, "--max-steps", str(step + 2)).wait(timeout=240) == 0, log_path.read_text()
    resumed = json.loads(Path(config.paths.reports_dir, "training.json").read_text())
    assert (resumed["step"], resumed["interrupted"]) == (step + 2, False)
    assert [s for s, _ in resumed["losses"]] == [step + 1, step + 2]
    assert (Path(config.paths.checkpoints_dir) / "final" / "adapter_model.safetensors").is_file()
