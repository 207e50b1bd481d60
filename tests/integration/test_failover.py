"""Issue #6 end to end: fenced leases across two `wa-keeper run` processes and sim-server.

Real processes (two connectors, their sim workers, sim-server) and the
emulators. Timings are printed, never asserted (bench/failover.py measures
them at the default 15 s TTL); the tests assert behaviour: who holds what, that
each account is connected exactly once, what the connection records say, which
writes the fence refused.

Deadlines: a takeover normally takes TTL plus a few seconds, but a connector
killed in the middle of a Firestore transaction that read `leases/{id}` (a
renewal, or a fenced status, backup or command write) leaves a lock that blocks
every write to that lease until Firestore drops the idle transaction, 60 s
later (measured on the emulator; Firestore documents the same 60 s idle
expiry). The takeover deadlines below leave room for that, so the tests assert
that the takeover happens, and bench/failover.py shows how often and how late.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import google.cloud.pubsub_v1 as pubsub_v1  # noqa: PLR0402 - the from-form hides the module from mypy
import pytest
import requests
from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from connector.lease import LeaseConfig
from control.sweep import run_sweep
from policy import PolicyConfig
from tests import emulator
from tests.integration import failover_support as fs
from tests.integration.sim_records import Connection, double_connections, takeover_gaps
from tests.integration.stack_support import EventLog, Stack, stack, wait_until
from tests.pubsub_pull import PullSubscription, unique_topic
from wa_wire.commands import CommandAction
from wa_wire.names import Collections

TTL_S = 6.0
LEASE = LeaseConfig.for_ttl(TTL_S)
ENV = {"WA_KEEPER_LEASE_TTL_S": str(TTL_S)}
A, B = "conn-a", "conn-b"
TAKEOVER_DEADLINE_S = TTL_S + 60.0
"""TTL plus generous room for restores on a loaded machine (a deadline, never a measured bound)."""


@pytest.fixture
def topic() -> str:
    name = unique_topic("failover")
    client = pubsub_v1.PublisherClient()
    with contextlib.suppress(AlreadyExists):
        client.create_topic(name=client.topic_path(emulator.project_id(), name))
    return name


@pytest.fixture
def events(topic: str) -> Iterator[EventLog]:
    subscription = PullSubscription(topic)
    yield EventLog(subscription)
    subscription.close()


@pytest.fixture
def two(tmp_path: Path, clean_firestore: firestore.Client, topic: str) -> Iterator[Stack]:
    """sim-server and two connectors (6 s TTL) that see each other's heartbeats."""
    with stack(tmp_path, clean_firestore, topic) as running:
        running.start_connector(A, **ENV)
        running.start_connector(B, **ENV)
        wait_until("both connectors registered", lambda: fs.registered(running, [A, B]), 30)
        yield running
        print(running.log_tails())


def good_backups(two: Stack, accounts: list[str]) -> bool:
    docs = fs.accounts_docs(two.client, accounts)
    return all((doc.get("backup") or {}).get("good") for doc in docs.values())


def readyz(two: Stack, connector: str) -> tuple[int, dict[str, object]]:
    _proc, port = two.connectors[connector]
    response = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    body: dict[str, object] = response.json()
    return response.status_code, body


def assert_no_double_connection(two: Stack, accounts: list[str]) -> None:
    """The safety property: no device driven from two places for longer than the renew deadline."""
    found = double_connections(fs.records(two, accounts), time.time())
    too_long = [d for d in found if d.seconds > LEASE.renew_deadline_s]
    assert not too_long, f"devices driven from two places beyond {LEASE.renew_deadline_s} s: {too_long}"


def seconds_after(moment: float, records: list[Connection]) -> list[float]:
    return sorted(r.start - moment for r in records if r.start >= moment)


