"""check_thresholds: the evaluation gate, including metrics that were never measured."""

from __future__ import annotations

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.evaluate.thresholds import check_thresholds

METRICS = v1alpha1.Metrics(perplexity=12.5, bleu=31.0, rouge_l=0.42)


def test_no_thresholds_no_gate() -> None:
    assert check_thresholds(METRICS, None) == []
    assert check_thresholds(v1alpha1.Metrics(), v1alpha1.ThresholdsSpec()) == []


def test_all_met_including_the_limits_themselves() -> None:
    thresholds = v1alpha1.ThresholdsSpec(max_perplexity=12.5, min_bleu=31.0, min_rouge_l=0.42)
    assert check_thresholds(METRICS, thresholds) == []


def test_every_miss_is_reported_with_the_field_to_change() -> None:
    thresholds = v1alpha1.ThresholdsSpec(max_perplexity=10, min_bleu=35, min_rouge_l=0.5)
    assert check_thresholds(METRICS, thresholds) == [
        "perplexity 12.5 is above spec.evaluation.thresholds.maxPerplexity 10",
        "BLEU 31 is below spec.evaluation.thresholds.minBleu 35",
        "ROUGE-L 0.42 is below spec.evaluation.thresholds.minRougeL 0.5",
    ]


@pytest.mark.parametrize(
    ("metrics", "thresholds", "name"),
    [
        (v1alpha1.Metrics(bleu=50), v1alpha1.ThresholdsSpec(max_perplexity=10), "perplexity"),
        (v1alpha1.Metrics(perplexity=2), v1alpha1.ThresholdsSpec(min_bleu=1), "BLEU"),
        (v1alpha1.Metrics(rouge_l=float("nan")), v1alpha1.ThresholdsSpec(min_rouge_l=0.1), "ROUGE-L"),
    ],
)
def test_a_threshold_on_an_unmeasured_metric_fails(
    metrics: v1alpha1.Metrics, thresholds: v1alpha1.ThresholdsSpec, name: str
) -> None:
    [failure] = check_thresholds(metrics, thresholds)
    assert failure.startswith(f"{name} was not measured")
