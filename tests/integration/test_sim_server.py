"""sim-server over its real socket: pairing, login, key churn, the device registry,
`stream_replaced`, and malformed API calls."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import aiohttp
import pytest

from connector.sessions import whatsmeow
from connector.sim import wire
from connector.sim.registry import ConnectionRecord, overlapping
from connector.sim.server import SimConfig
from connector.workers import protocol as wp
from connector.workers.sim_session import OrderRejected
from tests.integration.sim_support import DEADLINE_S, sim_stack, snapshot


def churned_rows(path: Path) -> str:
    """A digest of the tables key churn writes to."""
    digest = hashlib.sha256()
    with closing(sqlite3.connect(path)) as db:
        for table in ("whatsmeow_pre_keys", "whatsmeow_sessions"):
            for row in db.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                digest.update(repr(row).encode())
    return digest.hexdigest()


async def test_pairing_by_qr_writes_the_device_and_connects(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = stack.session("alice")
        await session.start()
        assert await stack.reports.next(wp.Loaded, "alice") == wp.Loaded(account="alice", jid=None)
        await session.pair()
        qr = await stack.reports.next(wp.Qr, "alice")
        status, pending = await stack.api("GET", "/api/qr")
        assert status == 200
        assert pending["pending"] == [{"account": "alice", "code": qr.code, "expires_at": qr.expires_at}]

        status, scanned = await stack.api("POST", "/api/scan", {"code": qr.code})
        assert status == 200
        paired = await stack.reports.next(wp.Paired, "alice")
        await stack.reports.next(wp.Connected, "alice")
        assert paired.jid == scanned["jid"]
        assert whatsmeow.read_device_jid(session.path) == paired.jid
        _, devices = await stack.api("GET", "/api/devices")
        assert [d["jid"] for d in devices["devices"]] == [paired.jid]
        _, records = await stack.api("GET", f"/api/connections?jid={paired.jid}")
        assert [(r["label"], r["end"]) for r in records["connections"]] == [("test", None)]
        await session.stop()


async def test_a_paired_session_logs_in_again_and_reports_its_jid(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        first = await stack.paired("bob")
        await first.stop()
        again = stack.session("bob")
        await again.start()
        loaded = await stack.reports.next(wp.Loaded, "bob")
        await stack.reports.next(wp.Connected, "bob")
        assert loaded.jid == first.jid
        await again.stop()
        _, records = await stack.api("GET", "/api/connections?account=bob")
        assert [r["end_reason"] for r in records["connections"]] == ["closed", "closed"]


async def test_keys_churn_in_the_session_file_while_connected(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("carol")
        before = churned_rows(session.path)
        session.churned.clear()
        await asyncio.wait_for(session.churned.wait(), DEADLINE_S)
        assert churned_rows(session.path) != before
        assert whatsmeow.read_device_jid(session.path) == session.jid  # the device row is untouched
        await session.stop()


async def test_an_older_backup_of_a_linked_device_is_let_in(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("dave")
        old = tmp_path / "backup-gen1.db"
        snapshot(session.path, old)
        session.churned.clear()
        await asyncio.wait_for(session.churned.wait(), DEADLINE_S)
        await session.stop()
        assert churned_rows(old) != churned_rows(session.path)

        snapshot(old, session.path)
        restored = stack.session("dave")
        await restored.start()
        await stack.reports.next(wp.Connected, "dave")
        await restored.stop()


async def test_an_unlinked_device_is_refused_with_401(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("erin")
        backup = tmp_path / "erin-backup.db"
        snapshot(session.path, backup)
        assert (await stack.fault("erin", fault="unlink"))[0] == 200
        assert await stack.reports.next(wp.LoggedOut, "erin") == wp.LoggedOut(
            account="erin", reason_code=401, on_connect=False
        )
        assert whatsmeow.read_device_jid(session.path) is None  # deleted, as whatsmeow does
        await session.stop()

        later = stack.session("erin", path=backup)
        await later.start()
        assert await stack.reports.next(wp.LoggedOut, "erin") == wp.LoggedOut(
            account="erin", reason_code=401, on_connect=True
        )
        await later.stop()


async def test_a_device_replaced_by_a_newer_pairing_is_refused(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        old = await stack.paired("fay", path=tmp_path / "old" / "session.db")
        old_copy = tmp_path / "old-copy.db"
        snapshot(old.path, old_copy)
        await old.stop()
        new = await stack.paired("fay", path=tmp_path / "new" / "session.db")
        assert new.jid != old.jid
        stale = stack.session("fay", path=old_copy)
        await stale.start()
        logged_out = await stack.reports.next(wp.LoggedOut, "fay")
        assert (logged_out.reason_code, logged_out.on_connect) == (401, True)
        await stale.stop()
        await new.stop()


async def test_a_device_of_another_account_is_refused(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        gus = await stack.paired("gus")
        await gus.stop()
        foreign = tmp_path / "foreign.db"
        snapshot(gus.path, foreign)
        hal = stack.session("hal", path=foreign)
        await hal.start()
        assert (await stack.reports.next(wp.Loaded, "hal")).jid == gus.jid
        logged_out = await stack.reports.next(wp.LoggedOut, "hal")
        assert (logged_out.reason_code, logged_out.on_connect) == (401, True)
        await hal.stop()
        _, devices = await stack.api("GET", "/api/devices")
        assert [d["jid"] for d in devices["devices"]] == [gus.jid]  # gus stays linked


async def test_a_second_connection_of_one_device_replaces_the_first(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        first = await stack.paired("ivy", label="host-a")
        copy = tmp_path / "elsewhere" / "session.db"
        snapshot(first.path, copy)
        second = stack.session("ivy", path=copy, label="host-b")
        await second.start()
        await stack.reports.next(wp.StreamReplaced, "ivy")
        await stack.reports.next(wp.Connected, "ivy")
        _, body = await stack.api("GET", f"/api/connections?jid={first.jid}")
        records = [ConnectionRecord(**r) for r in body["connections"]]
        assert [(r.label, r.end_reason) for r in records] == [("host-a", "stream_replaced"), ("host-b", None)]
        assert overlapping(records) == []
        await second.stop()
        await first.stop()


async def test_logout_unlinks_the_device_and_deletes_it_from_the_file(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("jo")
        await session.logout()
        await stack.reports.next(wp.Stopped, "jo")
        assert whatsmeow.read_device_jid(session.path) is None
        _, devices = await stack.api("GET", "/api/devices")
        assert devices["devices"] == []
        assert not any(isinstance(m, wp.Fatal) for m in stack.reports.of("jo"))


async def test_malformed_api_calls_get_4xx_and_the_server_keeps_serving(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        await (await stack.paired("kim")).stop()
        calls: list[tuple[str, str, object, bytes | None, int]] = [
            ("POST", "/api/scan", None, b"{not json", 400),
            ("POST", "/api/scan", [1, 2], None, 400),
            ("POST", "/api/scan", {}, None, 400),
            ("POST", "/api/scan", {"code": "2@nope"}, None, 404),
            ("POST", "/api/scan", {"code": "x", "extra": 1}, None, 400),
            ("POST", "/api/accounts/nobody/faults", {"fault": "drop"}, None, 404),
            ("POST", "/api/accounts/kim/faults", {"fault": "explode"}, None, 400),
            ("POST", "/api/accounts/kim/faults", {"fault": "ban"}, None, 400),
            ("POST", "/api/accounts/kim/faults", {"fault": "ban", "expires_in_s": "soon"}, None, 400),
            ("POST", "/api/accounts/kim/faults", {"fault": "server_error", "code": 404}, None, 400),
            ("POST", "/api/accounts/kim/faults", {"fault": "drop", "when": "later"}, None, 400),
            ("POST", "/api/accounts/kim/faults", {"fault": "logout", "when": "someday"}, None, 400),
            ("POST", "/api/accounts/kim/faults", {"fault": "drop"}, None, 409),  # kim is not connected
            ("GET", "/api/accounts/nobody", None, None, 404),
            ("GET", "/api/connections?bogus=1", None, None, 400),
            ("GET", "/api/nothing-here", None, None, 404),
            ("DELETE", "/api/devices", None, None, 405),
        ]
        for method, path, body, raw, expected in calls:
            status, answer = await stack.api(method, path, body, raw)
            assert (path, status) == (path, expected), answer
            assert isinstance(answer["error"], str) and answer["error"]
        assert await stack.api("GET", "/api/health") == (200, {"ok": True})


async def test_garbage_on_the_websocket_closes_that_socket_only(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        for frame in ("not json", '{"op": "hello"}', '{"op": "teleport"}', '["hello"]'):
            async with stack.http.ws_connect(stack.url + "/ws") as ws:
                await ws.send_str(frame)
                message = await ws.receive(timeout=DEADLINE_S)
                assert message.type is aiohttp.WSMsgType.CLOSE
                assert ws.close_code == wire.PROTOCOL_CLOSE_CODE
        async with stack.http.ws_connect(stack.url + "/ws") as ws:
            hello = wire.Hello(account="x", jid="1@s.whatsapp.net", noise_fp="0" * 32, label="t")
            await ws.send_str(wire.dump(hello))
            answer = wire.load((await ws.receive(timeout=DEADLINE_S)).data, wire.TO_WORKER)
            assert answer == wire.LoggedOutFrame(reason_code=401, on_connect=True)  # unknown device
        assert await stack.api("GET", "/api/health") == (200, {"ok": True})


async def test_unused_qr_codes_rotate_then_pairing_times_out(tmp_path: Path) -> None:
    async with sim_stack(tmp_path, SimConfig(first_qr_s=0.3, next_qr_s=0.1, qr_codes=2)) as stack:
        session = stack.session("lee")
        await session.start()
        await session.pair()
        first = await stack.reports.next(wp.Qr, "lee")
        second = await stack.reports.next(wp.Qr, "lee")
        assert first.code != second.code
        timed_out = await stack.reports.next(wp.Disconnected, "lee")
        assert timed_out.reason == "pairing timed out: no QR code was scanned"
        assert await stack.api("GET", "/api/qr") == (200, {"pending": []})
        await session.stop()


async def test_a_session_file_that_is_not_a_whatsmeow_database_is_fatal(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        garbage = tmp_path / "garbage" / "session.db"
        garbage.parent.mkdir()
        garbage.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
        other = tmp_path / "other" / "session.db"
        other.parent.mkdir()
        with closing(sqlite3.connect(other)) as db:
            db.execute("CREATE TABLE notes (x)")
        for account, path, problem in [("m1", garbage, "file is not a database"), ("m2", other, "whatsmeow")]:
            session = stack.session(account, path=path)
            await session.start()
            fatal = await stack.reports.next(wp.Fatal, account)
            assert problem in fatal.message and str(path) in fatal.message
            assert not session.running
            with pytest.raises(OrderRejected):
                await session.pair()
            await session.stop()
