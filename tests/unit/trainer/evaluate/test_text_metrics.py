"""BLEU and ROUGE-L on Chinese and English responses."""

from __future__ import annotations

import pytest
from kubetune_trainer.evaluate import text_metrics


def test_char_tokenizer_splits_chinese_by_character_and_english_by_word() -> None:
    tokens = text_metrics.CharTokenizer().tokenize("您的订单 No.42 已发货, Thanks!")
    assert tokens == ["您", "的", "订", "单", "no", "42", "已", "发", "货", "thanks"]


def test_identical_responses_score_perfectly() -> None:
    refs = ["您的订单已发货，预计三天内送达。", "Your order has shipped and arrives in 3 days."]
    assert text_metrics.bleu(refs, refs) == pytest.approx(100)
    assert text_metrics.rouge_l(refs, refs) == pytest.approx(1)


def test_chinese_overlap_is_measured_not_dropped() -> None:
    # rouge-score's default tokenizer keeps [a-z0-9] only and would score this 0.
    score = text_metrics.rouge_l(["您的订单已经发货"], ["您的订单已发货"])
    assert score == pytest.approx(2 * 7 / (8 + 7))  # LCS 7 of 8 and 7 characters
    assert 0 < text_metrics.bleu(["您的订单已经发货了"], ["您的订单已发货了"]) < 100


def test_unrelated_responses_score_zero() -> None:
    assert text_metrics.bleu(["好的"], ["No thanks"]) == 0
    assert text_metrics.rouge_l(["好的"], ["No thanks"]) == 0


def test_empty_corpus_scores_zero() -> None:
    assert text_metrics.bleu([], []) == 0
    assert text_metrics.rouge_l([], []) == 0


@pytest.mark.parametrize("metric", [text_metrics.bleu, text_metrics.rouge_l])
def test_one_reference_per_hypothesis(metric: object) -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        metric(["a", "b"], ["a"])  # type: ignore[operator]
