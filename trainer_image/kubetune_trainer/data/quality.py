"""Quality filter: drop records a model should not imitate.

Scraped support logs contain empty answers, agents pasting the customer's message back,
keyboard mashing ("好好好好好好"), binary garbage and answers too long to be chat. Fine-tuning on
them teaches exactly those habits, so each record gets a quality score in [0, 1] from cheap
heuristics, and records scoring under ``QualityFilterSpec.threshold`` are dropped with the
reason that scored lowest.

Heuristics (each gives a score; the record's score is the lowest):

* ``empty`` (0) - an assistant text or the whole prompt is blank.
* ``tooShort`` / ``tooLong`` (0) - an assistant text shorter than ``minChars`` or longer than
  ``maxChars`` characters (after trimming whitespace).
* ``echo`` (0) - an assistant text equals the user text before it (ignoring case and spacing).
* ``nonText`` - control characters or U+FFFD (decoding damage) give 0; otherwise the share of
  symbols (neither letter, digit nor space) maps to ``(1 - share) / 0.7``, so text that is more
  than about half symbols falls under the default threshold of 0.7.
* ``repetitive`` - the share of a text covered by a unit of 1-4 characters repeated 4 or more
  times in a row (digits excluded, so amounts like 1000000 are fine) maps to ``(1 - share) / 0.8``.

An optional classifier (``classifierUri``): a transformers sequence-classification model scores
the (prompt, response) pair; its probability of the "good" label (the label named good, high,
acceptable or positive, else the last label; sigmoid for a single-logit model) must reach the
threshold too (reason ``classifier``). It runs only on records the heuristics kept.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer.data import records

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_SYMBOL = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s")
_REPEATED_UNIT = re.compile(r"([^\d\s]{1,4}?)\1{3,}")

#: Labels taken to mean "good quality" in a classifier's id2label.
GOOD_LABELS = ("good", "high", "acceptable", "positive")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A record's quality score and, when it is under the threshold, why."""

    score: float
    reason: str | None = None


def _normalize(text: str) -> str:
    """Case- and spacing-insensitive form, for the echo check."""
    return " ".join(text.split()).casefold()


def symbol_score(text: str) -> float:
    """1.0 for ordinary text, falling as the share of symbols passes 30%; 0 for control characters."""
    if _CONTROL.search(text):
        return 0.0
    visible = len(text) - len(_SPACE.findall(text))
    if visible == 0:
        return 1.0
    share = len(_SYMBOL.findall(text)) / visible
    return min(1.0, max(0.0, (1.0 - share) / 0.7))


def repetition_score(text: str) -> float:
    """1.0 for ordinary text, falling as more of it is a short unit repeated 4+ times."""
    if len(text) < 4:
        return 1.0
    covered = sum(match.end() - match.start() for match in _REPEATED_UNIT.finditer(text))
    return min(1.0, max(0.0, (1.0 - covered / len(text)) / 0.8))


class QualityFilter:
    """Scores records with the heuristics (and the classifier, if given) of a :class:`QualityFilterSpec`."""

    def __init__(self, spec: v1alpha1.QualityFilterSpec, classifier: QualityClassifier | None = None) -> None:
        """Create a filter.

        Args:
            spec: thresholds and length limits.
            classifier: an optional model scoring (prompt, response) pairs.
        """
        self.spec = spec
        self.classifier = classifier

    def assess(self, record: records.Record) -> Verdict:
        """Score one record with the heuristics.

        Returns:
            The score; ``reason`` is set when the score is under the threshold.
        """
        hard = self._hard_failure(record)
        if hard:
            return Verdict(0.0, hard)
        prompt = "\n".join(text for role, text in record.turns() if role != records.ASSISTANT)
        scores: list[tuple[float, str]] = []
        for text in [*record.texts(records.ASSISTANT), prompt]:
            scores.append((symbol_score(text), "nonText"))
            scores.append((repetition_score(text), "repetitive"))
        score, reason = min(scores)
        return Verdict(score, reason if score < self.spec.threshold else None)

    def _hard_failure(self, record: records.Record) -> str | None:
        """The reason for a score of 0 (empty, length, echo), if any."""
        previous_user = ""
        has_prompt = False
        for role, text in record.turns():
            stripped = text.strip()
            if role != records.ASSISTANT:
                has_prompt = has_prompt or bool(stripped)
                previous_user = text if role == records.USER else previous_user
                continue
            if not stripped:
                return "empty"
            if len(stripped) < self.spec.min_chars:
                return "tooShort"
            if len(stripped) > self.spec.max_chars:
                return "tooLong"
            if previous_user and _normalize(text) == _normalize(previous_user):
                return "echo"
        return None if has_prompt else "empty"

    def filter(self, items: Sequence[records.Record]) -> tuple[list[records.Record], Counter[str]]:
        """Keep the records scoring at least the threshold.

        Args:
            items: records to filter.

        Returns:
            The kept records (in order) and the number dropped per reason.
        """
        kept: list[records.Record] = []
        dropped: Counter[str] = Counter()
        for record in items:
            verdict = self.assess(record)
            if verdict.reason:
                dropped[verdict.reason] += 1
            else:
                kept.append(record)
        if self.classifier is not None and kept:
            scores = self.classifier.score([prompt_and_response(record) for record in kept])
            passed = [record for record, score in zip(kept, scores, strict=True) if score >= self.spec.threshold]
            if len(passed) < len(kept):
                dropped["classifier"] += len(kept) - len(passed)
            kept = passed
        return kept, dropped


def prompt_and_response(record: records.Record) -> tuple[str, str]:
    """The text pair a classifier scores: everything before the last assistant turn, and that turn."""
    turns = record.turns()
    last = max(i for i, (role, _) in enumerate(turns) if role == records.ASSISTANT)
    prompt = "\n".join(text for _, text in turns[:last])
    return prompt, turns[last][1]


class QualityClassifier:
    """A transformers sequence-classification model used as a quality scorer."""

    def __init__(self, model_dir: str, *, batch_size: int = 32, max_length: int = 512) -> None:
        """Load the model and tokenizer from a local directory (or a hub name where one is reachable).

        Args:
            model_dir: a directory written by ``save_pretrained``.
            batch_size: pairs scored per forward pass.
            max_length: token limit per pair (longer pairs are truncated).
        """
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.good_index = good_label_index(self.model.config.id2label, self.model.config.num_labels)

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Probability of good quality for each (prompt, response) pair."""
        torch = self._torch
        out: list[float] = []
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start : start + self.batch_size]
            encoded = self.tokenizer(
                [p for p, _ in batch],
                [r for _, r in batch],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
            with torch.no_grad():
                logits = self.model(**encoded).logits.float()
            if logits.shape[-1] == 1:
                probs = torch.sigmoid(logits[:, 0])
            else:
                probs = torch.softmax(logits, dim=-1)[:, self.good_index]
            out.extend(float(p) for p in probs)
        return out


def good_label_index(id2label: dict[Any, str], num_labels: int) -> int:
    """Index of the "good quality" label: one named in :data:`GOOD_LABELS`, else the last one."""
    for index, name in id2label.items():
        if str(name).lower() in GOOD_LABELS:
            return int(index)
    return num_labels - 1