def test_kill_9_the_survivor_connects_all_20_accounts_each_once(two: Stack) -> None:
    accounts = [f"acct-{n:02d}" for n in range(20)]
    fs.pair_many(two, accounts, 120)
    wait_until("a good backup of every account", lambda: good_backups(two, accounts), 60)
    wait_until(
        "both connectors holding some accounts, every account connected once",
        lambda: fs.held_by(two, A) and fs.held_by(two, B) and fs.connected_once_anywhere(two, accounts),
        90,
    )
    on_a = sorted(fs.held_by(two, A))
    killed_at = time.time()
    two.connectors[A][0].signal(signal.SIGKILL)
    two.connectors[A][0].popen.wait(10)

    wait_until(
        f"{B} holding all 20 accounts, each connected once",
        lambda: fs.connected_once(two, B, accounts),
        TAKEOVER_DEADLINE_S,
        every_s=0.2,
    )
    assert {holder for holder, _epoch in fs.leases(two.client, accounts).values()} == {B}
    assert {doc.get("holder") for doc in fs.accounts_docs(two.client, accounts).values()} == {B}
    _code, pending = two.sim_api("GET", "/api/qr")
    assert pending["pending"] == [], "restored from backups: no account asked for a QR code"
    taken = fs.records(two, on_a)
    found = double_connections(fs.records(two, accounts), time.time())
    assert found == [], "the killed host's worker died with it: nothing was left connected to replace"
    after = seconds_after(killed_at, [r for r in taken if r.end is None])
    print(
        f"\nkill -9 of {A} holding {len(on_a)} of 20 (TTL {TTL_S:g} s): connected on {B} after"
        f" p50 {after[len(after) // 2]:.2f} s, max {after[-1]:.2f} s (target TTL + 5 = {TTL_S + 5:g} s);"
        f" outage at sim-server max {max(takeover_gaps(taken), default=0.0):.2f} s"
    )


def test_sigstop_past_the_ttl_the_standby_takes_over_and_the_old_holder_fences_itself(
    two: Stack, events: EventLog
) -> None:
    """SIGSTOP freezes the connector, not its sim worker: the worker's hold runs out instead.

    The frozen supervisor renews nothing and sends no hold, so the worker closes
    each socket when the last hold (the lease's renew deadline) runs out, before
    the TTL lets the standby in. What the records must show: every connection of
    the frozen host ended by itself, not by the new holder's login, and nothing
    overlaps. After SIGCONT it notices the lost leases and its late backups are
    refused.
    """
    accounts = fs.preferring(A, [A, B], 4, "stop")
    fs.pair_many(two, accounts, 60)
    wait_until("a good backup of every account", lambda: good_backups(two, accounts), 60)
    before = fs.leases(two.client, accounts)
    assert {holder for holder, _ in before.values()} == {A}
    a_proc = two.connectors[A][0]

    stopped_at = time.time()
    a_proc.signal(signal.SIGSTOP)
    try:
        wait_until(
            f"{B} holding every account, each connected once",
            lambda: fs.connected_once(two, B, accounts),
            TAKEOVER_DEADLINE_S,
            every_s=0.2,
        )
        taken = fs.leases(two.client, accounts)
        assert taken == {acc: (B, before[acc][1] + 1) for acc in accounts}

        def newest_by_b() -> dict[str, list[dict[str, object]]] | None:
            found = {acc: fs.manifests(two.client, acc) for acc in accounts}
            newest = {acc: (m[-1]["connector_id"], m[-1]["lease_epoch"]) for acc, m in found.items() if m}
            return found if newest == {acc: (B, taken[acc][1]) for acc in accounts} else None

        before_cont = wait_until(f"a backup of every account by {B}", newest_by_b, 30)
    finally:
        a_proc.signal(signal.SIGCONT)

    events.wait_for("lease_lost", set(accounts), 60)
    lost = {e["account_id"]: e for e in events.of("lease_lost") if e["connector_id"] == A}
    assert set(lost) == set(accounts)
    for account, event in lost.items():
        assert event["lease_epoch"] == before[account][1]
        assert "self-fenced" in event["detail"] or "took over" in event["detail"]

    def a_released_its_old_epoch() -> bool:
        view = two.http_status(A) or {}
        leases = view.get("leases", {})
        return all(leases.get(acc) != before[acc][1] for acc in accounts)

    wait_until(f"{A} no longer holding the old epochs", a_released_its_old_epoch, 30)
    records = fs.records(two, accounts)
    assert double_connections(records, time.time()) == [], "the frozen host's sockets outlived its hold"
    frozen = [r for r in records if r.start < stopped_at and (r.end is None or r.end >= stopped_at)]
    assert frozen and all(r.end_reason != "stream_replaced" for r in frozen), frozen
    for account in accounts:
        generations = fs.manifests(two.client, account)
        epochs = [int(m["lease_epoch"]) for m in generations]
        assert epochs == sorted(epochs), f"{account}: a stale holder wrote a later generation: {generations}"
        late = [m for m in generations if m not in before_cont[account]]
        assert all(int(m["lease_epoch"]) > before[account][1] for m in late), late
    refused = len(re.findall(r"backup of \S+ refused: stale lease epoch", two.connectors[A][0].tail(400)))
    closed = [r.end - stopped_at for r in frozen if r.end is not None]
    logged_in = [
        r.start - stopped_at for r in records if r.label != frozen[0].label and r.start >= stopped_at
    ]
    print(
        f"\nSIGSTOP (TTL {TTL_S:g} s, renew deadline {LEASE.renew_deadline_s:g} s): {A}'s worker closed"
        f" its sockets {min(closed):.2f}..{max(closed):.2f} s after the stop; {B} logged in"
        f" {min(logged_in):.2f}..{max(logged_in):.2f} s after it; late backups of {A} refused: {refused}"
    )


