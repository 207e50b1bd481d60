"""`wa-keeper` command line. Exit codes: 0 ok, 1 failure, 2 usage.

Every error reaches the operator as one line, never a traceback. Each command
lives in its own module under `connector/commands/` with a `register(subparsers)`
function that adds its parser and sets `handler` (a function of the parsed
arguments returning the exit code); heavy imports happen inside the handler.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from connector import __version__
from connector.commands import COMMANDS
from connector.errors import KeeperError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wa-keeper",
        description="Keeps WhatsApp multi-device sessions paired and backed up.",
    )
    parser.add_argument("--version", action="version", version=f"wa-keeper {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        result: int = args.handler(args)
        return result
    except KeeperError as exc:
        print(f"wa-keeper: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
