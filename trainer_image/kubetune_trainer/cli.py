"""Command line of the trainer: ``python -m kubetune_trainer prepare|train|evaluate|export|serve``.

Sub-commands live next to the code they drive and are imported lazily, so ``prepare`` does not
pay for importing torch and ``--help`` answers at once. Each command module provides
``add_arguments(parser)`` and ``run(args) -> int`` (the process exit code).
"""

from __future__ import annotations

import argparse
import logging
import sys

from kubetune.cli import add_lazy_subcommands

#: Sub-command name -> (module, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("kubetune_trainer.data.command", "clean, redact, dedup, balance, split and tokenize a dataset"),
    "train": ("kubetune_trainer.recipes.command", "fine-tune the base model (lora, qlora, prefix, freeze, full)"),
    "evaluate": ("kubetune_trainer.evaluate.command", "perplexity, BLEU and ROUGE-L on the validation set"),
    "export": ("kubetune_trainer.export.command", "merge the adapter and write the artifact manifest"),
    "serve": ("kubetune_trainer.serve.command", "build a Triton model repository and/or serve it locally"),
}


class TrainerError(Exception):
    """A failure the user can fix (bad input, missing file); printed without a traceback."""


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Build the parser, importing only the module of the sub-command being run."""
    parser = argparse.ArgumentParser(prog="python -m kubetune_trainer", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_lazy_subcommands(parser, COMMANDS, argv)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run one sub-command.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 on a usage or input error, 1 on other failures.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args))
    except TrainerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
