"""`wa-keeper backups ACCOUNT` and `wa-keeper restore ACCOUNT [--generation N] [--local]`.

`restore` without `--local` issues a restore command for the connector that holds
the account and waits for its result. With `--local` it restores straight into
this host's SESSIONS_PATH, for when no connector runs (it refuses while a
connector's lease on the account is live).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from connector.adapters.disk_sessions import check_account_id
from connector.commands.control import add_timeout, command_and_wait, live_holder
from connector.errors import KeeperError

if TYPE_CHECKING:
    from google.cloud import firestore

    from connector.ports import Manifest
    from connector.settings import Settings

HEADERS = ["generation", "time", "size", "good", "connector", "epoch", "chunks", "key"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = subparsers.add_parser("backups", help="list an account's backup generations")
    listing.add_argument("account")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=run_backups)

    restore = subparsers.add_parser("restore", help="restore an account's session from a backup generation")
    restore.add_argument("account")
    restore.add_argument("--generation", type=int, help="this generation (default: the newest good one)")
    restore.add_argument(
        "--local", action="store_true", help="restore into this host's SESSIONS_PATH (no connector running)"
    )
    restore.add_argument(
        "--require-persistent", action="store_true", help="fail when SESSIONS_PATH is on tmpfs/ramfs"
    )
    add_timeout(restore)
    restore.set_defaults(handler=run_restore)


def manifest_row(m: Manifest) -> list[str]:
    return [
        str(m.generation),
        m.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        f"{m.size:,}",
        "yes" if m.good else "no",
        m.connector_id,
        str(m.lease_epoch),
        str(m.chunk_count),
        m.key_id,
    ]


def run_backups(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415 - heavy imports only when the command runs

    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from connector import control_client as cc  # noqa: PLC0415
    from connector.adapters.firestore_backups import FirestoreBackupStore  # noqa: PLC0415
    from connector.settings import load_settings  # noqa: PLC0415

    check_account_id(args.account)
    manifests = FirestoreBackupStore(cc.connect(load_settings())).manifests(args.account)
    rows = [manifest_row(m) for m in manifests]
    if args.json:
        print(json.dumps([dict(zip(HEADERS, r, strict=True)) for r in rows], indent=2))
        return 0
    if not rows:
        print(f"{args.account} has no backup generation", file=sys.stderr)
        return 0
    table = Table(*HEADERS, title=f"{args.account}: {len(rows)} generations (newest first)")
    for row in rows:
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # piped: never cut the key ids
    return 0


def _lease(client: firestore.Client, account: str) -> tuple[int, str | None]:
    from wa_wire import Collections  # noqa: PLC0415

    snap = client.collection(Collections.LEASES).document(account).get()
    data = (snap.to_dict() or {}) if snap.exists else {}
    epoch = data.get("epoch", 0)
    return (epoch if isinstance(epoch, int) else 0), live_holder(data, snap.read_time)


def run_restore(args: argparse.Namespace) -> int:
    from connector import control_client as cc  # noqa: PLC0415
    from connector.settings import load_settings  # noqa: PLC0415

    check_account_id(args.account)
    settings = load_settings()
    if args.generation is not None and args.generation < 1:
        raise KeeperError("--generation must be a positive generation number")
    client = cc.connect(settings)
    if not args.local:
        return _restore_through_connector(client, args)
    return _restore_locally(client, settings, args)


def _restore_through_connector(client: firestore.Client, args: argparse.Namespace) -> int:
    """Issue a restore command to the account's holder and wait for it (connector/commands/control.py)."""
    from wa_wire import CommandAction  # noqa: PLC0415

    params: dict[str, object] = {} if args.generation is None else {"generation": args.generation}
    return command_and_wait(client, args.account, CommandAction.RESTORE, params, args.timeout)


def _restore_locally(client: firestore.Client, settings: Settings, args: argparse.Namespace) -> int:
    from connector.adapters.disk_sessions import DiskSessions  # noqa: PLC0415
    from connector.adapters.firestore_backups import FirestoreBackupStore  # noqa: PLC0415
    from connector.adapters.sessions_volume import check_sessions_path, raise_on_failure  # noqa: PLC0415
    from connector.backup_crypto import Keyring  # noqa: PLC0415
    from connector.clock import SystemClock  # noqa: PLC0415
    from connector.ports import MemoryEventSink  # noqa: PLC0415
    from connector.vault import SessionVault  # noqa: PLC0415

    checks = check_sessions_path(
        settings.sessions_path, args.require_persistent or settings.require_persistent
    )
    raise_on_failure(checks)
    for check in checks:
        if check.status != "pass":
            print(f"warning: SESSIONS_PATH {check.name}: {check.detail}", file=sys.stderr)
    epoch, holder = _lease(client, args.account)
    if holder is not None:
        raise KeeperError(
            f"{args.account} is held by connector {holder} (live lease): restore without --local, or stop it first"
        )
    clock, events = SystemClock(), MemoryEventSink()
    vault = SessionVault(
        DiskSessions(settings.sessions_path, clock),
        FirestoreBackupStore(client),
        Keyring.from_settings(settings),
        events,
        clock=clock,
        connector_id=f"cli-{settings.connector_id}"[:128],
    )
    outcome = vault.restore(args.account, epoch, args.generation)
    if not outcome.ok:
        raise KeeperError(
            f"restore of {args.account} failed: {failure_line(outcome.failures, outcome.detail)}"
        )
    for _generation, why in outcome.failures:
        print(f"warning: skipped {why}", file=sys.stderr)
    print(f"{args.account} restored to {vault.disk.path(args.account)}: {outcome.detail}")
    return 0


def failure_line(failures: tuple[tuple[int, str], ...], detail: str) -> str:
    """One line: the newest generation's reason, and how many older ones failed too."""
    if not failures:
        return detail
    more = f" (and {len(failures) - 1} older generation(s) failed too)" if len(failures) > 1 else ""
    return failures[0][1] + more
