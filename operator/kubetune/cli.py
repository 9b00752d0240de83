"""The ``kubetune`` command: run the operator, generate CRDs, or run a FineTuneJob locally.

Sub-commands are imported lazily so that ``kubetune crds`` does not pay for kopf and
``kubetune run --local`` pays for torch only when it trains. Each command module provides
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Sub-command name -> (module, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("kubetune.handlers.app", "run the operator (kopf) against the current kubeconfig or in-cluster"),
    "crds": ("kubetune.crdgen", "write the CustomResourceDefinitions generated from the API models"),
    "run": ("kubetune.local", "run a FineTuneJob manifest on this machine (--local): prepare, train, serve"),
}


def add_lazy_subcommands(
    parser: argparse.ArgumentParser, commands: dict[str, tuple[str, str]], argv: list[str]
) -> None:
    """Add one sub-command per entry; import (and ask for arguments) only the one being run.

    Args:
        parser: the top-level parser.
        commands: name -> (module providing ``add_arguments`` and ``run``, one-line help).
        argv: the arguments about to be parsed, to find the chosen sub-command.
    """
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if a in commands), None)
    for name, (module_name, help_text) in commands.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_run=module.run)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run one sub-command.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="kubetune", description=__doc__.splitlines()[0])
    add_lazy_subcommands(parser, COMMANDS, argv)
    args = parser.parse_args(argv)
    return int(args._run(args))
