"""The evaluation gate: which thresholds a model misses.

The trainer prints the failures and the operator decides (a job that misses a threshold ends
Failed and is not deployed). Both call :func:`check_thresholds`, which is pure and imports only
the API models, so the gate reads the same wherever it is applied.
"""

from __future__ import annotations

import math

from kubetune.api import v1alpha1

_FIELD = "spec.evaluation.thresholds"


def check_thresholds(metrics: v1alpha1.Metrics, thresholds: v1alpha1.ThresholdsSpec | None) -> list[str]:
    """List the thresholds the metrics miss.

    A threshold that is set but whose metric was not measured (``None``) or is not a number
    fails too: a gate must not pass by omission.

    Args:
        metrics: the evaluation results.
        thresholds: the gate from ``spec.evaluation.thresholds`` (``None``: no gate).

    Returns:
        One human-readable message per failure, naming the spec field; empty when all pass.
    """
    if thresholds is None:
        return []
    failures: list[str] = []
    if thresholds.max_perplexity is not None:
        failures += _check("perplexity", metrics.perplexity, "maxPerplexity", thresholds.max_perplexity, upper=True)
    if thresholds.min_bleu is not None:
        failures += _check("BLEU", metrics.bleu, "minBleu", thresholds.min_bleu, upper=False)
    if thresholds.min_rouge_l is not None:
        failures += _check("ROUGE-L", metrics.rouge_l, "minRougeL", thresholds.min_rouge_l, upper=False)
    return failures


def _check(name: str, value: float | None, field: str, limit: float, *, upper: bool) -> list[str]:
    where = f"{_FIELD}.{field} {limit:g}"
    if value is None or math.isnan(value):
        return [f"{name} was not measured, but {where} is set (add it to spec.evaluation.metrics)"]
    if upper and value > limit:
        return [f"{name} {value:.4g} is above {where}"]
    if not upper and value < limit:
        return [f"{name} {value:.4g} is below {where}"]
    return []
