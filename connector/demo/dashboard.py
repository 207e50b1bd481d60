"""The live terminal dashboard: one row per account, redrawn from the newest observations.

`render` is pure (a snapshot in, a rich renderable out); `Dashboard` only
runs rich's Live around it, and only on a terminal: piped output gets the
narration lines and the final table, not redraw codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from connector.demo.observe import AccountDoc, Snapshot

COLORS = {"connected": "green", "needs_qr": "red", "pairing": "magenta", "replaced": "red"}


def age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = max(0.0, (now - moment).total_seconds())
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def account_row(doc: AccountDoc | None, last_event: str, now: datetime) -> list[str]:
    """account status, holder, epoch, backup generation, backup age, strikes, last event."""
    if doc is None:
        return ["-", "-", "-", "-", "-", "-", last_event]
    generation = "-" if doc.backup_generation is None else str(doc.backup_generation)
    return [
        doc.status,
        doc.holder or "-",
        "-" if doc.epoch is None else str(doc.epoch),
        generation + (" good" if doc.backup_good else ""),
        age(doc.backup_at, now),
        str(doc.strikes),
        last_event,
    ]


def render(snapshot: Snapshot, accounts: Sequence[str], current: str, now: datetime) -> RenderableType:
    last: dict[str, str] = {}
    for event in snapshot.events:
        last[event.account] = event.type + (f" {event.reason_code}" if event.reason_code else "")
    table = Table(title=f"wa-keeper demo: {current}", title_justify="left", expand=False)
    for header in ("account", "status", "holder", "epoch", "backup", "backup age", "strikes", "last event"):
        table.add_column(header)
    for account in accounts:
        row = account_row(snapshot.docs.get(account), last.get(account, "-"), now)
        status = Text(row[0], style=COLORS.get(row[0], "yellow"))
        table.add_row(account, status, *row[1:])
    footer = Text(f"{len(snapshot.events)} lifecycle events seen", style="dim")
    return Group(table, footer)


class Dashboard:
    def __init__(self, console: Console, draw: Callable[[], RenderableType]) -> None:
        self._console, self._draw = console, draw
        self._live: Live | None = None

    @property
    def live(self) -> bool:
        return self._live is not None

    def start(self) -> None:
        if self._console.is_terminal:
            self._live = Live(get_renderable=self._draw, console=self._console, refresh_per_second=4)
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
