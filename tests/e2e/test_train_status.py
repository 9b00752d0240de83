"""A training run reports progress and checkpoints into its FineTuneJob's status.

The "API server" is a local HTTP server that records the PATCH requests; the trainer finds it
through ``KUBETUNE_API_URL``, as a run outside a pod would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer import cli
from kubetune_trainer.config import load_config, save_config

from tests.unit.trainer.test_status import RecordingServer


@pytest.fixture
def api_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_training_patches_progress_and_checkpoints(
    make_config: Any, api_server: RecordingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_config(training={"maxSteps": 6, "checkpointSteps": 3, "loggingSteps": 1})
    config = load_config(path).model_copy(
        update={"status_target": v1alpha1.StatusTarget(name="chat-lora", namespace="team-a")}
    )
    save_config(config, path)
    (tmp_path / "token").write_text("trainer-token")
    monkeypatch.setenv("KUBETUNE_API_URL", api_server.url)
    monkeypatch.setenv("KUBETUNE_API_TOKEN_FILE", str(tmp_path / "token"))

    assert cli.main(["train", "--config", str(path)]) == 0

    assert api_server.requests, "no status patch was sent"
    assert {r["path"] for r in api_server.requests} == {
        "/apis/kubetune.dev/v1alpha1/namespaces/team-a/finetunejobs/chat-lora/status"
    }
    assert {r["headers"]["Authorization"] for r in api_server.requests} == {"Bearer trainer-token"}
    bodies = [r["body"]["status"] for r in api_server.requests]
    progress = [b["progress"] for b in bodies if "progress" in b]
    checkpoints = [b["checkpoint"] for b in bodies if "checkpoint" in b]
    # Rate-limited to one report per 10 s: the first step, then the final report at the end.
    assert progress[0]["step"] == 1
    final = progress[-1]
    assert (final["step"], final["totalSteps"], final["percent"], final["summary"]) == (6, 6, 100, "6/6 (100%)")
    assert final["loss"] > 0 and final["learningRate"] > 0 and final["tokensPerSecond"] > 0
    assert len(progress) < 6
    assert checkpoints == [
        {"uri": "pvc://artifacts/work/checkpoints/checkpoint-3", "step": 3},
        {"uri": "pvc://artifacts/work/checkpoints/checkpoint-6", "step": 6},
    ]
    for body in bodies:
        v1alpha1.FineTuneJobStatus.model_validate(body)
