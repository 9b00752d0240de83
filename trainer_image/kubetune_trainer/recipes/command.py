"""``python -m kubetune_trainer train``: pick the recipe for the job and run it to the end or to SIGTERM."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from kubetune.api import v1alpha1

from kubetune_trainer import status
from kubetune_trainer.config import DEFAULT_CONFIG_PATH, load_config
from kubetune_trainer.fsutil import atomic_file
from kubetune_trainer.recipes import EXIT_INTERRUPTED, _distributed, _trainer, checkpoints, registry

log = logging.getLogger(__name__)

#: Report of the train step (step, loss history, whether it was interrupted).
TRAIN_REPORT = "training.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the train sub-command."""
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="trainer config (JSON or YAML)")
    parser.add_argument(
        "--resume",
        metavar="auto|none|PATH",
        help="checkpoint to resume from: auto (latest complete one, the default), none (from scratch, "
        "deleting old checkpoints) or a checkpoint directory; default: the config's resumeFrom, else auto",
    )
    parser.add_argument("--max-steps", type=int, help="override the number of steps (smoke runs)")
    parser.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help=f"save a checkpoint and exit with {EXIT_INTERRUPTED} at STEP, as a preemption would",
    )


def run(args: argparse.Namespace) -> int:
    """Train; exit 0 when done, :data:`EXIT_INTERRUPTED` when stopped early with a checkpoint."""
    config = load_config(args.config)
    if args.max_steps is not None:
        config = config.model_copy(update={"max_steps": args.max_steps})
    name = registry.select(config.spec, _distributed.world_size())
    options = _trainer.RunOptions(
        resume_from=checkpoints.resolve_resume(args.resume, config),
        stop_at=args.stop_at,
        reporter=status.make_reporter(config) if _distributed.is_main_process() else None,
    )
    log.info("recipe %s (method %s), attempt %d", name, config.spec.method.value, config.attempt)
    recipe = registry.load(name)(config, options)
    try:
        recipe.setup()
        result = recipe.train()
        if not result.interrupted:
            recipe.save_checkpoint()
    finally:
        recipe.cleanup()
    if _distributed.is_main_process():
        write_report(config, name, result)
    return EXIT_INTERRUPTED if result.interrupted else 0


def write_report(config: v1alpha1.TrainerConfig, recipe: str, result: _trainer.RunResult) -> Path:
    """Write ``reports/training.json`` (atomically)."""
    path = Path(config.paths.reports_dir) / TRAIN_REPORT
    report = {"recipe": recipe, "attempt": config.attempt, **result.to_json()}
    with atomic_file(path) as handle:
        json.dump(report, handle, indent=2)  # type: ignore[arg-type]
    return path
