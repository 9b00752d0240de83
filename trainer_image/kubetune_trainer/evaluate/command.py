"""``python -m kubetune_trainer evaluate``: score the trained model and write ``reports/metrics.json``.

The step measures and reports; it does not judge. It exits 0 even when a threshold is missed
(printing each miss), because the gate belongs to the operator, which reads ``metrics.json``
and applies :func:`~kubetune_trainer.evaluate.thresholds.check_thresholds` itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1

from kubetune_trainer.config import DEFAULT_CONFIG_PATH, load_config
from kubetune_trainer.evaluate import text_metrics
from kubetune_trainer.evaluate.thresholds import check_thresholds
from kubetune_trainer.fsutil import atomic_file

log = logging.getLogger(__name__)

#: The metrics file (keys of ``v1alpha1.Metrics``, camelCase).
METRICS_FILE = "metrics.json"
#: Generated responses next to their references, for people to read (first samples only).
SAMPLES_FILE = "evaluation-samples.json"
SAMPLES_KEPT = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the evaluate sub-command."""
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="trainer config (JSON or YAML)")


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the metrics, print threshold misses; always 0 once metrics are written."""
    config = load_config(args.config)
    evaluation = config.spec.evaluation
    if not evaluation.enabled:
        log.info("spec.evaluation.enabled is false: nothing to evaluate")
        return 0
    metrics, samples = evaluate(config)
    path = write_metrics(config.paths, metrics, samples)
    print(f"metrics written to {path}: {json.dumps(metrics.to_k8s(), sort_keys=True)}")
    failures = check_thresholds(metrics, evaluation.thresholds)
    for failure in failures:
        print(f"threshold not met: {failure}")
    if evaluation.thresholds is not None and not failures:
        print("all thresholds met")
    return 0


def evaluate(config: v1alpha1.TrainerConfig) -> tuple[v1alpha1.Metrics, list[dict[str, str]]]:
    """Compute the metrics listed in ``spec.evaluation.metrics``.

    Args:
        config: the run's config; the trained model comes from ``checkpoints/final``.

    Returns:
        The metrics, and the generated samples (prompt, reference, response) when any were generated.
    """
    from kubetune_trainer.recipes import trained

    wanted = set(config.spec.evaluation.metrics)
    loaded = trained.load_trained(config.paths, dtype=trained.inference_dtype(config.spec.training.precision))
    values: dict[str, Any] = {}
    if v1alpha1.Metric.PERPLEXITY in wanted:
        values.update(_perplexities(config, loaded))
    samples: list[dict[str, str]] = []
    if wanted & {v1alpha1.Metric.BLEU, v1alpha1.Metric.ROUGE}:
        scores, samples = _generation_scores(config, loaded, wanted)
        values.update(scores)
    return v1alpha1.Metrics(**_finite(values)), samples


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """Drop values JSON cannot carry (an overflowing perplexity); the gate then fails them as not measured."""
    kept = {key: value for key, value in values.items() if value is None or math.isfinite(value)}
    for key in values.keys() - kept.keys():
        log.warning("%s is not a finite number (%s); leaving it out of the metrics", key, values[key])
    return kept


def _perplexities(config: v1alpha1.TrainerConfig, loaded: Any) -> dict[str, float]:
    from kubetune_trainer.evaluate.perplexity import token_loss
    from kubetune_trainer.recipes import batching

    _, validation = batching.load_splits(config.paths.prepared_dir)
    examples = batching.unpack(validation)
    pad_token_id = loaded.tokenizer.pad_token_id
    tuned = token_loss(loaded.model, examples, pad_token_id=pad_token_id)
    if tuned.tokens == 0:
        log.warning("no response tokens in the validation split: no perplexity (is spec.dataset.validationSplit 0?)")
        return {}
    values = {"eval_loss": tuned.loss, "perplexity": tuned.perplexity}
    log.info("validation loss %.4f, perplexity %.3f over %d tokens", tuned.loss, tuned.perplexity, tuned.tokens)
    if config.spec.evaluation.compare_base_model:
        base = _base_loss(config, loaded, examples, pad_token_id)
        values["base_perplexity"] = base.perplexity
        log.info("base model perplexity %.3f", base.perplexity)
    return values


def _base_loss(config: v1alpha1.TrainerConfig, loaded: Any, examples: Any, pad_token_id: int) -> Any:
    from kubetune_trainer.evaluate.perplexity import token_loss
    from kubetune_trainer.recipes import trained

    if loaded.is_adapter:
        with loaded.model.disable_adapter():  # the base model is right there, under the adapter
            return token_loss(loaded.model, examples, pad_token_id=pad_token_id)
    base = trained.load_base_model(config.paths.base_model, dtype=next(loaded.model.parameters()).dtype)
    return token_loss(base, examples, pad_token_id=pad_token_id)


def _generation_scores(
    config: v1alpha1.TrainerConfig, loaded: Any, wanted: set[v1alpha1.Metric]
) -> tuple[dict[str, float], list[dict[str, str]]]:
    from kubetune_trainer.evaluate.generation import generate_responses
    from kubetune_trainer.evaluate.samples import load_samples

    evaluation = config.spec.evaluation
    samples = load_samples(config.paths.prepared_dir, evaluation.max_samples)
    if not samples:
        log.warning("no validation samples to generate from: no BLEU or ROUGE-L")
        return {}, []
    responses = generate_responses(
        loaded.model, loaded.tokenizer, [s.prompt for s in samples], max_new_tokens=evaluation.max_new_tokens
    )
    references = [s.reference for s in samples]
    scores: dict[str, float] = {}
    if v1alpha1.Metric.BLEU in wanted:
        scores["bleu"] = text_metrics.bleu(responses, references)
    if v1alpha1.Metric.ROUGE in wanted:
        scores["rouge_l"] = text_metrics.rouge_l(responses, references)
    log.info("generation metrics over %d samples: %s", len(samples), scores)
    kept = [
        {"prompt": s.prompt[-1]["content"], "reference": s.reference, "response": r}
        for s, r in zip(samples[:SAMPLES_KEPT], responses, strict=False)
    ]
    return scores, kept


def write_metrics(paths: v1alpha1.TrainerPaths, metrics: v1alpha1.Metrics, samples: list[dict[str, str]]) -> Path:
    """Write ``metrics.json`` (and the samples file) into the reports directory, atomically."""
    reports = Path(paths.reports_dir)
    if samples:
        with atomic_file(reports / SAMPLES_FILE) as handle:
            json.dump(samples, handle, ensure_ascii=False, indent=2)  # type: ignore[arg-type]
    path = reports / METRICS_FILE
    with atomic_file(path) as handle:
        json.dump(metrics.to_k8s(), handle, indent=2, sort_keys=True)  # type: ignore[arg-type]
    return path


def read_metrics(paths: v1alpha1.TrainerPaths) -> v1alpha1.Metrics | None:
    """The metrics written by :func:`write_metrics`, or ``None`` if evaluation did not run."""
    path = Path(paths.reports_dir) / METRICS_FILE
    if not path.is_file():
        return None
    return v1alpha1.Metrics.model_validate(json.loads(path.read_text(encoding="utf-8")))
