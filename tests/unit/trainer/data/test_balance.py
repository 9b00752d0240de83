from __future__ import annotations

from collections import Counter
from typing import Any

from kubetune.api import v1alpha1
from kubetune_trainer.data import balance, records


def make(counts: dict[str | None, int], field: str = "intent") -> list[records.Record]:
    items = []
    for label, count in counts.items():
        for i in range(count):
            obj: dict[str, Any] = {"context": f"{label} question {i}", "response": f"answer {i}"}
            if label is not None:
                obj[field] = label
            parsed = records.parse_record(obj, v1alpha1.DatasetFormat.TRIPLE, len(items) + 1)
            assert isinstance(parsed, records.Record)
            items.append(parsed)
    return items


def labels(items: list[records.Record], field: str = "intent") -> Counter[str]:
    return Counter(balance.group_key(record, field) for record in items)


def test_max_per_intent_downsamples_with_a_seed_and_keeps_order() -> None:
    items = make({"order": 100, "refund": 30, "complaint": 5})
    spec = v1alpha1.BalanceSpec(max_per_intent=20, min_per_intent=0)
    result = balance.balance(items, spec, seed=1)
    assert labels(result.records) == Counter({"order": 20, "refund": 20, "complaint": 5})
    assert [r.line for r in result.records] == sorted(r.line for r in result.records)
    assert result.downsampled == 90
    assert result.before == {"order": 100, "refund": 30, "complaint": 5}
    assert result.after == {"order": 20, "refund": 20, "complaint": 5}
    again = balance.balance(items, spec, seed=1)
    assert [r.line for r in again.records] == [r.line for r in result.records]
    other = balance.balance(items, spec, seed=2)
    assert [r.line for r in other.records] != [r.line for r in result.records]


def test_intents_under_min_per_intent_are_kept_with_a_warning() -> None:
    items = make({"order": 600, "refund": 30})
    result = balance.balance(items, v1alpha1.BalanceSpec(), seed=0)
    assert len(result.records) == 630
    assert result.warnings == ["intent 'refund' has 30 records, below minPerIntent 500"]


def test_disabled_balance_only_reports() -> None:
    items = make({"order": 10, "refund": 1})
    result = balance.balance(items, v1alpha1.BalanceSpec(enabled=False, max_per_intent=1), seed=0)
    assert result.records == items
    assert result.before == result.after == {"order": 10, "refund": 1}
    assert result.warnings == []


def test_records_without_the_field_form_their_own_group() -> None:
    items = make({"order": 3, None: 2})
    assert balance.distribution(items, "intent") == {"order": 3, balance.UNLABELED: 2}


def test_any_field_can_be_the_stratum() -> None:
    items = make({"billing": 4, "tech": 2}, field="team")
    result = balance.balance(items, v1alpha1.BalanceSpec(field="team", max_per_intent=3, min_per_intent=3), seed=0)
    assert result.after == {"billing": 3, "tech": 2}
    assert result.warnings == ["team 'tech' has 2 records, below minPerIntent 3"]


def test_stratified_split_holds_out_each_intent_proportionally() -> None:
    items = make({"order": 200, "refund": 100, "complaint": 10})
    train, validation = balance.stratified_split(items, 0.1, "intent", seed=3)
    assert labels(validation) == Counter({"order": 20, "refund": 10, "complaint": 1})
    assert len(train) + len(validation) == len(items)
    assert not {id(r) for r in train} & {id(r) for r in validation}
    assert [r.line for r in validation] == sorted(r.line for r in validation)


def test_split_rounds_to_the_overall_target_and_keeps_a_training_record_per_intent() -> None:
    items = make({"a": 3, "b": 3, "c": 3, "d": 1})
    train, validation = balance.stratified_split(items, 0.2, "intent", seed=0)
    assert len(validation) == 2
    assert set(labels(train)) >= {"a", "b", "c"}
    items = make({"a": 1, "b": 1})
    assert len(balance.stratified_split(items, 0.5, "intent", seed=0)[1]) == 1


def test_zero_split_and_tiny_datasets() -> None:
    items = make({"a": 5})
    assert balance.stratified_split(items, 0.0, "intent", seed=0) == (items, [])
    one = make({"a": 1})
    assert balance.stratified_split(one, 0.1, "intent", seed=0) == (one, [])
    assert len(balance.stratified_split(make({"a": 4}), 0.1, "intent", seed=0)[1]) == 1


def test_split_is_seeded() -> None:
    items = make({"a": 50, "b": 50})
    first = balance.stratified_split(items, 0.2, "intent", seed=9)[1]
    assert first == balance.stratified_split(items, 0.2, "intent", seed=9)[1]
    assert first != balance.stratified_split(items, 0.2, "intent", seed=10)[1]
