"""``kubetune run --local``: the quickstart manifest runs for real, bad input fails clearly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart" / "finetunejob.yaml"
KUBETUNE = [sys.executable, "-m", "kubetune"]


def kubetune(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KUBETUNE, *args], capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT)


def test_quickstart_runs_locally_end_to_end(tmp_path: Path) -> None:
    result = kubetune(
        "run",
        "-f",
        str(QUICKSTART),
        "--local",
        "--base-model",
        "tiny",
        "--max-steps",
        "2",
        "--workdir",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "1200 records in" in out
    assert "PII:" in out and "cnIdCard" in out and "bankCard" in out
    assert "training:   2/2 steps" in out
    assert "perplexity" in out and "bleu" in out and "rougeL" in out
    answer = next(line for line in out.splitlines() if line.strip().startswith("answer:"))
    assert answer.split("answer:", 1)[1].strip() not in ("", "''")
    assert (tmp_path / "run" / "model" / "merged" / "config.json").is_file()
    assert (tmp_path / "run" / "model" / "manifest.json").is_file()


def _copy_quickstart(tmp_path: Path) -> Path:
    target = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART.parent, target)
    return target / QUICKSTART.name


def test_bad_field_exits_non_zero_naming_the_field(tmp_path: Path) -> None:
    manifest = _copy_quickstart(tmp_path)
    job = yaml.safe_load(manifest.read_text())
    job["spec"]["lora"]["r"] = 0
    manifest.write_text(yaml.safe_dump(job))
    result = kubetune("run", "-f", str(manifest), "--local", "--base-model", "tiny", timeout=120)
    assert result.returncode == 2
    assert "spec.lora.r" in result.stderr


def test_cel_rule_is_enforced_locally(tmp_path: Path) -> None:
    manifest = _copy_quickstart(tmp_path)
    job = yaml.safe_load(manifest.read_text())
    job["spec"]["method"] = "full"  # the lora block is then not allowed, as at admission
    manifest.write_text(yaml.safe_dump(job))
    result = kubetune("run", "-f", str(manifest), "--local", "--base-model", "tiny", timeout=120)
    assert result.returncode == 2
    assert "spec.lora is only allowed" in result.stderr


def test_missing_dataset_names_the_path(tmp_path: Path) -> None:
    manifest = _copy_quickstart(tmp_path)
    (manifest.parent / "pvc" / "quickstart-data" / "dialogues.jsonl").unlink()
    result = kubetune("run", "-f", str(manifest), "--local", "--base-model", "tiny", timeout=120)
    assert result.returncode == 2
    assert "spec.dataset.uri" in result.stderr
    assert str(manifest.parent / "pvc" / "quickstart-data" / "dialogues.jsonl") in result.stderr


def test_missing_manifest(tmp_path: Path) -> None:
    result = kubetune("run", "-f", str(tmp_path / "nope.yaml"), "--local", timeout=120)
    assert result.returncode == 2
    assert "manifest not found" in result.stderr


@pytest.mark.parametrize("values", [[4.0, 3.0, 2.0, 1.0], [1.0, 1.0]])
def test_sparkline(values: list[float]) -> None:
    from kubetune.local import sparkline

    line = sparkline(values)
    assert len(line) == len(values)
    if values[0] > values[-1]:
        assert line[0] == "█" and line[-1] == "▁"


def test_a_rerun_starts_over_unless_asked_to_resume(tmp_path: Path) -> None:
    common = ["run", "-f", str(QUICKSTART), "--local", "--base-model", "tiny", "--no-serve"]
    workdir = ["--workdir", str(tmp_path / "run")]
    for _ in range(2):  # the second run finds the first one's final checkpoint and ignores it
        result = kubetune(*common, *workdir, "--max-steps", "2")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "training:   2/2 steps" in result.stdout
        assert "resuming from" not in result.stderr
    result = kubetune(*common, *workdir, "--max-steps", "3", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from" in result.stderr and "checkpoint-2" in result.stderr
    assert "training:   3/3 steps" in result.stdout
