"""`wa-keeper demo`: the whole local stack with simulated accounts and a narrated fault script.

Starts the emulator suite (or reuses the one FIRESTORE_EMULATOR_HOST names),
sim-server and two connectors, pairs the accounts, then breaks things: a
wiped disk, a killed connector, a passing logout, a real logout, a stray
copy of a session. Exits 0 when every account came back as the script says
and nothing it started is left running (connector/demo/).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from connector.demo.script import MIN_ACCOUNTS

MAX_ACCOUNTS = 50
ROOT = Path(__file__).resolve().parents[2]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="local stack with simulated accounts and a narrated fault script (make demo)"
    )
    parser.add_argument(
        "--accounts",
        type=_accounts,
        default=10,
        help=f"simulated accounts ({MIN_ACCOUNTS}..{MAX_ACCOUNTS}, default 10)",
    )
    parser.add_argument("--fast", action="store_true", help="short lease TTL and backup interval, no pauses")
    parser.add_argument(
        "--keep-running", action="store_true", help="leave the stack up after the script (Ctrl-C stops it)"
    )
    parser.add_argument(
        "--json-report", type=_report_path, metavar="PATH", help="also write the final table as JSON"
    )
    # Internal: another emulator config, so development runs do not collide with `make test`'s ports.
    parser.add_argument(
        "--firebase-config", type=Path, default=ROOT / "firebase.json", help=argparse.SUPPRESS
    )
    parser.set_defaults(handler=run)


def _accounts(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if not MIN_ACCOUNTS <= value <= MAX_ACCOUNTS:
        raise argparse.ArgumentTypeError(
            f"must be {MIN_ACCOUNTS}..{MAX_ACCOUNTS} (the script needs {MIN_ACCOUNTS} accounts of its own)"
        )
    return value


def _report_path(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file path")
    if not path.absolute().parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {path.absolute().parent} does not exist")
    return path


def run(args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415

    from connector.demo.app import DemoOptions  # noqa: PLC0415
    from connector.demo.app import run as run_demo  # noqa: PLC0415

    options = DemoOptions(
        accounts=args.accounts,
        fast=args.fast,
        keep_running=args.keep_running,
        json_report=args.json_report,
        firebase_config=args.firebase_config.absolute(),
        root=ROOT,
    )
    console = Console()
    if not console.is_terminal:  # piped: wide enough that the final table stays readable
        console = Console(width=160)
    return run_demo(options, console)
