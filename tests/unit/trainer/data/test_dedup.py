from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.data import dedup, records

_CHARS = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天"
)


def triple(context: str, response: str, followup: str = "") -> records.Record:
    parsed = records.parse_record(
        {"context": context, "response": response, "followup": followup}, v1alpha1.DatasetFormat.TRIPLE
    )
    assert isinstance(parsed, records.Record)
    return parsed


def random_text(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(length))


def shingles(text: str, size: int = dedup.SHINGLE) -> set[str]:
    return {text[i : i + size] for i in range(max(1, len(text) - size + 1))}


def jaccard(a: str, b: str) -> float:
    first, second = shingles(a), shingles(b)
    return len(first & second) / len(first | second)


def test_exact_duplicates_ignore_case_and_spacing_but_not_roles() -> None:
    items = [
        triple("Where is my order?", "It shipped."),
        triple("where  is my ORDER?", " It shipped. "),
        triple("It shipped.", "Where is my order?"),
        triple("Where is my order?", "It shipped.", "thanks"),
    ]
    kept, dropped = dedup.deduplicate(items, v1alpha1.DedupSpec(near_duplicates=False))
    assert kept == [items[0], items[2], items[3]]
    assert dropped == Counter({"exactDuplicate": 1})


def test_near_duplicates_of_chinese_dialogues_are_dropped() -> None:
    rng = random.Random(1)
    originals = [triple(random_text(rng, 60), random_text(rng, 80)) for _ in range(300)]
    near = []
    for record in originals[:50]:
        context = record.segments[0].text
        near.append(triple(context[:30] + "吗" + context[31:], record.segments[1].text + "。"))
    kept, dropped = dedup.deduplicate(originals + near, v1alpha1.DedupSpec())
    assert kept == originals
    assert dropped == Counter({"nearDuplicate": 50})


def test_punctuation_and_width_variants_are_exact_duplicates() -> None:
    items = [
        triple("您好，请问订单什么时候发货？", "您好！预计三天内发货。"),
        triple("您好,请问订单什么时候发货?", "您好!预计三天内发货."),
        triple("  您好 请问订单什么时候发货", "您好 预计三天内发货", ""),
    ]
    kept, dropped = dedup.deduplicate(items, v1alpha1.DedupSpec())
    assert kept == items[:1]
    assert dropped == Counter({"exactDuplicate": 2})


def test_normalize_folds_case_and_collapses_punctuation_per_turn() -> None:
    normalized = dedup.normalize([triple("Where IS my order?? ", " It shipped!", "a\x00b"), triple("x", "y")])
    texts = [
        "".join(map(chr, normalized.points[start : start + length]))
        for start, length in zip(normalized.starts, normalized.lengths, strict=True)
    ]
    assert texts == ["\ue001where is my order\ue002it shipped\ue001a b", "\ue001x\ue002y"]


def test_dissimilar_records_are_kept_even_when_they_share_boilerplate() -> None:
    rng = random.Random(2)
    boilerplate = "您好，感谢您的耐心等待，这边帮您查询了一下，"
    items = [triple(boilerplate + random_text(rng, 40), boilerplate + random_text(rng, 40)) for _ in range(500)]
    kept, dropped = dedup.deduplicate(items, v1alpha1.DedupSpec())
    assert kept == items
    assert not dropped


def test_the_threshold_separates_pairs_by_similarity() -> None:
    rng = random.Random(3)
    base = random_text(rng, 200)
    variants = {}
    for changed in (2, 8, 40):
        text = list(base)
        for position in rng.sample(range(200), changed):
            text[position] = "龘"
        variants[changed] = "".join(text)
    similarity = {changed: jaccard(base, text) for changed, text in variants.items()}
    assert similarity[2] > 0.9 and 0.6 < similarity[8] < 0.8 and similarity[40] < 0.4

    def survivors(changed: int, threshold: float) -> int:
        items = [triple(base, "ok"), triple(variants[changed], "ok")]
        return len(dedup.deduplicate(items, v1alpha1.DedupSpec(similarity_threshold=threshold))[0])

    assert [survivors(changed, 0.85) for changed in (2, 8, 40)] == [1, 2, 2]
    assert [survivors(changed, 0.5) for changed in (2, 8, 40)] == [1, 1, 2]