def test_sigterm_hands_off_to_a_visible_standby(two: Stack, events: EventLog) -> None:
    accounts = fs.preferring(A, [A, B], 4, "term")
    fs.pair_many(two, accounts, 60)
    wait_until("a good backup of every account", lambda: good_backups(two, accounts), 60)

    standby = two.http_status(B) or {}
    assert (standby["standby"], standby["held"], standby["accounts"]) == (True, 0, {})
    code, ready = readyz(two, B)
    assert code == 200 and "standby" in str(ready["checks"])
    assert ready["checks"]["workers"] == {"ok": True, "detail": "set up"}  # type: ignore[index]
    holder = two.http_status(A) or {}
    assert (holder["standby"], sorted(holder["leases"])) == (False, accounts)
    leases = fs.leases(two.client, accounts)
    for account, doc in fs.accounts_docs(two.client, accounts).items():
        assert (doc["holder"], doc["lease_epoch"]) == leases[account] == (A, leases[account][1])

    watch = fs.AccountWatch(two.client, accounts)
    try:
        a_proc = two.connectors[A][0]
        signalled = time.monotonic()
        a_proc.signal(signal.SIGTERM)
        assert a_proc.popen.wait(30) == 0
        exited = time.monotonic() - signalled
        wait_until(
            f"{B} holding every account, each connected once",
            lambda: fs.connected_once(two, B, accounts),
            60,
            every_s=0.1,
        )
        connected = time.monotonic() - signalled
        wait_until(
            "the listener caught up",
            lambda: all(watch.history(acc)[-1:] and watch.history(acc)[-1].holder == B for acc in accounts),
            30,
        )
        for account in accounts:
            after = watch.history(account, since=signalled)
            by_a = [s.status for s in after if s.holder == A]
            assert by_a and by_a[-1] == "unattended", f"{account}: {A} left it as {by_a}"
            assert set(by_a) <= {"connected", "unattended"}, f"{account}: {by_a}"
            first_b = next(i for i, s in enumerate(after) if s.holder == B)
            assert all(s.holder == B for s in after[first_b:]), f"{account}: {after}"
    finally:
        watch.close()
    assert fs.leases(two.client, accounts) == {acc: (B, leases[acc][1] + 1) for acc in accounts}

    # The new holder's events wait while it starts accounts (the outbox's yield): late, not lost.
    def connected_under_b() -> set[str]:
        events.pull()
        return {
            e["account_id"]
            for e in events.of("connected")
            if e["connector_id"] == B and e["lease_epoch"] == leases[e["account_id"]][1] + 1
        }

    wait_until(f"{B}'s connected events", lambda: connected_under_b() == set(accounts), 60)
    hints = re.findall(
        r"hint: (\d+) accounts released by another connector \((\d+) cleanly, (\d+) naming",
        two.connectors[B][0].tail(400),
    )
    assert hints, f"{A}'s handoff hint did not reach {B}"
    # clean releases: taken without reading the lease, their backups read meanwhile
    assert sum(int(clean) for _, clean, _ in hints) >= 1, f"{A}'s hints named no clean release: {hints}"
    # with the newest backup A knew: B read only the manifests it restored from
    assert sum(int(named) for _, _, named in hints) >= 1, f"{A}'s hints named no backup: {hints}"
    assert_no_double_connection(two, accounts)
    took_over = two.http_status(B) or {}
    assert (took_over["standby"], sorted(took_over["leases"])) == (False, accounts)
    print(
        f"\nSIGTERM of {A} holding {len(accounts)}: exited after {exited:.2f} s,"
        f" all connected on {B} after {connected:.2f} s (target 3 s)"
    )


def release_result(running: Stack, command_id: str) -> str:
    """The message of a `release` command that succeeded (AssertionError otherwise)."""
    command = emulator.wait_for_document(
        running.client,
        f"{Collections.COMMANDS}/{command_id}",
        lambda d: d.get("status") in ("done", "failed"),
        30,
    )
    assert command["status"] == "done" and command["result"]["ok"], command
    return str(command["result"]["message"])


