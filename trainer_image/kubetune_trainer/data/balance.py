"""Intent balancing and the stratified validation split.

A support log is dominated by a few intents ("where is my order"); a model tuned on it
answers everything as if it were that. ``BalanceSpec`` caps each intent at ``maxPerIntent``
(a seeded random sample, kept in input order) and warns about intents under
``minPerIntent`` - those are kept, since dropping them would only make things worse, but the
user should collect more. The validation split is stratified by the same field so that rare
intents are evaluated too.

Records without the field are grouped under :data:`UNLABELED`.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from kubetune.api import v1alpha1

from kubetune_trainer.data import records

#: Group of the records that lack the balancing field.
UNLABELED = "(none)"


def group_key(record: records.Record, field_name: str) -> str:
    """The record's stratum: the field's value, or :data:`UNLABELED`."""
    value = record.label(field_name)
    return UNLABELED if value is None else value


def distribution(items: Sequence[records.Record], field_name: str) -> dict[str, int]:
    """Records per value of the field, most frequent first (ties by name)."""
    return _sorted_counts(Counter(group_key(record, field_name) for record in items))


def _sorted_counts(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _groups(keys: Sequence[str]) -> dict[str, list[int]]:
    """Indices of the records of each stratum, in input order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        groups[key].append(index)
    return groups


@dataclass(slots=True)
class BalanceResult:
    """What balancing did.

    Attributes:
        records: the kept records, in input order.
        before: distribution before balancing.
        after: distribution after balancing.
        downsampled: records removed by ``maxPerIntent``.
        warnings: intents under ``minPerIntent``.
    """

    records: list[records.Record]
    before: dict[str, int]
    after: dict[str, int]
    downsampled: int = 0
    warnings: list[str] = field(default_factory=list)


def balance(items: Sequence[records.Record], spec: v1alpha1.BalanceSpec, seed: int) -> BalanceResult:
    """Cap each intent at ``maxPerIntent`` and warn about those under ``minPerIntent``.

    Args:
        items: records in input order.
        spec: the balancing settings (``enabled`` false only reports the distribution).
        seed: seed of the down-sampling.

    Returns:
        The kept records and the distributions before and after.
    """
    keys = [group_key(record, spec.field) for record in items]
    before = _sorted_counts(Counter(keys))
    if not spec.enabled:
        return BalanceResult(list(items), before, before)
    rng = random.Random(seed)
    keep: list[int] = []
    groups = _groups(keys)
    for name in sorted(groups):
        indices = groups[name]
        if spec.max_per_intent is not None and len(indices) > spec.max_per_intent:
            indices = rng.sample(indices, spec.max_per_intent)
        keep.extend(indices)
    keep.sort()
    kept = [items[index] for index in keep]
    after = _sorted_counts(Counter(keys[index] for index in keep))
    warnings = [
        f"{spec.field} {name!r} has {count} records, below minPerIntent {spec.min_per_intent}"
        for name, count in after.items()
        if count < spec.min_per_intent
    ]
    return BalanceResult(kept, before, after, len(items) - len(kept), warnings)


def _quotas(groups: dict[str, list[int]], fraction: float, total: int) -> dict[str, int]:
    """Validation records per stratum: proportional, rounded by largest remainder to the overall target."""
    target = round(total * fraction)
    if fraction > 0 and total >= 2:
        target = max(target, 1)
    exact = {name: len(indices) * fraction for name, indices in groups.items()}
    quotas = {name: int(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - quotas[name]), name))
    for name in by_remainder[: max(0, target - sum(quotas.values()))]:
        quotas[name] += 1
    # Keep at least one training record in every stratum that has two or more.
    return {
        name: min(quota, len(groups[name]) - 1) if len(groups[name]) >= 2 else quota for name, quota in quotas.items()
    }


def stratified_split(
    items: Sequence[records.Record], fraction: float, field_name: str, seed: int
) -> tuple[list[records.Record], list[records.Record]]:
    """Hold out ``fraction`` of the records for validation, stratified by a field.

    Args:
        items: the records.
        fraction: share for validation (``DatasetSpec.validationSplit``).
        field_name: stratification field (``BalanceSpec.field``).
        seed: seed of the selection.

    Returns:
        ``(train, validation)``, each in input order.
    """
    groups = _groups([group_key(record, field_name) for record in items])
    quotas = _quotas(groups, fraction, len(items))
    rng = random.Random(seed)
    held_out: set[int] = set()
    for name in sorted(groups):
        held_out.update(rng.sample(groups[name], quotas[name]))
    train = [record for index, record in enumerate(items) if index not in held_out]
    validation = [record for index, record in enumerate(items) if index in held_out]
    return train, validation
