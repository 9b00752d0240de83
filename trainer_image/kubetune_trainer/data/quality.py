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
  times in a row (digits and spaces excluded, so amounts like 1000000 are fine) maps to
  ``(1 - share) / 0.8``.

The symbol and repetition checks run on the assistant texts and on the prompt (the other turns
joined). They are computed with numpy over a batch of texts at once (character classes from a
lookup table matching the word and space classes of Python regular expressions), because per-text
regular expressions were the slowest part of the prepare step.

An optional classifier (``classifierUri``): a transformers sequence-classification model scores
the (prompt, response) pair; its probability of the "good" label (the label named good, high,
acceptable or positive, else the last label; sigmoid for a single-logit model) must reach the
threshold too (reason ``classifier``). It runs only on records the heuristics kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from kubetune.api import v1alpha1

from kubetune_trainer.data import charclass, records

#: Labels taken to mean "good quality" in a classifier's id2label.
GOOD_LABELS = ("good", "high", "acceptable", "positive")

_SEPARATOR = 5  # the class given to the separators between texts
_BATCH = 4096


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """Per-text counts the heuristic scores are computed from (arrays, one entry per text)."""

    length: np.ndarray
    spaces: np.ndarray
    symbols: np.ndarray
    controls: np.ndarray
    repeated: np.ndarray

    def symbol_scores(self) -> np.ndarray:
        """1.0 for ordinary text, falling as the share of symbols passes 30%; 0 with control characters."""
        visible = np.maximum(self.length - self.spaces - self.controls, 1)
        scores = np.clip((1.0 - self.symbols / visible) / 0.7, 0.0, 1.0)
        return np.where(self.controls > 0, 0.0, scores)

    def repetition_scores(self) -> np.ndarray:
        """1.0 for ordinary text, falling as more of it is a short unit repeated 4+ times in a row."""
        return np.clip((1.0 - self.repeated / np.maximum(self.length, 1)) / 0.8, 0.0, 1.0)


def text_features(texts: Sequence[str]) -> TextFeatures:
    """Count spaces, symbols, control characters and repeated-unit coverage of each text, vectorised.

    A "repeated unit" is 1-4 characters (no digits or spaces, so 1000000 or an indentation
    does not count) repeated at least 4 times in a row: 哈哈哈哈, okokokok, 好的好的好的好的.

    Args:
        texts: the texts.

    Returns:
        Their features.
    """
    if not texts:
        empty = np.zeros(0, dtype=np.int64)
        return TextFeatures(empty, empty, empty, empty, empty)
    # Every text is followed by a separator, so each text's counts are one reduceat segment.
    codepoints, starts, lengths = charclass.codepoints(texts)
    classes = charclass.classes(codepoints)
    classes[starts + lengths] = _SEPARATOR
    eligible = (classes == charclass.WORD) | (classes == charclass.SYMBOL)

    def per_text(mask: np.ndarray) -> np.ndarray:
        return np.add.reduceat(mask.astype(np.int64), starts)

    return TextFeatures(
        length=lengths,
        spaces=per_text(classes == charclass.SPACE),
        symbols=per_text(classes == charclass.SYMBOL),
        controls=per_text(classes == charclass.CONTROL),
        repeated=per_text(_repeated_mask(codepoints, eligible)),
    )


def _repeated_mask(codepoints: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """True on every character inside a unit of 1-4 eligible characters repeated 4+ times in a row."""
    size = len(codepoints)
    delta = np.zeros(size + 1, dtype=np.int64)
    for unit in range(1, 5):
        if size <= unit:
            break
        # same[i]: character i equals character i + unit, both eligible.
        same = (codepoints[unit:] == codepoints[:-unit]) & eligible[unit:] & eligible[:-unit]
        edges = np.diff(np.concatenate(([0], same.view(np.int8), [0])))
        run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        long_runs = run_ends - run_starts >= 3 * unit  # period `unit` over 4+ repetitions
        np.add.at(delta, run_starts[long_runs], 1)
        np.add.at(delta, run_ends[long_runs] + unit, -1)
    return np.cumsum(delta[:size]) > 0


def symbol_score(text: str) -> float:
    """The symbol score of one text (see :meth:`TextFeatures.symbol_scores`)."""
    return float(text_features([text]).symbol_scores()[0])


def repetition_score(text: str) -> float:
    """The repetition score of one text (see :meth:`TextFeatures.repetition_scores`)."""
    return float(text_features([text]).repetition_scores()[0])


def _normalize(text: str) -> str:
    """Case- and spacing-insensitive form, for the echo check."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True, slots=True)
class Verdict:
    """A record's quality score and, when it is under the threshold, why."""

    score: float
    reason: str | None = None


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
        """Score one record with the heuristics."""
        return self.assess_all([record])[0]

    def assess_all(self, items: Sequence[records.Record]) -> list[Verdict]:
        """Score records with the heuristics (vectorised over the batch).

        Returns:
            One verdict per record; ``reason`` is set when the score is under the threshold.
        """
        verdicts: list[Verdict] = []
        for begin in range(0, len(items), _BATCH):
            verdicts.extend(self._assess_batch(items[begin : begin + _BATCH]))
        return verdicts

    def _assess_batch(self, items: Sequence[records.Record]) -> list[Verdict]:
        hard: list[str | None] = []
        texts: list[str] = []
        owners: list[int] = []
        for index, record in enumerate(items):
            turns = record.turns()
            hard.append(self._hard_failure(turns))
            checked = [text for role, text in turns if role == records.ASSISTANT]
            checked.append("\n".join(text for role, text in turns if role != records.ASSISTANT))
            texts.extend(checked)
            owners.extend([index] * len(checked))
        features = text_features(texts)
        symbol = np.ones(len(items))
        repetition = np.ones(len(items))
        np.minimum.at(symbol, owners, features.symbol_scores())
        np.minimum.at(repetition, owners, features.repetition_scores())
        threshold = self.spec.threshold
        verdicts = []
        for reason, sym, rep in zip(hard, symbol.tolist(), repetition.tolist(), strict=True):
            if reason:
                verdicts.append(Verdict(0.0, reason))
            else:
                score, why = (sym, "nonText") if sym <= rep else (rep, "repetitive")
                verdicts.append(Verdict(score, why if score < threshold else None))
        return verdicts

    def _hard_failure(self, turns: list[tuple[str, str]]) -> str | None:
        """The reason for a score of 0 (empty, length, echo), if any."""
        previous_user = ""
        has_prompt = False
        for role, text in turns:
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
        for record, verdict in zip(items, self.assess_all(items), strict=True):
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
        if self.tokenizer.pad_token is None:  # batches are padded
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
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
