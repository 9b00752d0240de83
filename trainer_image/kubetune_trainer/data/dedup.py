"""Exact and near-duplicate removal, fast enough for millions of short dialogues on one CPU.

Duplicates over-weight whatever they say and leak between the training and validation splits,
which flatters the evaluation. Support logs have many: the same canned answer pasted twice,
a message re-sent with one character changed.

* Exact duplicates: records whose texts are equal after NFKC normalisation, case folding and
  whitespace collapsing (role by role) - a 128-bit BLAKE2 key per record.
* Near duplicates: estimated Jaccard similarity of the records' character 5-gram sets (after
  also dropping punctuation) at or above ``DedupSpec.similarityThreshold``. Character shingles
  work for Chinese, which has no spaces to split words on.

The near-duplicate search is MinHash LSH, implemented here rather than with ``datasketch``
because datasketch hashes each shingle in Python (tens of microseconds per record); this
version hashes all shingles of a batch with numpy and uses one-permutation hashing (one hash
per shingle, split into 128 bins by its top bits, the minimum kept per bin) to get 128-value
signatures at a few microseconds per record. Bins no shingle fell into stay empty and are left
out of the similarity estimate. Bands of the signature are hashed into buckets; records sharing
a bucket with an already kept record are compared on their full signatures, and the later one
is dropped if the estimated similarity reaches the threshold.
The band layout is chosen from the threshold so a pair exactly at the threshold is found with
probability >= 0.99. Everything is seeded with fixed constants: same input, same output.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
from kubetune.api import v1alpha1

from kubetune_trainer.data import records

NUM_PERM = 128
SHINGLE = 5
_BATCH = 8192
#: Value of a signature bin no shingle fell into (real values have their lowest bit cleared).
EMPTY = np.uint32(0xFFFFFFFF)
_MASK64 = (1 << 64) - 1
_PUNCT = re.compile(r"[^\w]+")
_BAND_MULTIPLIERS = np.array([(0x9E3779B97F4A7C15 * (2 * i + 1)) & _MASK64 for i in range(NUM_PERM)], dtype=np.uint64)


def normalize(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the form exact duplicates are compared in."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def exact_key(record: records.Record) -> bytes:
    """A 128-bit digest of the record's normalised texts, role by role."""
    joined = "\x1e".join(f"{segment.role}\x1f{normalize(segment.text)}" for segment in record.segments)
    return hashlib.blake2b(joined.encode("utf-8"), digest_size=16).digest()


def near_text(record: records.Record) -> str:
    """The text near-duplicate detection compares: normalised, punctuation removed."""
    return " ".join(_PUNCT.sub(" ", normalize(segment.text)).strip() for segment in record.segments)