def test_signature_similarity_estimates_jaccard() -> None:
    rng = random.Random(4)
    pairs = []
    for _ in range(200):
        a = random_text(rng, 150)
        b = list(a)
        for position in rng.sample(range(150), rng.randint(1, 30)):
            b[position] = rng.choice(_CHARS)
        pairs.append((a, "".join(b)))
    sigs = dedup.signatures([text for pair in pairs for text in pair])
    estimates = dedup.similarity(sigs[0::2], sigs[1::2])
    truth = np.array([jaccard(a, b) for a, b in pairs])
    assert np.abs(estimates - truth).mean() < 0.05


def test_signatures_are_deterministic_and_mark_empty_bins() -> None:
    sigs = dedup.signatures(["abc", "abc", random_text(random.Random(6), 300)])
    assert (sigs[0] == sigs[1]).all()
    assert (sigs[0] == 0).sum() == dedup.NUM_PERM - 1  # one padded shingle, one bin
    assert (sigs[2] != 0).sum() > 100  # ~296 shingles fill most of the 128 bins
    assert np.array_equal(dedup.signatures(["abc"]), sigs[:1])


def test_choose_bands_keeps_recall_at_the_threshold() -> None:
    for threshold in (0.5, 0.7, 0.85, 0.95):
        rows = dedup.choose_bands(threshold)
        bands = dedup.NUM_PERM // rows
        assert 1 - (1 - threshold**rows) ** bands >= 0.99
    assert dedup.choose_bands(0.85) == 8
    assert dedup.choose_bands(0.95) == 16


@pytest.mark.parametrize("rows", [2, 4, 8, 16, 32])
def test_band_keys_are_zero_only_for_empty_bands(rows: int) -> None:
    sigs = np.zeros((2, dedup.NUM_PERM), dtype=np.uint8)
    sigs[1, 0] = 7
    keys = dedup.band_keys(sigs, rows)
    assert keys.shape == (2, dedup.NUM_PERM // rows)
    assert (keys[0] == 0).all()
    assert keys[1, 0] != 0
    assert (keys[1, 1:] == 0).all()


def distinct_keys(count: int, bands: int) -> np.ndarray:
    return (np.arange(count * bands, dtype=np.uint64) + 1).reshape(count, bands) * np.uint64(7919)


def test_small_buckets_give_all_their_pairs() -> None:
    keys = distinct_keys(6, 4)
    keys[[1, 3, 5], 2] = 42
    assert dedup.candidate_pairs(keys).tolist() == [[1, 3], [1, 5], [3, 5]]


def test_big_buckets_are_split_by_the_next_bands() -> None:
    keys = distinct_keys(400, 16)
    keys[:, 0] = 1  # boilerplate: everyone shares band 0
    for earlier, later in ((3, 250), (10, 11), (100, 399)):
        keys[later, 1] = keys[earlier, 1]
    assert dedup.candidate_pairs(keys).tolist() == [[10, 11], [3, 250], [100, 399]]


def test_buckets_still_big_after_splitting_are_chained() -> None:
    keys = distinct_keys(40, 16)
    keys[:, :3] = 5  # 40 records equal on three bands
    assert dedup.candidate_pairs(keys).tolist() == [[i, i + 1] for i in range(39)]


def test_empty_bands_are_not_buckets() -> None:
    keys = distinct_keys(3, 4)
    keys[:, 1] = 0
    assert dedup.candidate_pairs(keys).size == 0


def test_a_record_similar_only_to_a_dropped_one_is_kept() -> None:
    sigs = np.zeros((3, 16), dtype=np.uint8)
    sigs[0] = np.arange(1, 17)
    sigs[1] = sigs[0]
    sigs[1, :3] = 100  # 13/16 equal to row 0
    sigs[2] = sigs[1]
    sigs[2, 3:6] = 200  # 13/16 equal to row 1, 10/16 to row 0
    assert dedup.near_duplicate_flags(sigs, 0.8).tolist() == [False, True, False]


def test_dedup_disabled_near_or_too_few_records() -> None:
    items = [triple("a", "b")]
    assert dedup.deduplicate(items, v1alpha1.DedupSpec()) == (items, Counter())
