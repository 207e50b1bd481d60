"""`wa-keeper wipe ACCOUNT --yes`, `reconnect ACCOUNT`, `release ACCOUNT`: issue a command, wait for its result.

Each writes one `commands/{id}` document (`issued_by: cli:<user>`); the connector
holding the account's lease claims and runs it. The wait shows the command's
progress (pending, claimed by whom, done or failed) and ends at `--timeout`.
The command expires at that same moment, so a command the operator gave up on
is never run later by a connector that comes up afterwards (a wipe an hour late
would be a nasty surprise). `restore` (connector/commands/backups.py) waits the
same way.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from connector.adapters.disk_sessions import check_account_id
from connector.errors import KeeperError
from wa_wire import CommandAction, CommandStatus

if TYPE_CHECKING:
    from google.cloud import firestore

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_TIMEOUT_S = 120.0


class CommandNotFinished(KeeperError):
    """The wait ended before the command reached a final status."""


def positive_seconds(text: str) -> float:
    """argparse type: a positive number of seconds (else a usage error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds, got {text}")
    return value


def add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds to wait for the result; the command expires then (default {DEFAULT_TIMEOUT_S:.0f})",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wipe = subparsers.add_parser(
        "wipe", help="delete an account's disk session and every backup generation (needs --yes)"
    )
    wipe.add_argument("account")
    wipe.add_argument("--yes", action="store_true", help="confirm: the account will need a new QR scan")
    add_timeout(wipe)
    wipe.set_defaults(handler=run_wipe)

    reconnect = subparsers.add_parser(
        "reconnect", help="stop the account's worker and connect again (the restore order runs first)"
    )
    reconnect.add_argument("account")
    add_timeout(reconnect)
    reconnect.set_defaults(handler=run_reconnect)

    release = subparsers.add_parser(
        "release",
        help="move the account off its host: final backup, lease freed; another host takes it"
        " (with none, its host takes it back after 10 s)",
    )
    release.add_argument("account")
    add_timeout(release)
    release.set_defaults(handler=run_release)


