"""The prepare step end to end, as a pod runs it: synthetic data in, report and tokenized splits out.

Everything goes through the command line in fresh processes (with different hash seeds, to
catch any dependence on Python's randomised ``hash``), and the dataset is read from a
``pvc://`` URI the way a pod reads it from the mounted claim.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.config import save_config
from kubetune_trainer.data import tokenize

RECORDS = 1000


def run(args: list[str], hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def claim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory standing in for the mounted claims: ``<root>/data/dialogues.jsonl``."""
    root = tmp_path_factory.mktemp("pvc")
    (root / "data").mkdir()
    run(
        [
            "kubetune_trainer.data.synthetic",
            "--records",
            str(RECORDS),
            "--output",
            str(root / "data" / "dialogues.jsonl"),
        ]
    )
    return root


def prepare(config: Path, claim: Path, *options: str, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    return run(["kubetune_trainer", "prepare", "--config", str(config), "--pvc-root", str(claim), *options], hash_seed)


def write_config(tmp_path: Path, base_model: Path, work: Path) -> Path:
    config = v1alpha1.TrainerConfig.model_validate(
        {
            "spec": {
                "baseModel": {"uri": "pvc://models/tiny"},
                "dataset": {"uri": "pvc://data/dialogues.jsonl", "validationSplit": 0.1},
                "output": {"uri": "pvc://artifacts/job"},
                "training": {"maxSeqLength": 256, "packing": True},
            },
            "paths": {"dataset": "pvc://data/dialogues.jsonl", "baseModel": str(base_model), "workDir": str(work)},
        }
    )
    return save_config(config, tmp_path / f"{work.name}.json")


def test_prepare_from_a_claim_with_the_base_model_tokenizer(claim: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    done = prepare(write_config(tmp_path, tiny_model_dir, first), claim, hash_seed="1")
    assert "prepared" in done.stderr and "tokenize" not in done.stdout

    report = v1alpha1.DataReport.model_validate(json.loads((first / "reports" / "report.json").read_text()))
    assert report.records_in == RECORDS and report.malformed == 0
    assert report.records_out == report.train_records + report.validation_records  # type: ignore[operator]
    assert RECORDS * 0.8 < report.records_out < RECORDS * 0.95  # duplicates and junk (~12%) removed  # type: ignore[operator]
    assert set(report.redactions) == {entity.value for entity in v1alpha1.PIIEntity}
    assert {"exactDuplicate", "nearDuplicate", "empty", "repetitive"} <= set(report.dropped)
    assert report.intents_after == report.intents_before
    assert any("below minPerIntent 500" in warning for warning in report.warnings)
    assert report.digest and report.digest.startswith("sha256:")

    train, validation = tokenize.load_tokenized(first / "data")
    assert train.lengths().max() <= 256 and validation.lengths().max() <= 256
    stats = train.meta["splits"]["train"]
    assert stats["samples"] + stats["droppedNoLabels"] == report.train_records
    assert stats["trainableTokens"] < stats["tokens"]
    cleaned = tokenize.load_cleaned_records(first / "data", "validation")
    assert len(cleaned) == report.validation_records
    text = (first / "data" / "cleaned.jsonl").read_text(encoding="utf-8")
    assert "<CN_MOBILE>" in text and "<BANK_CARD>" in text

    # Same input, another process with another hash seed: the same data and digest.
    second = tmp_path / "second"
    prepare(write_config(tmp_path, tiny_model_dir, second), claim, "--no-progress", hash_seed="2")
    assert json.loads((second / "reports" / "report.json").read_text()) == report.to_k8s()
    for name in ("cleaned.jsonl", "train.jsonl", "validation.jsonl", "tokenized/train/input_ids.npy"):
        assert (first / "data" / name).read_bytes() == (second / "data" / name).read_bytes(), name


def test_prepared_batches_train_a_tiny_model(claim: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The hand-over works: the packed splits and collator drive a transformers Trainer for a few steps."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    work = tmp_path / "work"
    prepare(write_config(tmp_path, tiny_model_dir, work), claim, "--no-progress")
    train, validation = tokenize.load_tokenized(work / "data")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.use_cache = False  # keep packed samples apart (see kubetune_trainer.data.tokenize)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=validation, data_collator=train.collator()
    )
    result = trainer.train()
    assert result.global_step == 3
    metrics = trainer.evaluate()
    assert torch.isfinite(torch.tensor(metrics["eval_loss"]))
