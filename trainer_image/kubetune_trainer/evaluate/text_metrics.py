"""BLEU and ROUGE-L of generated responses, made to work on Chinese as well as English.

Both metrics count overlapping tokens, so they are only as good as their tokenization, and the
usual defaults drop Chinese: ``rouge-score``'s tokenizer keeps ``[a-z0-9]`` only, so a Chinese
response scores zero. Here:

* BLEU uses sacrebleu's ``zh`` tokenizer (each CJK character is a token; other text is tokenized
  like ``13a``). Scores are corpus BLEU in 0-100.
* ROUGE-L uses :class:`CharTokenizer`: each CJK (or kana / hangul) character is one token, runs
  of Latin letters and digits are lower-cased words, and punctuation is dropped, mirroring what
  the default tokenizer does for English. Scores are the mean per-sample F1 in 0-1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: One CJK ideograph, kana or hangul syllable, or one run of ASCII letters/digits.
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[a-z0-9]+")


class CharTokenizer:
    """``rouge-score`` tokenizer: one token per CJK character, one per Latin word."""

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens (lower-cased; punctuation and spaces dropped)."""
        return _TOKEN.findall(text.lower())


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU with Chinese-aware tokenization.

    Args:
        hypotheses: generated responses.
        references: one reference response per hypothesis.

    Returns:
        BLEU in [0, 100]; 0 for an empty corpus.

    Raises:
        ValueError: if the two lists differ in length.
    """
    import sacrebleu

    _check_lengths(hypotheses, references)
    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize="zh").score)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 over samples, tokenized by :class:`CharTokenizer`.

    Args:
        hypotheses: generated responses.
        references: one reference response per hypothesis.

    Returns:
        ROUGE-L F1 in [0, 1]; 0 for an empty corpus.

    Raises:
        ValueError: if the two lists differ in length.
    """
    from rouge_score import rouge_scorer

    _check_lengths(hypotheses, references)
    if not hypotheses:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=CharTokenizer())
    scores = [scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references, strict=True)]
    return float(sum(scores) / len(scores))


def _check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
