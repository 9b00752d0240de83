"""Validation prompts and reference responses for the generation metrics.

The prepare step keeps the cleaned validation records as chat messages
(:func:`kubetune_trainer.data.tokenize.load_cleaned_records`). For each record the prompt is
the conversation up to its *last* assistant message and the reference is that message: a
triple's trailing ``followup`` (a user turn after the response) is not part of the prompt, since
the response was written before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubetune_trainer.evaluate.generation import Messages


@dataclass(frozen=True)
class EvalSample:
    """One generation test: answer ``prompt`` and compare with ``reference``."""

    prompt: Messages
    reference: str


def load_samples(prepared_dir: str | Path, max_samples: int) -> list[EvalSample]:
    """The first ``max_samples`` validation records that have a prompt (``spec.evaluation.maxSamples``).

    Args:
        prepared_dir: the prepared data directory.
        max_samples: cap on the number of samples.

    Returns:
        The samples, in the split's order; empty when the validation split is.

    Raises:
        TrainerError: if the prepare step left no validation records file.
    """
    from kubetune_trainer.data import tokenize

    samples = [
        EvalSample(prompt=[dict(m) for m in record.prompt], reference=record.reference)
        for record in tokenize.load_cleaned_records(prepared_dir, "validation")
        if record.prompt
    ]
    return samples[:max_samples]
