"""Each fault sim-server can inject, seen by a sim session over the real socket."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from connector.sessions import whatsmeow
from connector.workers import protocol as wp
from tests.integration.sim_support import sim_stack
from wa_wire.codec import parse_timestamp


async def test_logout_gives_401_and_whatsmeow_deletes_the_device(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("a")
        jid = session.jid
        assert (await stack.fault("a", fault="logout"))[0] == 200
        assert await stack.reports.next(wp.LoggedOut, "a") == wp.LoggedOut(
            account="a", reason_code=401, on_connect=False
        )
        assert whatsmeow.read_device_jid(session.path) is None
        _, devices = await stack.api("GET", "/api/devices")
        assert [d["jid"] for d in devices["devices"]] == [jid]  # still linked: a spurious 401
        await session.stop()


async def test_logout_at_next_connect_says_on_connect(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("b")
        await session.stop()
        assert (await stack.fault("b", fault="logout", when="next_connect"))[0] == 200
        again = stack.session("b")
        await again.start()
        assert await stack.reports.next(wp.LoggedOut, "b") == wp.LoggedOut(
            account="b", reason_code=401, on_connect=True
        )
        await again.stop()


async def test_restart_515_reports_the_stream_error_and_logs_in_again(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("c")
        assert (await stack.fault("c", fault="restart"))[0] == 200
        assert await stack.reports.next(wp.StreamError, "c") == wp.StreamError(account="c", code=515)
        await stack.reports.next(wp.Connected, "c")
        _, records = await stack.api("GET", "/api/connections?account=c")
        assert [r["end_reason"] for r in records["connections"]] == ["restart", None]
        await session.stop()


async def test_drop_is_a_428_disconnect_then_a_reconnect(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("d")
        assert (await stack.fault("d", fault="drop"))[0] == 200
        disconnected = await stack.reports.next(wp.Disconnected, "d")
        assert disconnected.code == 428
        await stack.reports.next(wp.Connected, "d")
        await session.stop()


async def test_ban_is_402_with_expiry_now_and_at_every_login_until_then(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("e")
        assert (await stack.fault("e", fault="ban", expires_in_s=3600, code=103))[0] == 200
        ban = await stack.reports.next(wp.TemporaryBan, "e")
        assert ban.code == 103 and ban.expires_at is not None
        remaining = (parse_timestamp(ban.expires_at) - datetime.now(UTC)).total_seconds()
        assert 3000 < remaining <= 3600
        await session.stop()
        again = stack.session("e")
        await again.start()
        assert await stack.reports.next(wp.TemporaryBan, "e") == ban
        await again.stop()


async def test_server_errors_fail_the_next_logins_then_it_connects(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("f")
        assert (await stack.fault("f", fault="server_error", code=503, count=2))[0] == 200
        assert (await stack.reports.next(wp.Disconnected, "f")).code == 428  # the live one is dropped
        assert (await stack.reports.next(wp.Disconnected, "f")).code == 503
        assert (await stack.reports.next(wp.Disconnected, "f")).code == 503
        await stack.reports.next(wp.Connected, "f")
        await session.stop()


async def test_server_error_500(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("f5")
        await session.stop()
        assert (await stack.fault("f5", fault="server_error", code=500))[0] == 200
        again = stack.session("f5")
        await again.start()
        assert (await stack.reports.next(wp.Disconnected, "f5")).code == 500
        await stack.reports.next(wp.Connected, "f5")
        await again.stop()


async def test_outdated_client_is_told_at_its_next_login(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("g")
        await session.stop()
        assert (await stack.fault("g", fault="outdated"))[0] == 200
        again = stack.session("g")
        await again.start()
        await stack.reports.next(wp.ClientOutdated, "g")
        await again.stop()


async def test_silence_makes_keepalives_time_out_until_it_ends(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        session = await stack.paired("h")
        assert (await stack.fault("h", fault="silence"))[0] == 200
        assert (await stack.reports.next(wp.KeepaliveTimeout, "h")).count == 1
        assert (await stack.reports.next(wp.KeepaliveTimeout, "h")).count == 2
        assert (await stack.fault("h", fault="unsilence"))[0] == 200
        await stack.reports.next(wp.KeepaliveRestored, "h")
        await session.stop()
