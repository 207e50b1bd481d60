"""`wa-keeper status`: a table of every account from Firestore."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("status", help="table of accounts (status, holder, epoch, backup age)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def _age(value: Any, now: datetime) -> str:
    if isinstance(value, datetime):
        return f"{(now - value).total_seconds():.0f} s"
    return "-"


def rows(docs: list[tuple[str, dict[str, Any]]], now: datetime) -> list[list[str]]:
    out = []
    for account, doc in docs:
        backup: dict[str, Any] = doc["backup"] if isinstance(doc.get("backup"), dict) else {}
        strikes: dict[str, Any] = doc["strikes"] if isinstance(doc.get("strikes"), dict) else {}
        out.append(
            [
                account,
                str(doc.get("status", "-")),
                str(doc.get("holder") or "-"),
                str(doc.get("lease_epoch", "-")),
                str(backup.get("generation", "-")),
                _age(backup.get("at"), now),
                str(strikes.get("count", 0)),
                str(doc.get("status_reason", ""))[:60],
            ]
        )
    return out


def run(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from connector import control_client as cc  # noqa: PLC0415
    from connector.settings import load_settings  # noqa: PLC0415
    from wa_wire import Collections  # noqa: PLC0415

    client = cc.connect(load_settings())
    docs = [(d.id, d.to_dict() or {}) for d in client.collection(Collections.ACCOUNTS).stream()]
    table_rows = rows(sorted(docs), datetime.now(UTC))
    headers = ["account", "status", "holder", "epoch", "backup", "backup age", "strikes", "reason"]
    if args.json:
        print(json.dumps([dict(zip(headers, r, strict=True)) for r in table_rows], indent=2))
        return 0
    table = Table(*headers, title=f"{len(table_rows)} accounts")
    for row in table_rows:
        table.add_row(*row)
    Console().print(table)
    return 0
