"""Throughput of the prepare step on synthetic dialogues, with naive baselines for comparison.

Run (about 3-5 minutes on 2 cores):

    python bench/data_pipeline.py                    # 200,000 records, results as a Markdown table
    python bench/data_pipeline.py --records 20000    # a quick look
    python bench/data_pipeline.py --json results.json

What is measured, in one process, on the same generated file:

1. ``prepare`` without tokenization (read, redact, quality, dedup, balance, split, write) -
   records/s over the whole ``run_prepare`` call, plus its per-stage seconds.
2. ``prepare`` with tokenization (a tiny byte-level BPE tokenizer with a ChatML template, packing
   to 2048 tokens) - records/s.
3. PII redaction alone: :class:`kubetune_trainer.data.pii.Redactor` against a naive version -
   one regular expression per entity applied one after the other to every text, each match
   checksum-verified in Python, no pre-filter and no combined pass.
4. Near-duplicate detection on a subset: this project's MinHash LSH against ``datasketch``
   (``MinHash`` with 128 permutations over the same 5-character shingles, ``MinHashLSH``).

The machine is shared with other work; the load average before and after each run is printed
so noisy numbers can be recognised, and the prepare runs also report records per CPU-second of
this process, which other work disturbs less than wall time (the tokenizer uses several threads,
so with tokenization CPU time exceeds wall time).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1
from kubetune_trainer import tiny
from kubetune_trainer.data import dedup, pii, pipeline, reader, synthetic


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "numpy": __import__("numpy").__version__,
    }


def load() -> float:
    return os.getloadavg()[0]


def timed(function: Any) -> tuple[Any, float, tuple[float, float]]:
    before = load()
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started, (before, load())


def cpu_timed(function: Any) -> tuple[Any, float, float, tuple[float, float]]:
    """Like :func:`timed`, plus the CPU seconds of this process (less sensitive to other load)."""
    cpu = time.process_time()
    result, seconds, load_range = timed(function)
    return result, seconds, time.process_time() - cpu, load_range


# --- naive PII baseline ---------------------------------------------------------------------------

_B = r"(?<![0-9A-Za-z])"
_A = r"(?![0-9A-Za-z])"
NAIVE_PATTERNS: list[tuple[str, re.Pattern[str], Any]] = [
    ("cnIdCard", re.compile(_B + r"\d{17}[\dXx]" + _A), pii.is_cn_id),
    (
        "cnMobile",
        re.compile(_B + r"(?:\+86[ -]?|0086[ -]?|86)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}" + _A),
        lambda value: True,
    ),
    (
        "bankCard",
        re.compile(_B + r"\d(?:[ -]?\d){12,18}" + _A),
        lambda value: pii.is_bank_card(re.sub(r"[ -]", "", value)),
    ),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), lambda value: True),
    (
        "ipAddress",
        re.compile(r"(?<![0-9.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![0-9])"),
        lambda value: True,
    ),
]


def naive_redact(text: str, counts: Counter[str]) -> str:
    for entity, pattern, verify in NAIVE_PATTERNS:

        def replace(match: re.Match[str], entity: str = entity, verify: Any = verify) -> str:
            if verify(match.group()):
                counts[entity] += 1
                return f"<{entity}>"
            return match.group()

        text = pattern.sub(replace, text)
    return text


def bench_pii(texts: list[str]) -> dict[str, Any]:
    redactor = pii.Redactor()
    _, fast, fast_load = timed(lambda: [redactor.redact(text) for text in texts])
    naive_counts: Counter[str] = Counter()
    _, slow, slow_load = timed(lambda: [naive_redact(text, naive_counts) for text in texts])
    return {
        "texts": len(texts),
        "redactor_texts_per_s": len(texts) / fast,
        "naive_texts_per_s": len(texts) / slow,
        "speedup": slow / fast,
        "redactor_counts": dict(redactor.counts),
        "naive_counts": dict(naive_counts),
        "load": [fast_load, slow_load],
    }


# --- near-duplicate baseline ----------------------------------------------------------------------


def bench_near_dup(items: list[Any], threshold: float) -> dict[str, Any]:
    from datasketch import MinHash, MinHashLSH

    spec = v1alpha1.DedupSpec(similarity_threshold=threshold)
    (_, dropped), ours, ours_load = timed(lambda: dedup.deduplicate(items, spec))

    def with_datasketch() -> int:
        normalized = dedup.normalize(items)
        lsh = MinHashLSH(threshold=threshold, num_perm=dedup.NUM_PERM)
        duplicates = 0
        for index, (start, length) in enumerate(zip(normalized.starts, normalized.lengths, strict=True)):
            text = "".join(map(chr, normalized.points[start : start + length]))
            shingles = {text[i : i + dedup.SHINGLE].encode() for i in range(max(1, len(text) - dedup.SHINGLE + 1))}
            signature = MinHash(num_perm=dedup.NUM_PERM)
            signature.update_batch(list(shingles))
            if lsh.query(signature):
                duplicates += 1
            else:
                lsh.insert(str(index), signature)
        return duplicates

    theirs_dropped, theirs, theirs_load = timed(with_datasketch)
    return {
        "records": len(items),
        "ours_records_per_s": len(items) / ours,
        "datasketch_records_per_s": len(items) / theirs,
        "ours_dropped": sum(dropped.values()),
        "datasketch_dropped": theirs_dropped,
        "load": [ours_load, theirs_load],
    }


# --- the whole step -------------------------------------------------------------------------------


def bench_prepare(source: Path, work: Path, tokenizer: str | None, records: int) -> dict[str, Any]:
    spec = v1alpha1.DatasetSpec(uri="pvc://bench/dialogues.jsonl")
    out = work / ("tokenized" if tokenizer else "cleaned")
    report, seconds, cpu, load_range = cpu_timed(
        lambda: pipeline.run_prepare(str(source), spec, out, tokenizer=tokenizer, progress=False)
    )
    details = json.loads((out / pipeline.DETAILS_FILE).read_text())
    return {
        "records": records,
        "seconds": seconds,
        "records_per_s": records / seconds,
        "cpu_seconds": cpu,
        "records_per_cpu_s": records / cpu,
        "stages": details["seconds"],
        "kept": report.records_out,
        "dropped": report.dropped,
        "tokens": None if not details["tokenized"] else details["tokenized"]["splits"]["train"]["tokens"],
        "load": load_range,
    }


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    clean, token = results["prepare"], results["prepare_tokenized"]
    p, d = results["pii"], results["near_dup"]

    def loads(pair: list[float]) -> str:
        return f"{pair[0]:.1f} → {pair[1]:.1f}"

    rows = [
        "| run | records | time (s) | throughput | load avg (1 min, before → after) |",
        "|---|---:|---:|---:|---|",
        f"| prepare, no tokenization | {clean['records']:,} | {clean['seconds']:.1f} | "
        f"**{clean['records_per_s']:,.0f} records/s** ({clean['records_per_cpu_s']:,.0f} per CPU-second) | "
        f"{loads(clean['load'])} |",
        f"| prepare, with tokenization (tiny BPE, packing 2048) | {token['records']:,} | {token['seconds']:.1f} | "
        f"{token['records_per_s']:,.0f} records/s ({token['records_per_cpu_s']:,.0f} per CPU-second) | "
        f"{loads(token['load'])} |",
        f"| PII redaction, `Redactor` | {p['texts']:,} texts | | {p['redactor_texts_per_s']:,.0f} texts/s | "
        f"{loads(p['load'][0])} |",
        f"| PII redaction, naive (5 regex passes, checksum every match) | {p['texts']:,} texts | | "
        f"{p['naive_texts_per_s']:,.0f} texts/s | {loads(p['load'][1])} |",
        f"| near-dup, `dedup.deduplicate` | {d['records']:,} | | {d['ours_records_per_s']:,.0f} records/s | "
        f"{loads(d['load'][0])} |",
        f"| near-dup, datasketch MinHash + MinHashLSH | {d['records']:,} | | "
        f"{d['datasketch_records_per_s']:,.0f} records/s | {loads(d['load'][1])} |",
    ]
    stages = ", ".join(f"{name} {value:.2f}" for name, value in clean["stages"].items())
    return "\n".join(
        [
            f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, numpy {m['numpy']}.",
            "",
            *rows,
            "",
            f"Stage seconds without tokenization: {stages}.",
            f"Kept {clean['kept']:,} of {clean['records']:,}; dropped {clean['dropped']}.",
            f"Redactions: Redactor {p['redactor_counts']}; naive {p['naive_counts']}.",
            f"Near-dup subset: ours dropped {d['ours_dropped']}, datasketch {d['datasketch_dropped']}.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pii-texts", type=int, default=150_000, help="texts for the redaction comparison")
    parser.add_argument("--dedup-records", type=int, default=20_000, help="records for the datasketch comparison")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the pipeline warns about small intents; not news here

    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="kubetune-bench-") as tmp:
        work = Path(tmp)
        generated, seconds, _ = timed(lambda: synthetic.generate(args.records, seed=args.seed))
        source = synthetic.write_jsonl(generated, work / "dialogues.jsonl")
        print(f"generated {args.records:,} records in {seconds:.1f}s", file=sys.stderr)
        tiny.build_tokenizer(vocab_size=1024).save_pretrained(work / "tokenizer")  # type: ignore[attr-defined]

        results["prepare"] = bench_prepare(source, work, None, args.records)
        print(f"prepare: {results['prepare']['records_per_s']:,.0f} records/s", file=sys.stderr)
        results["prepare_tokenized"] = bench_prepare(source, work, str(work / "tokenizer"), args.records)
        print(f"prepare+tokenize: {results['prepare_tokenized']['records_per_s']:,.0f} records/s", file=sys.stderr)

        texts = [text for item in generated for text in (item["context"], item["response"], item["followup"])]
        results["pii"] = bench_pii(texts[: args.pii_texts])
        subset = reader.parse_lines(
            [json.dumps(item, ensure_ascii=False) for item in generated[: args.dedup_records]],
            v1alpha1.DatasetFormat.TRIPLE,
        ).records
        results["near_dup"] = bench_near_dup(subset, v1alpha1.DedupSpec().similarity_threshold)

    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