def test_a_release_command_hands_the_account_to_the_other_connector(two: Stack) -> None:
    """`release` stops the worker, takes a final backup and frees the lease; the host that was
    preferred lets the other one take it (before: the lease stayed held and renewed, no worker
    drove the account, and nobody else could take it)."""
    released, kept = fs.preferring(A, [A, B], 2, "rel")
    fs.pair_many(two, [released, kept], 60)
    wait_until("a good backup of each", lambda: good_backups(two, [released, kept]), 60)
    leases = fs.leases(two.client, [released, kept])
    assert {holder for holder, _ in leases.values()} == {A}
    asked = time.time()
    command_id = two.command(released, CommandAction.RELEASE)
    wait_until(f"{B} holding {released}, connected once", lambda: fs.connected_once(two, B, [released]), 60)
    assert "another connector may take it" in release_result(two, command_id)
    assert fs.leases(two.client, [released, kept]) == {
        released: (B, leases[released][1] + 1),
        kept: leases[kept],
    }
    by_a = [m for m in fs.manifests(two.client, released) if m["connector_id"] == A]
    assert by_a and by_a[-1]["created_at"].timestamp() >= asked, f"no final backup by {A}: {by_a[-1:]}"
    assert not any(r.start >= asked for r in fs.records(two, [kept])), f"{kept} was left alone"
    assert_no_double_connection(two, [released, kept])


def test_with_no_live_holder_the_sweep_marks_accounts_unattended(
    tmp_path: Path, clean_firestore: firestore.Client, topic: str
) -> None:
    """kill -9 of the only connector: its accounts keep its last status until the sweep sees the lease dead."""
    with stack(tmp_path, clean_firestore, topic) as alone:
        proc = alone.start_connector(A, **ENV)
        accounts = ["alone-1", "alone-2"]
        fs.pair_many(alone, accounts, 60)
        proc.signal(signal.SIGKILL)
        proc.popen.wait(10)
        config = dataclasses.replace(PolicyConfig(), lease_grace=timedelta(0))

        def swept() -> bool:
            run_sweep(alone.client, datetime.now(UTC), config)
            return set(fs.statuses(alone.client, accounts).values()) == {"unattended"}

        wait_until("the sweep marking both accounts unattended", swept, TAKEOVER_DEADLINE_S, every_s=1)
        for doc in fs.accounts_docs(alone.client, accounts).values():
            assert doc["holder"] == A
            assert doc["status_reason"] == "no connector holds this account (last status: connected)"


def test_a_released_account_comes_back_when_no_other_connector_takes_it(
    tmp_path: Path, clean_firestore: firestore.Client, topic: str
) -> None:
    """`release` on the only connector: the lease is freed, and after `taken_back_after_s` free
    (connector/assignment.py) the same connector takes it again, at the next epoch."""
    with stack(tmp_path, clean_firestore, topic) as alone:
        alone.start_connector(A, **ENV)
        account = "alone-release"
        fs.pair_many(alone, [account], 60)
        (_, epoch) = fs.leases(alone.client, [account])[account]
        command_id = alone.command(account, CommandAction.RELEASE)
        release_result(alone, command_id)
        wait_until(
            f"{A} holding {account} again, connected once",
            lambda: fs.connected_once(alone, A, [account]),
            60,
        )
        assert fs.leases(alone.client, [account])[account] == (A, epoch + 1)


def test_an_account_no_longer_desired_is_released(
    tmp_path: Path, clean_firestore: firestore.Client, topic: str
) -> None:
    """`desired: stopped` written by hand: the connector's count of the desired set changes, it
    lists the set again, checks the document and hands the account off (the other stays)."""
    with stack(tmp_path, clean_firestore, topic) as alone:
        alone.start_connector(A, **ENV)
        stopped, kept = "alone-stopped", "alone-kept"
        fs.pair_many(alone, [stopped, kept], 60)
        clean_firestore.collection(Collections.ACCOUNTS).document(stopped).update({"desired": "stopped"})
        wait_until(
            f"{stopped} released",
            lambda: fs.leases(alone.client, [stopped])[stopped][0] is None,
            60,
        )
        assert fs.statuses(alone.client, [stopped, kept]) == {stopped: "unattended", kept: "connected"}
        assert fs.leases(alone.client, [kept])[kept][0] == A