def run_wipe(args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            f"wa-keeper: wipe deletes {args.account}'s disk session and every backup (a new QR scan "
            "follows): add --yes to confirm",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return issue_and_wait(args.account, CommandAction.WIPE, {}, args.timeout)


def run_reconnect(args: argparse.Namespace) -> int:
    return issue_and_wait(args.account, CommandAction.RECONNECT, {}, args.timeout)


def run_release(args: argparse.Namespace) -> int:
    return issue_and_wait(args.account, CommandAction.RELEASE, {}, args.timeout)


def issue_and_wait(account: str, action: CommandAction, params: dict[str, object], timeout_s: float) -> int:
    from connector import control_client as cc  # noqa: PLC0415 - keeps `wa-keeper --help` fast
    from connector.settings import load_settings  # noqa: PLC0415

    check_account_id(account)
    client = cc.connect(load_settings())
    return command_and_wait(client, account, action, params, timeout_s)


def command_and_wait(
    client: firestore.Client,
    account: str,
    action: CommandAction,
    params: dict[str, object],
    timeout_s: float,
) -> int:
    """Issue `action` for a known account, show its progress, print its result; the exit code."""
    from connector import control_client as cc  # noqa: PLC0415
    from connector.clock import SystemClock  # noqa: PLC0415

    cc.account_doc(client, account)  # an unknown account is one clear line, and no command
    holder = lease_holder(client, account)
    command_id = cc.issue_command(client, SystemClock(), account, action, params=params, ttl_s=timeout_s)
    note = f"held by {holder}" if holder else "no connector holds it now; waiting for one to take it"
    print(f"{action.value} of {account} issued (command {command_id}; {note})", file=sys.stderr)
    final = wait_with_progress(client, command_id, account, action, timeout_s)
    code, line = outcome(action, account, final)
    if code != EXIT_OK:
        raise KeeperError(line)
    print(line)
    return code


def live_holder(lease: dict[str, Any], server_now: datetime) -> str | None:
    """The connector holding a lease that has not expired (judged on the server's clock)."""
    holder, renewed, ttl_ms = lease.get("holder"), lease.get("renewed_at"), lease.get("ttl_ms")
    if not isinstance(holder, str) or not isinstance(renewed, datetime) or not isinstance(ttl_ms, int):
        return None
    return holder if renewed + timedelta(milliseconds=ttl_ms) > server_now else None


def lease_holder(client: firestore.Client, account: str) -> str | None:
    """The connector whose lease on the account is live now, judged on Firestore's clock."""
    from wa_wire import Collections  # noqa: PLC0415

    snap = client.collection(Collections.LEASES).document(account).get()
    if not snap.exists:
        return None
    return live_holder(snap.to_dict() or {}, snap.read_time or datetime.now(UTC))


@dataclass
class Seen:
    """What the wait has seen of the command: its last version and the lines shown."""

    last: dict[str, Any]
    lines: list[str]


def describe(action: CommandAction, account: str, data: dict[str, Any]) -> str:
    """One progress line for a version of the command document."""
    status = str(data.get("status", "pending"))
    if status == CommandStatus.PENDING.value:
        return f"{action.value} of {account}: pending, waiting for the connector holding it to claim it"
    if status == CommandStatus.CLAIMED.value:
        return (
            f"{action.value} of {account}: claimed by {data.get('claimed_by', '?')} "
            f"(lease epoch {data.get('claimed_epoch', '?')}), running"
        )
    by = f" by {data['claimed_by']}" if data.get("claimed_by") else ""
    return f"{action.value} of {account}: {status}{by}"


def outcome(action: CommandAction, account: str, data: dict[str, Any]) -> tuple[int, str]:
    """The exit code and the one line to print for a command in a final status."""
    status = str(data.get("status"))
    result = data.get("result") if isinstance(data.get("result"), dict) else {}
    message = str((result or {}).get("message") or "").strip()
    what = f"{action.value} of {account}"
    if status == CommandStatus.DONE.value:
        return EXIT_OK, f"{what} done: {message}" if message else f"{what} done"
    if status == CommandStatus.EXPIRED.value:
        return EXIT_FAILURE, f"{what} expired before a connector claimed it"
    detail = message or str(data.get("error") or "no reason given")
    return EXIT_FAILURE, f"{what} {status}: {detail}"


def timeout_line(action: CommandAction, account: str, last: dict[str, Any], timeout_s: float) -> str:
    what = f"{action.value} of {account} did not finish within {timeout_s:g} s"
    if last.get("status") == CommandStatus.CLAIMED.value:
        return f"{what}: still running on {last.get('claimed_by', '?')} (see `wa-keeper status`)"
    return (
        f"{what}: no connector claimed it, so it expired unrun "
        "(is a connector running and holding the account? see `wa-keeper status`)"
    )


def wait_with_progress(
    client: firestore.Client, command_id: str, account: str, action: CommandAction, timeout_s: float
) -> dict[str, Any]:
    """Follow the command until a final status: one line per change, a spinner on a terminal."""
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import Progress as Bar  # noqa: PLC0415
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    from connector import control_client as cc  # noqa: PLC0415
    from wa_wire import Collections  # noqa: PLC0415

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    seen = Seen(last={}, lines=[])
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Bar(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"{action.value} of {account}: waiting", total=None)

        def on_change(data: dict[str, Any]) -> bool:
            seen.last = dict(data)
            line = describe(action, account, data)
            if not seen.lines or seen.lines[-1] != line:
                seen.lines.append(line)
                bar.update(task, description=line)
                bar.console.print(line)  # above the spinner: the history stays on screen
            return data.get("status") in cc.FINAL

        final = cc.watch_document(client, f"{Collections.COMMANDS}/{command_id}", on_change, timeout_s)
    if final is None:
        raise CommandNotFinished(timeout_line(action, account, seen.last, timeout_s))
    return final
