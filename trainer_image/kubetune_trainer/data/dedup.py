"""Exact and near-duplicate removal, fast enough for millions of short dialogues on one CPU.

Duplicates over-weight whatever they say and leak between the training and validation splits,
which flatters the evaluation. Support logs have many: the same canned answer pasted twice,
a message re-sent with one character changed.

Records are compared in a normalised form (:func:`normalize`): case folded, every run of
spaces and punctuation (full- or half-width) turned into one space, each turn marked with its
role. The normalisation is vectorised with numpy over batches of records.

* Exact duplicates: equal normalised records - a 128-bit BLAKE2 key per record.
* Near duplicates: estimated Jaccard similarity of the normalised records' character 5-gram
  sets at or above ``DedupSpec.similarityThreshold``. Character shingles work for Chinese,
  which has no spaces to split words on.

The near-duplicate search is MinHash LSH, written here rather than taken from ``datasketch``,
which hashes each shingle in Python (tens of microseconds per record). Here:

1. Signatures: one-permutation hashing. All shingles of a batch are hashed with numpy, split
   into 128 bins by their top bits, and the minimum of each bin is kept as an 8-bit
   fingerprint (0 = no shingle fell into the bin). Two records' share of equal non-empty bins,
   over the bins non-empty in either, estimates their Jaccard similarity (Li, Owen & Zhang,
   2012); the 8-bit fingerprints add a bias under 0.004.
2. Candidates: the signature is cut into bands, with as many rows per band as the threshold
   allows while still finding a pair at the threshold with probability >= 0.99. Records whose
   band is equal share a bucket. Every pair inside a bucket of up to 16 records is a candidate;
   a bigger bucket (templated text: thousands of records sharing boilerplate) is split further
   by the next bands' values (pairs sharing two or three bands), and whatever is still bigger
   is chained in input order.
3. Verification: each candidate pair's similarity is computed from the full signatures,
   vectorised; a record is dropped when it reaches the threshold with an earlier record that
   was kept.

All constants are fixed: the same input gives the same output.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from kubetune.api import v1alpha1

from kubetune_trainer.data import charclass, records

NUM_PERM = 128
SHINGLE = 5
#: Buckets up to this size contribute all their pairs; bigger ones are split by further bands.
MAX_BUCKET = 16
_SPLIT_DEPTH = 3
_BATCH = 8192
_VERIFY_CHUNK = 1 << 16
_MASK64 = (1 << 64) - 1
_KEY_MULTIPLIERS = np.array([(0x9E3779B97F4A7C15 * (2 * i + 1)) & _MASK64 for i in range(NUM_PERM)], dtype=np.uint64)


#: Code points (private use area) marking where each role's text starts in a normalised record.
_ROLE_MARKS = {records.SYSTEM: "\ue000", records.USER: "\ue001", records.ASSISTANT: "\ue002"}
_FIRST_MARK, _LAST_MARK = 0xE000, 0xE002
_SPACE = 0x20
_PAD = 0x01  # fills records shorter than a shingle


@dataclass(frozen=True, slots=True)
class Normalized:
    """Normalised records as one code point array: record ``i`` is ``points[starts[i]:starts[i] + lengths[i]]``."""

    points: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray


def normalize(items: Sequence[records.Record]) -> Normalized:
    """Normalise records for comparison, vectorised over the batch.

    Case is folded; each run of characters that are neither letters nor digits (spaces,
    punctuation, full- or half-width) becomes one space, dropped at the start or end of a turn;
    each non-empty turn is preceded by a mark of its role, so a question and an answer never
    compare equal.

    Returns:
        The normalised records.
    """
    texts = [
        "".join(_ROLE_MARKS[segment.role] + segment.text for segment in record.segments if segment.text).casefold()
        for record in items
    ]
    points, starts, lengths = charclass.codepoints(texts)
    classes = charclass.classes(points)
    word = (classes == charclass.WORD) | (classes == charclass.DIGIT)
    mark = (points >= _FIRST_MARK) & (points <= _LAST_MARK)
    boundary = np.zeros(len(points), dtype=bool)
    boundary[starts + lengths] = True
    other = ~(word | mark | boundary)
    after_word = np.concatenate(([False], word[:-1]))
    kept = np.where(other, np.uint32(_SPACE), points)[word | mark | boundary | (other & after_word)]
    # A space left before a role mark or the end of the record is a turn's trailing punctuation.
    trailing = np.zeros(len(kept), dtype=bool)
    trailing[:-1] = (kept[:-1] == _SPACE) & ((kept[1:] == 0) | ((kept[1:] >= _FIRST_MARK) & (kept[1:] <= _LAST_MARK)))
    kept = kept[~trailing]
    ends = np.flatnonzero(kept == 0)  # the record separators (a NUL inside a text became a space)
    new_starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    return Normalized(kept, new_starts, ends - new_starts)


def exact_keys(normalized: Normalized) -> list[bytes]:
    """A 128-bit BLAKE2 digest of each normalised record."""
    data = normalized.points.astype("<u4").tobytes()
    return [
        hashlib.blake2b(data[4 * start : 4 * (start + length)], digest_size=16).digest()
        for start, length in zip(normalized.starts.tolist(), normalized.lengths.tolist(), strict=True)
    ]


def _mix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, in place: spreads the bits of each uint64."""
    values ^= values >> np.uint64(30)
    values *= np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    values ^= values >> np.uint64(31)
    return values


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` for each pair, vectorised."""
    before = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.repeat(starts - before, lengths) + np.arange(int(lengths.sum()))


def _shingle_hashes(normalized: Normalized, shingle: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every character shingle of every record, and the record index of each."""
    padded_lengths = np.maximum(normalized.lengths, shingle)
    padded_starts = np.concatenate(([0], np.cumsum(padded_lengths)[:-1]))
    padded = np.full(int(padded_lengths.sum()), _PAD, dtype=np.uint64)
    padded[_ranges(padded_starts, normalized.lengths)] = normalized.points[
        _ranges(normalized.starts, normalized.lengths)
    ]
    windows = len(padded) - shingle + 1
    rolled = padded[:windows].copy()
    for j in range(1, shingle):
        rolled *= np.uint64(0x100000001B3)
        rolled += padded[j : j + windows]
    counts = padded_lengths - shingle + 1
    owner = np.repeat(np.arange(len(counts)), counts)
    return _mix64(rolled[_ranges(padded_starts, counts)]), owner


def _signatures(normalized: Normalized, num_perm: int, shingle: int) -> np.ndarray:
    shift = np.uint64(64 - (num_perm.bit_length() - 1))
    count = len(normalized.lengths)
    hashes, owner = _shingle_hashes(normalized, shingle)
    empty = np.uint32(0xFFFFFFFF)
    minima = np.full(num_perm * count, empty, dtype=np.uint32)
    slot = (hashes >> shift).astype(np.int64) * count + owner
    np.minimum.at(minima, slot, (hashes & np.uint64(0xFFFFFFFE)).astype(np.uint32))
    fingerprints = np.where(minima == empty, 0, minima % 255 + 1).astype(np.uint8)
    return fingerprints.reshape(num_perm, count).T


def signatures(texts: Sequence[str], num_perm: int = NUM_PERM, shingle: int = SHINGLE) -> np.ndarray:
    """One-permutation MinHash signatures of the texts' character shingles (texts taken as they are).

    Args:
        texts: the texts.
        num_perm: signature length (a power of two, at least 8).
        shingle: characters per shingle.

    Returns:
        A ``(len(texts), num_perm)`` uint8 array of bin fingerprints, 0 where no shingle fell
        into the bin; see :func:`similarity`.
    """
    out = np.empty((len(texts), num_perm), dtype=np.uint8)
    for begin in range(0, len(texts), _BATCH):
        points, starts, lengths = charclass.codepoints(texts[begin : begin + _BATCH])
        out[begin : begin + len(lengths)] = _signatures(Normalized(points, starts, lengths), num_perm, shingle)
    return out


def fingerprint(
    items: Sequence[records.Record], *, with_signatures: bool = True
) -> tuple[list[bytes], np.ndarray | None]:
    """Exact keys and (optionally) MinHash signatures of normalised records, batch by batch.

    Returns:
        One key per record, and a ``(len(items), NUM_PERM)`` signature array or ``None``.
    """
    keys: list[bytes] = []
    sigs = np.empty((len(items), NUM_PERM), dtype=np.uint8) if with_signatures else None
    for begin in range(0, len(items), _BATCH):
        normalized = normalize(items[begin : begin + _BATCH])
        keys.extend(exact_keys(normalized))
        if sigs is not None:
            sigs[begin : begin + len(normalized.lengths)] = _signatures(normalized, NUM_PERM, SHINGLE)
    return keys, sigs


def choose_bands(threshold: float, num_perm: int = NUM_PERM, recall: float = 0.99) -> int:
    """Rows per band: the most (fewest candidate pairs) that still find a pair at ``threshold`` w.p. ``recall``."""
    rows = num_perm
    while rows > 1:
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            return rows
        rows //= 2
    return 1


def similarity(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of signature rows (broadcasting, along the last axis).

    Bins equal and non-empty in both, over bins non-empty in either (one-permutation estimator).
    """
    filled = np.count_nonzero(first | second, axis=-1)
    equal = np.count_nonzero((first == second) & (first != 0), axis=-1)
    return equal / np.maximum(filled, 1)


def band_keys(sigs: np.ndarray, rows: int) -> np.ndarray:
    """A 64-bit key per record and band of ``rows`` bins; 0 exactly when the band is all empty."""
    count, num_perm = sigs.shape
    contiguous = np.ascontiguousarray(sigs)
    if rows in (1, 2, 4, 8):
        return contiguous.view(f"<u{rows}").astype(np.uint64)
    words = contiguous.view("<u8").reshape(count, num_perm // rows, rows // 8)
    mixed = (words * _KEY_MULTIPLIERS[: rows // 8]).sum(axis=2, dtype=np.uint64) | np.uint64(1)
    return np.where(words.any(axis=2), mixed, np.uint64(0))


def _sorted_groups(keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort members by (key, id) and give each the size of its key group."""
    ascending = ids.size < 2 or bool((ids[1:] > ids[:-1]).all())
    order = np.argsort(keys, kind="stable") if ascending else np.lexsort((ids, keys))
    keys, ids = keys[order], ids[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    sizes = np.diff(np.append(starts, len(keys)))
    return keys, ids, np.repeat(sizes, sizes)


def _pairs_in_small_groups(keys: np.ndarray, ids: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """All (earlier, later) pairs inside groups of 2..MAX_BUCKET members; the members of bigger groups."""
    keys, ids, size = _sorted_groups(keys, ids)
    small = (size > 1) & (size <= MAX_BUCKET)
    pairs = []
    for distance in range(1, MAX_BUCKET):
        same = (keys[distance:] == keys[:-distance]) & small[distance:]
        if not same.any():
            break
        pairs.append(np.stack((ids[:-distance][same], ids[distance:][same]), axis=1))
    big = size > MAX_BUCKET
    return pairs, keys[big], ids[big]


def candidate_pairs(keys: np.ndarray) -> np.ndarray:
    """Unique (earlier, later) record pairs sharing a bucket (see the module docs).

    Args:
        keys: band keys from :func:`band_keys`, one column per band.

    Returns:
        A ``(pairs, 2)`` int64 array, sorted by the later record.
    """
    count, bands = keys.shape
    found: list[np.ndarray] = [np.zeros((0, 2), dtype=np.int64)]
    for band in range(bands):
        ids = np.flatnonzero(keys[:, band])
        group_keys = keys[ids, band]
        for depth in range(1, _SPLIT_DEPTH + 1):
            pairs, group_keys, ids = _pairs_in_small_groups(group_keys, ids)
            found.extend(pairs)
            if ids.size == 0:
                break
            if depth < _SPLIT_DEPTH:  # split the big groups by the next band's value
                group_keys = group_keys * _KEY_MULTIPLIERS[depth] + keys[ids, (band + depth) % bands]
        else:
            group_keys, ids, _ = _sorted_groups(group_keys, ids)
            same = group_keys[1:] == group_keys[:-1]
            found.append(np.stack((ids[:-1][same], ids[1:][same]), axis=1))
    pairs = np.concatenate(found).astype(np.int64)
    codes = np.unique(pairs[:, 1] * count + pairs[:, 0])
    return np.stack((codes % count, codes // count), axis=1)


def near_duplicate_flags(sigs: np.ndarray, threshold: float) -> np.ndarray:
    """Mark each row that is a near duplicate of an earlier kept row.

    Args:
        sigs: signatures from :func:`signatures`, in record order.
        threshold: estimated Jaccard similarity at or above which two records are duplicates.

    Returns:
        A boolean array, True for rows to drop.
    """
    pairs = candidate_pairs(band_keys(sigs, choose_bands(threshold, sigs.shape[1])))
    similar = np.zeros(len(pairs), dtype=bool)
    for begin in range(0, len(pairs), _VERIFY_CHUNK):  # chunks small enough to stay in cache
        chunk = pairs[begin : begin + _VERIFY_CHUNK]
        first, second = np.take(sigs, chunk[:, 0], axis=0), np.take(sigs, chunk[:, 1], axis=0)
        similar[begin : begin + len(chunk)] = similarity(first, second) >= threshold
    flags = np.zeros(len(sigs), dtype=bool)
    for earlier, later in pairs[similar].tolist():  # sorted by the later record: earlier ones are final
        if not flags[earlier]:
            flags[later] = True
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
    keys, sigs = fingerprint(items, with_signatures=spec.near_duplicates)
    seen: set[bytes] = set()
    first: list[int] = []
    for index, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            first.append(index)
    if len(first) < len(items):
        dropped["exactDuplicate"] = len(items) - len(first)
    if sigs is None or len(first) < 2:
        return [items[index] for index in first], dropped
    flags = near_duplicate_flags(sigs[first], spec.similarity_threshold)
    if flags.any():
        dropped["nearDuplicate"] = int(flags.sum())
    return [items[index] for index, drop in zip(first, flags.tolist(), strict=True) if not drop], dropped
