"""`wa-keeper worker --transport sim` as a process, and `wa-keeper sim-server` from the CLI."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from connector.sessions import whatsmeow
from connector.workers import protocol as wp
from tests.integration.sim_support import DEADLINE_S, sim_stack
from tests.integration.worker_support import WorkerProcess


async def test_one_sim_worker_serves_many_accounts_and_survives_bad_lines(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        worker = await WorkerProcess.spawn(
            ["--transport", "sim", "--sim-url", stack.url], tmp_path / "worker.log"
        )
        try:
            accounts = ["w1", "w2", "w3"]
            for account in accounts:
                path = tmp_path / account / whatsmeow.SESSION_FILE
                await worker.send(wp.Start(account=account, session_path=str(path)))
                assert (await worker.next(wp.Loaded, account)).jid is None  # a new file, from the template
                await worker.send(wp.Pair(account=account))
                await worker.next(wp.Qr, account)
                status, _ = await stack.api("POST", "/api/scan", {"account": account})
                assert status == 200
                paired = await worker.next(wp.Paired, account)
                await worker.next(wp.Connected, account)
                assert whatsmeow.read_device_jid(path) == paired.jid

            await worker.send(b"this is not json\n")
            await worker.send(b'{"type": "start", "account": "w4", "session_pa')  # cut off ...
            await worker.send(b"\n")  # ... and ended: a partial message
            await worker.send(b'{"type":"stop","account":"' + b"x" * (wp.MAX_LINE_BYTES + 10) + b'"}\n')
            await worker.send(b'{"type": "explode", "account": "w1"}\n')
            await worker.send(wp.Start(account="w1", session_path=str(tmp_path / "other.db")))
            rejected = await worker.next(wp.Rejected, "w1")
            assert rejected.order == "start"
            await worker.send(wp.Pair(account="nobody"))
            assert (await worker.next(wp.Rejected, "nobody")).reason == "not started"
            assert worker.stderr().count("ignored a bad order line") == 4

            await worker.send(wp.Stop(account="w2"))
            await worker.next(wp.Stopped, "w2")
            _, w1 = await stack.api("GET", "/api/accounts/w1")
            _, w2 = await stack.api("GET", "/api/accounts/w2")
            assert len(w1["live"]) == 1 and w2["live"] == []

            await worker.close_stdin()  # the supervisor went away: stop everything, exit
            rest = await worker.rest()
            assert sorted(m.account for m in rest if isinstance(m, wp.Stopped)) == ["w1", "w3"]
            assert await worker.exit_code() == 0
            assert "Traceback" not in worker.stderr()
        finally:
            worker.kill()


async def test_sigterm_stops_every_account_of_a_sim_worker(tmp_path: Path) -> None:
    async with sim_stack(tmp_path) as stack:
        paired = await stack.paired("t1")
        await paired.stop()
        worker = await WorkerProcess.spawn(
            ["--transport", "sim", "--sim-url", stack.url], tmp_path / "worker.log"
        )
        try:
            await worker.send(wp.Start(account="t1", session_path=str(paired.path)))
            await worker.next(wp.Connected, "t1")
            worker.proc.send_signal(signal.SIGTERM)
            await worker.next(wp.Stopped, "t1")
            assert await worker.exit_code() == 0
        finally:
            worker.kill()


async def test_a_hold_that_runs_out_closes_that_accounts_socket_only(tmp_path: Path) -> None:
    """A silent supervisor: the worker closes the socket itself and does not reconnect."""
    async with sim_stack(tmp_path) as stack:
        held, free = await stack.paired("h1"), await stack.paired("h2")
        await held.stop()
        await free.stop()
        worker = await WorkerProcess.spawn(
            ["--transport", "sim", "--sim-url", stack.url], tmp_path / "worker.log"
        )
        try:
            await worker.send(wp.Start(account="h2", session_path=str(free.path)))  # no hold
            await worker.next(wp.Connected, "h2")
            await worker.send(wp.Start(account="h1", session_path=str(held.path), hold_ms=600_000))
            await worker.next(wp.Connected, "h1")
            await worker.send(wp.Hold(account="h1", for_ms=600_000))
            await worker.send(wp.Hold(account="h1", for_ms=50))  # the last word: then silence
            dropped = await worker.next(wp.Disconnected, "h1")
            assert "no hold from the supervisor" in dropped.reason
            _, h1 = await stack.api("GET", "/api/accounts/h1")
            _, h2 = await stack.api("GET", "/api/accounts/h2")
            assert h1["live"] == [] and len(h2["live"]) == 1
            await worker.send(wp.Hold(account="nobody", for_ms=10))
            assert (await worker.next(wp.Rejected, "nobody")).reason == "not started"
            await worker.send(wp.Stop(account="h1"))
            await worker.next(wp.Stopped, "h1")
            assert not [m for m in worker.reports if isinstance(m, wp.Connected) and m.account == "h1"][1:]
            await worker.close_stdin()
            assert await worker.exit_code() == 0
        finally:
            worker.kill()


async def test_the_sim_server_command_prints_its_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connector", "sim-server", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(DEADLINE_S):
            line = (await proc.stdout.readline()).decode().strip()
        assert line.startswith("sim-server listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        async with aiohttp.ClientSession() as http, http.get(url + "/api/health") as response:
            assert await response.json() == {"ok": True}
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE_S):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()


async def test_the_sim_server_command_explains_a_busy_port_or_a_bad_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "connector",
            "sim-server",
            "--port",
            str(port),
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(DEADLINE_S):
            _, err = await proc.communicate()
        assert proc.returncode == 1
        assert err.decode().strip().startswith(f"wa-keeper: sim-server: cannot listen on 127.0.0.1:{port}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connector", "sim-server", "--port", "70000", stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(DEADLINE_S):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"a port is 0..65535" in err
