"""``python -m kubetune_trainer prepare``: both ways of calling it, and its user errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer import cli, tiny
from kubetune_trainer.config import save_config
from kubetune_trainer.data import synthetic, tokenize

IGNORE = tokenize.IGNORE_INDEX


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.write_jsonl(synthetic.generate(400, seed=3), tmp_path_factory.mktemp("data") / "dialogues.jsonl")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "base"
    tiny.build_tokenizer(vocab_size=800).save_pretrained(path)  # type: ignore[attr-defined]
    return path


def prepare(*args: str) -> int:
    return cli.main(["prepare", *args, "--no-progress"])


def test_input_mode_in_a_subprocess(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "kubetune_trainer", "prepare", "--input", str(dataset), "--format", "triple"]
    done = subprocess.run(
        [*command, "--output", str(out), "--no-tokenize"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "read: 100%" in done.stderr  # the progress bar goes to stderr
    report = json.loads((out / "report.json").read_text())
    assert v1alpha1.DataReport.model_validate(report).records_in == 400
    assert report["redactions"] and report["dropped"]
    cleaned = [json.loads(line) for line in (out / "cleaned.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(cleaned) == report["recordsOut"]
    assert all(set(record) == {"context", "response", "followup", "intent"} for record in cleaned)
    assert not (out / "tokenized").exists()


def test_missing_input_in_a_subprocess_exits_2_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer", "prepare", "--input", str(missing), "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert f"error: dataset not found: {missing}" in done.stderr
    assert "Traceback" not in done.stderr


def test_config_mode_tokenizes_with_the_base_model_tokenizer(
    dataset: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    config = v1alpha1.TrainerConfig.model_validate(
        {
            "spec": {
                "baseModel": {"uri": "pvc://models/tiny"},
                "dataset": {"uri": "pvc://data/dialogues.jsonl", "validationSplit": 0.2},
                "output": {"uri": "pvc://artifacts/job"},
                "training": {"maxSeqLength": 64, "packing": True},
            },
            "paths": {"dataset": str(dataset), "baseModel": str(tokenizer_dir), "workDir": str(tmp_path / "work")},
        }
    )
    assert prepare("--config", str(save_config(config, tmp_path / "config.json"))) == 0
    report = json.loads(Path(config.paths.reports_dir, "report.json").read_text())
    assert report == json.loads(Path(config.paths.prepared_dir, "report.json").read_text())
    train, validation = tokenize.load_tokenized(config.paths.prepared_dir)
    assert train.meta["maxSeqLength"] == 64
    assert (
        train.meta["splits"]["train"]["samples"] + train.meta["splits"]["train"]["droppedNoLabels"]
        == (report["trainRecords"])
    )
    assert len(validation) > 0
    tok: Any = tokenize.load_tokenizer(str(tokenizer_dir))
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    for dataset_split in (train, validation):
        assert dataset_split.lengths().max() <= 64
        for index in range(len(dataset_split)):
            item = dataset_split[index]
            ids, labels = item["input_ids"], item["labels"]
            trained = labels != IGNORE
            assert (labels[trained] == ids[trained]).all()
            assert start not in ids[trained].tolist()  # role headers are never trained on
            ends = ids == end
            # every sample's user turn ends untrained; the assistant's end token is trained (unless truncated)
            assert trained[ends].sum() >= (item["position_ids"] == 0).sum() - 1
    records = tokenize.load_cleaned_records(config.paths.prepared_dir)
    assert len(records) == report["validationRecords"]


def test_input_mode_with_a_tokenizer_and_another_format(tokenizer_dir: Path, tmp_path: Path) -> None:
    items = [
        {"instruction": "Translate to English", "input": f"第{i}号订单已发货", "output": f"Order {i} has shipped."}
        for i in range(30)
    ]
    source = synthetic.write_jsonl(items, tmp_path / "alpaca.jsonl")
    out = tmp_path / "out"
    args = ["--input", str(source), "--format", "alpaca", "--output", str(out), "--tokenizer", str(tokenizer_dir)]
    assert prepare(*args, "--no-packing", "--max-seq-length", "128", "--validation-split", "0.1") == 0
    train, validation = tokenize.load_tokenized(out)
    assert train.meta["packing"] is False
    assert len(train) + len(validation) == json.loads((out / "report.json").read_text())["recordsOut"]


def test_cleaning_file_overrides_the_defaults(dataset: Path, tmp_path: Path) -> None:
    cleaning = tmp_path / "cleaning.yaml"
    cleaning.write_text("dedup:\n  enabled: false\nbalance:\n  maxPerIntent: 10\n  minPerIntent: 5\n")
    out = tmp_path / "out"
    assert prepare("--input", str(dataset), "--output", str(out), "--cleaning", str(cleaning)) == 0
    report = json.loads((out / "report.json").read_text())
    assert "exactDuplicate" not in report["dropped"]
    assert max(report["intentsAfter"].values()) == 10
    assert report["warnings"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "{dataset}"], "--output DIR is required with --input"),
        (["--input", "{tmp}/none.jsonl", "--output", "{tmp}/o"], "dataset not found: {tmp}/none.jsonl"),
        (["--input", "{dataset}", "--output", "{tmp}/o", "--format", "chat"], "no valid chat record"),
        (["--input", "{dataset}", "--output", "{tmp}/o", "--validation-split", "0.9"], "--validation-split must be"),
        (["--input", "{dataset}", "--output", "{tmp}/o", "--max-seq-length", "8"], "invalid option: max_seq_length"),
        (["--input", "{dataset}", "--output", "{tmp}/o", "--cleaning", "{tmp}/none.yaml"], "cleaning file not found"),
        (["--input", "{dataset}", "--output", "{tmp}/o", "--cleaning", "{bad_cleaning}"], "dedup.similarityThreshold"),
        (["--input", "{dataset}", "--output", "{tmp}/o", "--tokenizer", "{tmp}/none"], "tokenizer directory not found"),
        (["--config", "{tmp}/none.json"], "config file not found"),
    ],
)
def test_user_errors_exit_2_with_a_message(
    args: list[str], message: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_cleaning = tmp_path / "bad.json"
    bad_cleaning.write_text('{"dedup": {"similarityThreshold": 2}}')
    values = {"dataset": str(dataset), "tmp": str(tmp_path), "bad_cleaning": str(bad_cleaning)}
    assert prepare(*[arg.format(**values) for arg in args]) == 2
    assert message.format(**values) in capsys.readouterr().err


def test_input_and_config_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        prepare("--input", "a", "--config", "b")
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
