"""What sim-server's connection records say about double connections (pure; unit-tested).

Issue #6's safety property about WhatsApp rather than Firestore: a device is
never driven from two places at once for longer than the renew deadline.

sim-server, like WhatsApp, lets a second login of a device kick the first one
(`stream_replaced`), so its records of one device never overlap by more than an
instant. Two places driving one device therefore show up as *replacements*: a
record of one place ended by a login from another. One replacement is a
takeover that met a connection the old place had left open; a chain of them
(the old place logging in again and kicking the new one back, and so on) is
two places fighting over the device, from the first kick to the last.
`double_connections` reports both kinds, overlaps and replacement chains, with
their length.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wa_wire.codec import parse_timestamp

REPLACED = "stream_replaced"


@dataclass(frozen=True)
class Connection:
    """One sim-server connection record; times are seconds since the epoch (the sim's clock)."""

    conn_id: str
    account: str
    jid: str
    label: str  # the worker's host:pid: one place
    start: float
    end: float | None
    end_reason: str | None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Connection:
        return cls(
            conn_id=str(raw["conn_id"]),
            account=str(raw["account"]),
            jid=str(raw["jid"]),
            label=str(raw["label"]),
            start=parse_timestamp(raw["start"]).timestamp(),
            end=None if raw.get("end") is None else parse_timestamp(raw["end"]).timestamp(),
            end_reason=raw.get("end_reason"),
        )


@dataclass(frozen=True)
class DoubleConnection:
    """An interval during which one device was driven from more than one place."""

    jid: str
    kind: str  # "overlap": two records open at once; "replacement": kicked by another place's login
    labels: tuple[str, ...]
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def double_connections(records: Iterable[Connection], now: float) -> list[DoubleConnection]:
    """Every interval in which a device was driven from two places (open records end at `now`)."""
    by_jid: dict[str, list[Connection]] = {}
    for record in records:
        by_jid.setdefault(record.jid, []).append(record)
    found: list[DoubleConnection] = []
    for jid, group in sorted(by_jid.items()):
        ordered = sorted(group, key=lambda r: (r.start, r.conn_id))
        found.extend(_overlaps(jid, ordered, now))
        found.extend(_replacement_chains(jid, ordered))
    return found


def _overlaps(jid: str, ordered: Sequence[Connection], now: float) -> list[DoubleConnection]:
    out = []
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if second.label == first.label:
                continue
            start = max(first.start, second.start)
            end = min(now if first.end is None else first.end, now if second.end is None else second.end)
            if end > start:
                out.append(DoubleConnection(jid, "overlap", (first.label, second.label), start, end))
    return out


def _replacement_chains(jid: str, ordered: Sequence[Connection]) -> list[DoubleConnection]:
    """Runs of consecutive records each kicked by the next one's login from another place."""
    out: list[DoubleConnection] = []
    chain: list[Connection] = []
    for current, following in itertools.pairwise(ordered):
        kicked = current.end_reason == REPLACED and following.label != current.label
        if kicked:
            chain = chain or [current]
            chain.append(following)
            continue
        out.extend(_chain(jid, chain))
        chain = []
    out.extend(_chain(jid, chain))
    return out


def _chain(jid: str, chain: list[Connection]) -> list[DoubleConnection]:
    if not chain:
        return []
    kicks = [r.end for r in chain[:-1] if r.end is not None]
    labels = tuple(dict.fromkeys(r.label for r in chain))
    return [DoubleConnection(jid, "replacement", labels, min(kicks), max(kicks))]


def takeover_gaps(records: Iterable[Connection]) -> list[float]:
    """Seconds between a place's last connection of a device and another place's next one (the outage)."""
    by_jid: dict[str, list[Connection]] = {}
    for record in records:
        by_jid.setdefault(record.jid, []).append(record)
    gaps = []
    for group in by_jid.values():
        ordered = sorted(group, key=lambda r: (r.start, r.conn_id))
        for before, after in itertools.pairwise(ordered):
            if after.label != before.label and before.end is not None:
                gaps.append(after.start - before.end)
    return gaps
