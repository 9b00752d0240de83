"""The prepare step as one function: read, redact, filter, dedup, balance, split, tokenize, report.

The CLI (``python -m kubetune_trainer prepare``), ``kubetune run --local`` and the benchmarks
all call :func:`run_prepare`; :func:`clean` is the pure core (records in, records and counts
out) that tests exercise without files.

Order of the steps, and why:

1. PII redaction first, so that nothing downstream - the quality classifier, log lines, the
   written splits - ever sees the raw personal data. Records that differ only in a phone
   number also become exact duplicates this way.
2. Quality filter, before dedup, so a junk record cannot be the "first occurrence" that keeps a
   good near-duplicate out.
3. Exact then near-duplicate removal (first occurrence kept).
4. Balancing (``maxPerIntent`` down-sampling, ``minPerIntent`` warnings).
5. Stratified train/validation split, seeded by ``training.seed``.
6. Tokenization with the base model's chat template, label masking and packing.

Output directory (written under a temporary name and renamed into place when complete):
``cleaned.jsonl`` (kept records in the input format), ``train.jsonl`` and ``validation.jsonl``
(chat layout, for evaluation), ``report.json`` (a :class:`v1alpha1.DataReport`), ``prepare.json``
(details that do not fit the report: every listed malformed line, settings, timings) and,
when a tokenizer is given, ``tokenized/`` (see :mod:`kubetune_trainer.data.tokenize`).

The report's ``digest`` is the sha256 of ``train.jsonl`` followed by ``validation.jsonl``: it
changes exactly when the data the model is trained and evaluated on changes.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer import fsutil
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.data import balance, dedup, pii, quality, reader, records

log = logging.getLogger(__name__)

CLEANED_FILE = "cleaned.jsonl"
REPORT_FILE = "report.json"
DETAILS_FILE = "prepare.json"


@dataclass(slots=True)
class CleanResult:
    """Output of :func:`clean`.

    Attributes:
        train: training records.
        validation: held-out records.
        kept: all kept records (train and validation) in input order.
        dropped: records dropped, by reason.
        redactions: PII replaced, by entity.
        intents_before: distribution of the balancing field after dedup, before balancing.
        intents_after: distribution after balancing.
        warnings: e.g. intents under ``minPerIntent``.
    """

    train: list[records.Record]
    validation: list[records.Record]
    kept: list[records.Record]
    dropped: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)
    intents_before: dict[str, int] = field(default_factory=dict)
    intents_after: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def redact_records(items: Sequence[records.Record], spec: v1alpha1.PIIRedactionSpec) -> Counter[str]:
    """Redact every text of every record in place.

    Besides the dialogue texts, the strings in a record's other fields (an ``id``, a ``customer``
    object...) are redacted too, since ``cleaned.jsonl`` writes them back.

    Returns:
        Redactions per entity.
    """
    if not spec.enabled:
        return Counter()
    redactor = pii.Redactor(spec.entities)
    for record in items:
        for segment in record.segments:
            segment.text = redactor.redact(segment.text)
        texts = {segment.key for segment in record.segments} | {"messages"}
        for key, value in record.source.items():
            if key not in texts:
                record.source[key] = _redact_value(value, redactor)
    return redactor.counts


def _redact_value(value: Any, redactor: pii.Redactor) -> Any:
    """Redact every string inside a JSON value."""
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, list):
        return [_redact_value(item, redactor) for item in value]
    if isinstance(value, dict):
        return {key: _redact_value(item, redactor) for key, item in value.items()}
    return value


def clean(
    items: list[records.Record],
    spec: v1alpha1.DatasetSpec,
    *,
    seed: int = 42,
    classifier: quality.QualityClassifier | None = None,
) -> CleanResult:
    """Run the cleaning steps on parsed records (no I/O).

    Args:
        items: parsed records; their texts are redacted in place.
        spec: the dataset spec (cleaning settings and validation split).
        seed: seed for down-sampling and the split.
        classifier: optional quality classifier (see :class:`quality.QualityClassifier`).

    Returns:
        The splits and everything the report needs.
    """
    cleaning = spec.cleaning
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    redactions = redact_records(items, cleaning.pii_redaction)
    seconds["redact"] = _lap(started)
    dropped: Counter[str] = Counter()
    kept = items
    if cleaning.quality_filter.enabled:
        started = time.perf_counter()
        kept, quality_dropped = quality.QualityFilter(cleaning.quality_filter, classifier).filter(kept)
        dropped.update(quality_dropped)
        seconds["quality"] = _lap(started)
    if cleaning.dedup.enabled:
        started = time.perf_counter()
        kept, dedup_dropped = dedup.deduplicate(kept, cleaning.dedup)
        dropped.update(dedup_dropped)
        seconds["dedup"] = _lap(started)
    balanced = balance.balance(kept, cleaning.balance, seed)
    if balanced.downsampled:
        dropped["maxPerIntent"] += balanced.downsampled
    train, validation = balance.stratified_split(balanced.records, spec.validation_split, cleaning.balance.field, seed)
    return CleanResult(
        train=train,
        validation=validation,
        kept=balanced.records,
        dropped=dropped,
        redactions=redactions,
        intents_before=balanced.before,
        intents_after=balanced.after,
        warnings=balanced.warnings,
        seconds=seconds,
    )


def _lap(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def build_report(read: reader.ReadResult, result: CleanResult, digest: str) -> v1alpha1.DataReport:
    """The :class:`v1alpha1.DataReport` of a run (what the operator copies into the status)."""
    return v1alpha1.DataReport(
        records_in=read.lines,
        records_out=len(result.kept),
        train_records=len(result.train),
        validation_records=len(result.validation),
        malformed=read.malformed,
        dropped=dict(sorted(result.dropped.items())),
        redactions=dict(sorted(result.redactions.items())),
        intents_before=result.intents_before,
        intents_after=result.intents_after,
        warnings=[*read.error_summary(), *result.warnings],
        digest=f"sha256:{digest}",
    )


def _jsonl(lines: Iterable[str]) -> bytes:
    """JSON lines as UTF-8 (each line is ``json.dumps(obj, ensure_ascii=False)``)."""
    return "".join(line + "\n" for line in lines).encode("utf-8")


def run_prepare(
    source: str | Path | reader.ReadResult,
    spec: v1alpha1.DatasetSpec,
    output_dir: str | Path,
    *,
    tokenizer: str | Any | None = None,
    training: v1alpha1.TrainingSpec | None = None,
    classifier_dir: str | None = None,
    pvc_root: str = v1alpha1.PVC_MOUNT_ROOT,
    progress: bool = True,
) -> v1alpha1.DataReport:
    """Prepare a dataset end to end and write the output directory.

    Args:
        source: where to read (local path, ``pvc://`` or fsspec URL; ``spec.uri`` is not read,
            so a caller can pass a local copy), or records already read.
        spec: format, cleaning settings and validation split.
        output_dir: the directory to (re)create.
        tokenizer: a tokenizer location (see :func:`tokenize.load_tokenizer`) or a loaded
            tokenizer; ``None`` skips tokenization.
        training: ``maxSeqLength``, ``packing`` and ``seed`` (defaults if omitted).
        classifier_dir: overrides ``spec.cleaning.qualityFilter.classifierUri`` (e.g. a local copy).
        pvc_root: where ``pvc://`` claims are mounted.
        progress: show progress bars on stderr.

    Returns:
        The report (also written to ``output_dir/report.json``).

    Raises:
        TrainerError: on a missing or empty dataset, no valid record, or nothing left after cleaning.
    """
    with _collector_paused():
        return _run_prepare(source, spec, Path(output_dir), tokenizer, training, classifier_dir, pvc_root, progress)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while millions of small objects are built.

    The records hold no reference cycles, yet each collection walks all of them: with the
    collector on, parsing slows down by half. Reference counting still frees memory.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run_prepare(
    source: str | Path | reader.ReadResult,
    spec: v1alpha1.DatasetSpec,
    output_dir: Path,
    tokenizer: str | Any | None,
    training: v1alpha1.TrainingSpec | None,
    classifier_dir: str | None,
    pvc_root: str,
    progress: bool,
) -> v1alpha1.DataReport:
    training = training or v1alpha1.TrainingSpec()
    started = time.perf_counter()
    read = source if isinstance(source, reader.ReadResult) else _read(str(source), spec, pvc_root, progress)
    for error in read.error_summary():
        log.warning("malformed: %s", error)
    # Load the models first: a wrong path should fail before minutes of cleaning, not after.
    loaded_tokenizer = _load_tokenizer(tokenizer, pvc_root)
    classifier = _load_classifier(spec.cleaning.quality_filter, classifier_dir, pvc_root)
    _stage("clean", progress)
    result = clean(read.records, spec, seed=training.seed, classifier=classifier)
    if not result.kept:
        raise TrainerError(
            f"no record left after cleaning {len(read.records)} records (dropped: {dict(result.dropped)})"
        )
    for warning in result.warnings:
        log.warning("%s", warning)
    label = spec.cleaning.balance.field
    splits = {
        "train": _jsonl(record.chat_json(label) for record in result.train),
        "validation": _jsonl(record.chat_json(label) for record in result.validation),
    }
    report = build_report(read, result, hashlib.sha256(splits["train"] + splits["validation"]).hexdigest())
    with fsutil.atomic_dir(output_dir) as tmp:
        (tmp / CLEANED_FILE).write_bytes(_jsonl(record.source_json() for record in result.kept))
        for name, data in splits.items():
            (tmp / f"{name}.jsonl").write_bytes(data)
        meta = None
        if loaded_tokenizer is not None:
            meta = _tokenize(loaded_tokenizer, str(tokenizer), result, training, tmp, progress)
        _write_json(tmp / REPORT_FILE, report.to_k8s())
        where = "(records)" if isinstance(source, reader.ReadResult) else str(source)
        _write_json(
            tmp / DETAILS_FILE, _details(where, read, result, spec, training, meta, time.perf_counter() - started)
        )
    log.info(
        "prepared %d of %d records (%d train, %d validation) into %s",
        len(result.kept),
        read.lines,
        len(result.train),
        len(result.validation),
        output_dir,
    )
    return report


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")


def _load_tokenizer(tokenizer: str | Path | Any | None, pvc_root: str) -> Any:
    """The tokenizer object: loaded from a location, or as given."""
    if tokenizer is None or not isinstance(tokenizer, str | Path):
        return tokenizer
    from kubetune_trainer.data import tokenize

    return tokenize.load_tokenizer(str(tokenizer), pvc_root)


def _read(uri: str, spec: v1alpha1.DatasetSpec, pvc_root: str, progress: bool) -> reader.ReadResult:
    return reader.read_dataset(uri, spec.format, pvc_root=pvc_root, progress=progress)


def _stage(name: str, progress: bool) -> None:
    if progress:
        print(f"{name}...", file=sys.stderr, flush=True)


def _load_classifier(
    spec: v1alpha1.QualityFilterSpec, override: str | None, pvc_root: str
) -> quality.QualityClassifier | None:
    location = override or spec.classifier_uri
    if not spec.enabled or not location:
        return None
    resolved = reader.resolve_location(location, pvc_root)
    if resolved.startswith("hf://"):
        resolved = v1alpha1.parse_uri(resolved).authority
    elif "://" not in resolved and not Path(resolved).is_dir():
        raise TrainerError(f"quality classifier directory not found: {resolved}")
    try:
        return quality.QualityClassifier(resolved)
    except (OSError, ValueError) as err:
        raise TrainerError(f"cannot load the quality classifier from {location}: {err}") from err


def _tokenize(
    tokenizer: Any,
    location: str,
    result: CleanResult,
    training: v1alpha1.TrainingSpec,
    out: Path,
    progress: bool,
) -> dict[str, Any]:
    from kubetune_trainer.data import tokenize

    name = getattr(tokenizer, "name_or_path", "") or location
    splits = {"train": result.train, "validation": result.validation}
    return tokenize.tokenize_splits(
        tokenizer, splits, training, out / tokenize.TOKENIZED_DIR, tokenizer_name=name, progress=progress
    )


def _details(
    source: str,
    read: reader.ReadResult,
    result: CleanResult,
    spec: v1alpha1.DatasetSpec,
    training: v1alpha1.TrainingSpec,
    meta: dict[str, Any] | None,
    seconds: float,
) -> dict[str, Any]:
    """``prepare.json``: what the report has no field for."""
    return {
        "malformedLines": [{"line": error.line, "reason": error.reason} for error in read.errors],
        "source": source,
        "dataset": spec.model_dump(mode="json", by_alias=True, exclude={"uri"}),
        "seed": training.seed,
        "tokenized": None if meta is None else {k: v for k, v in meta.items() if k != "chatTemplate"},
        "seconds": {**result.seconds, "total": round(seconds, 3)},
    }


def write_report(report: v1alpha1.DataReport, path: str | Path) -> None:
    """Write a report as camelCase JSON, atomically."""
    with fsutil.atomic_file(path) as handle:
        handle.write(json.dumps(report.to_k8s(), indent=2, ensure_ascii=False))  # type: ignore[attr-defined]
