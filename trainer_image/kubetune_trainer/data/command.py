"""``python -m kubetune_trainer prepare``: the thin command-line edge of :mod:`.pipeline`.

Two ways to call it:

* ``prepare --config FILE`` - in a pod: the :class:`v1alpha1.TrainerConfig` the operator wrote.
  Reads ``paths.dataset``, writes ``paths.prepared_dir`` and ``paths.reports_dir/report.json``,
  tokenizes with the tokenizer of ``paths.base_model``.
* ``prepare --input FILE --format triple --output DIR`` - on a laptop, to look at what cleaning
  does to a file: API defaults (``v1alpha1.CleaningSpec()``, optionally overridden with
  ``--cleaning FILE``), writes ``DIR/cleaned.jsonl`` and ``DIR/report.json``; tokenizes only when
  ``--tokenizer DIR`` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pydantic
import yaml
from kubetune.api import v1alpha1

from kubetune_trainer import config as trainer_config
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.data import pipeline

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``prepare`` options."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", metavar="FILE", help="trainer config written by the operator (JSON or YAML)")
    source.add_argument("--input", metavar="FILE", help="a JSONL dataset (local path, pvc:// or s3:// URI)")
    parser.add_argument(
        "--format",
        choices=[fmt.value for fmt in v1alpha1.DatasetFormat],
        default=v1alpha1.DatasetFormat.TRIPLE.value,
        help="record layout of --input (default: %(default)s)",
    )
    parser.add_argument("--output", metavar="DIR", help="output directory (with --input)")
    parser.add_argument("--cleaning", metavar="FILE", help="a CleaningSpec (JSON or YAML) instead of the defaults")
    parser.add_argument("--tokenizer", metavar="DIR", help="tokenize with this tokenizer (with --input)")
    parser.add_argument("--no-tokenize", action="store_true", help="stop after cleaning and splitting")
    parser.add_argument(
        "--validation-split",
        type=float,
        metavar="FRACTION",
        default=v1alpha1.DatasetSpec.model_fields["validation_split"].default,
        help="fraction held out (with --input; default: %(default)s)",
    )
    parser.add_argument(
        "--max-seq-length",
        type=int,
        metavar="N",
        default=v1alpha1.TrainingSpec().max_seq_length,
        help="tokens per sequence (with --input; default: %(default)s)",
    )
    parser.add_argument("--no-packing", action="store_true", help="one sample per sequence (with --input)")
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        default=v1alpha1.TrainingSpec().seed,
        help="sampling seed (with --input; default: %(default)s)",
    )
    parser.add_argument("--classifier", metavar="DIR", help="local quality classifier (overrides classifierUri)")
    parser.add_argument(
        "--pvc-root",
        metavar="DIR",
        default=v1alpha1.PVC_MOUNT_ROOT,
        help="where pvc:// claims are mounted (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the prepare step; returns the exit code."""
    if args.config:
        return _run_config(args)
    return _run_input(args)


def _run_config(args: argparse.Namespace) -> int:
    cfg = trainer_config.load_config(args.config)
    report = pipeline.run_prepare(
        cfg.paths.dataset,
        cfg.spec.dataset,
        cfg.paths.prepared_dir,
        tokenizer=None if args.no_tokenize else cfg.paths.base_model,
        training=cfg.spec.training,
        classifier_dir=args.classifier,
        pvc_root=args.pvc_root,
        progress=not args.no_progress,
    )
    pipeline.write_report(report, Path(cfg.paths.reports_dir) / pipeline.REPORT_FILE)
    return 0


def _run_input(args: argparse.Namespace) -> int:
    if not args.output:
        raise TrainerError("--output DIR is required with --input")
    if not 0 <= args.validation_split <= 0.5:
        raise TrainerError(f"--validation-split must be between 0 and 0.5, got {args.validation_split}")
    spec = v1alpha1.DatasetSpec.model_construct(
        uri=args.input,
        format=v1alpha1.DatasetFormat(args.format),
        validation_split=args.validation_split,
        cleaning=_load_cleaning(args.cleaning) if args.cleaning else v1alpha1.CleaningSpec(),
    )
    training = _training(args)
    pipeline.run_prepare(
        args.input,
        spec,
        args.output,
        tokenizer=None if args.no_tokenize else args.tokenizer,
        training=training,
        classifier_dir=args.classifier,
        pvc_root=args.pvc_root,
        progress=not args.no_progress,
    )
    return 0


def _training(args: argparse.Namespace) -> v1alpha1.TrainingSpec:
    try:
        return v1alpha1.TrainingSpec(max_seq_length=args.max_seq_length, packing=not args.no_packing, seed=args.seed)
    except pydantic.ValidationError as err:
        raise TrainerError(f"invalid option: {trainer_config.format_validation_error(err)}") from err


def _load_cleaning(path: str) -> v1alpha1.CleaningSpec:
    """Read a CleaningSpec file (the ``spec.dataset.cleaning`` block of a FineTuneJob)."""
    file = Path(path)
    if not file.is_file():
        raise TrainerError(f"cleaning file not found: {file}")
    text = file.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
        return v1alpha1.CleaningSpec.model_validate(data or {})
    except (ValueError, yaml.YAMLError, pydantic.ValidationError) as err:
        raise TrainerError(f"invalid cleaning file {file}: {trainer_config.format_validation_error(err)}") from err