def _mix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: spreads the bits of each uint64."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def _shingle_hashes(texts: Sequence[str], shingle: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every character shingle of every text, and the text index of each."""
    padded = [text if len(text) >= shingle else text.ljust(shingle, "\x01") for text in texts]
    lengths = np.fromiter((len(text) for text in padded), dtype=np.int64, count=len(padded))
    codepoints = np.frombuffer("\x00".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    windows = len(codepoints) - shingle + 1
    rolled = np.zeros(windows, dtype=np.uint64)
    for j in range(shingle):
        rolled = rolled * np.uint64(0x100000001B3) + codepoints[j : j + windows]
    starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
    counts = lengths - shingle + 1
    owner = np.repeat(np.arange(len(padded)), counts)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    positions = np.arange(int(counts.sum())) - np.repeat(first, counts) + np.repeat(starts, counts)
    return _mix64(rolled[positions]), owner


def signatures(texts: Sequence[str], num_perm: int = NUM_PERM, shingle: int = SHINGLE) -> np.ndarray:
    """One-permutation MinHash signatures of the texts' character shingles.

    Args:
        texts: the texts (see :func:`near_text`).
        num_perm: signature length (a power of two).
        shingle: characters per shingle.

    Returns:
        A ``(len(texts), num_perm)`` uint32 array, :data:`EMPTY` in bins no shingle fell into;
        see :func:`similarity` for how two rows estimate the Jaccard similarity of two texts.
    """
    shift = np.uint64(64 - (num_perm.bit_length() - 1))
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    for begin in range(0, len(texts), _BATCH):
        batch = texts[begin : begin + _BATCH]
        hashes, owner = _shingle_hashes(batch, shingle)
        columns = np.full(num_perm * len(batch), EMPTY, dtype=np.uint32)
        slot = (hashes >> shift).astype(np.int64) * len(batch) + owner
        np.minimum.at(columns, slot, (hashes & np.uint64(0xFFFFFFFE)).astype(np.uint32))
        out[begin : begin + len(batch)] = columns.reshape(num_perm, len(batch)).T
    return out


def choose_bands(threshold: float, num_perm: int = NUM_PERM, recall: float = 0.99) -> int:
    """Rows per band: the most (fewest candidate pairs) that still find a pair at ``threshold`` w.p. ``recall``."""
    rows = num_perm
    while rows > 1:
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            return rows
        rows //= 2
    return 1


def similarity(sigs: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of ``row`` to each row of ``sigs``.

    The one-permutation estimator: bins where both are equal and non-empty, divided by bins
    where at least one is non-empty (Li, Owen & Zhang, 2012).
    """
    filled = (sigs != EMPTY) | (row != EMPTY)
    equal = (sigs == row) & filled
    return equal.sum(axis=1) / np.maximum(filled.sum(axis=1), 1)


def _band_keys(sigs: np.ndarray, rows: int) -> np.ndarray:
    """A 64-bit key per record and band; 0 for a band whose bins are all empty (not bucketed)."""
    bands = sigs.shape[1] // rows
    keys = np.empty((sigs.shape[0], bands), dtype=np.uint64)
    for band in range(bands):
        part = sigs[:, band * rows : (band + 1) * rows]
        keys[:, band] = (part.astype(np.uint64) * _BAND_MULTIPLIERS[:rows]).sum(axis=1) | np.uint64(1)
        keys[(part == EMPTY).all(axis=1), band] = 0
    return keys


def near_duplicate_flags(sigs: np.ndarray, threshold: float) -> np.ndarray:
    """Mark each row that is a near duplicate of an earlier kept row.

    Args:
        sigs: signatures from :func:`signatures`, in record order.
        threshold: estimated Jaccard similarity at or above which two records are duplicates.

    Returns:
        A boolean array, True for rows to drop.
    """
    keys = _band_keys(sigs, choose_bands(threshold, sigs.shape[1]))
    shared = np.zeros(keys.shape, dtype=bool)
    for band in range(keys.shape[1]):
        _, inverse, sizes = np.unique(keys[:, band], return_inverse=True, return_counts=True)
        shared[:, band] = (sizes[inverse] > 1) & (keys[:, band] != 0)
    flags = np.zeros(len(sigs), dtype=bool)
    kept_in_bucket: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index in np.flatnonzero(shared.any(axis=1)).tolist():
        buckets = [(band, int(keys[index, band])) for band in np.flatnonzero(shared[index]).tolist()]
        candidates = {other for bucket in buckets for other in kept_in_bucket.get(bucket, ())}
        if candidates:
            others = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
            if similarity(sigs[others], sigs[index]).max() >= threshold:
                flags[index] = True
                continue
        for bucket in buckets:
            kept_in_bucket[bucket].append(index)
    return flags


def deduplicate(items: Sequence[records.Record], spec: v1alpha1.DedupSpec) -> tuple[list[records.Record], Counter[str]]:
    """Drop exact duplicates, then near duplicates, keeping the first occurrence.

    Args:
        items: records in input order.
        spec: whether near duplicates are removed and the similarity threshold.

    Returns:
        The kept records (in order) and counts ``exactDuplicate`` / ``nearDuplicate``.
    """
    dropped: Counter[str] = Counter()
    seen: set[bytes] = set()
    unique: list[records.Record] = []
    for record in items:
        key = exact_key(record)
        if key in seen:
            dropped["exactDuplicate"] += 1
        else:
            seen.add(key)
            unique.append(record)
    if not spec.near_duplicates or len(unique) < 2:
        return unique, dropped
    flags = near_duplicate_flags(signatures([near_text(record) for record in unique]), spec.similarity_threshold)
    if flags.any():
        dropped["nearDuplicate"] += int(flags.sum())
    return [record for record, drop in zip(unique, flags.tolist(), strict=True) if not drop], dropped
