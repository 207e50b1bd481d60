"""`wa-keeper worker --transport neonize`, offline: the real neonize in a worker process.

Sessions are made as NOTES.md says: neonize creates the schema (in a subprocess),
this process adds a device row with random keys. The dial goes to a closed local
proxy, so it fails at once without network. This process never imports neonize.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest

from connector.sessions import whatsmeow
from connector.workers import protocol as wp
from tests.integration.worker_support import WorkerProcess, descendants, wait_gone

JID = "15550001111:7@s.whatsapp.net"
DEAD_PROXY = {"WA_KEEPER_NEONIZE_PROXY": "http://127.0.0.1:1"}
STOP_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("neonize-sessions")
    empty = root / "empty" / whatsmeow.SESSION_FILE
    whatsmeow.make_schema(empty)
    paired = root / "paired" / whatsmeow.SESSION_FILE
    whatsmeow.copy_template(empty, paired)
    whatsmeow.write_device(paired, whatsmeow.DeviceKeys.random(JID))
    corrupt = root / "corrupt" / whatsmeow.SESSION_FILE
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    return {"empty": empty, "paired": paired, "corrupt": corrupt}


@asynccontextmanager
async def neonize_worker(tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    worker = await WorkerProcess.spawn(["--transport", "neonize"], tmp_path / "worker.log", env=DEAD_PROXY)
    try:
        yield worker
    finally:
        worker.kill()


async def stop_and_time(worker: WorkerProcess, account: str) -> float:
    loop = asyncio.get_running_loop()
    began = loop.time()
    await worker.send(wp.Stop(account=account))
    await worker.next(wp.Stopped, account, within=STOP_WITHIN_S)
    assert await worker.exit_code(within=STOP_WITHIN_S) == 0
    return loop.time() - began


async def test_a_paired_session_reports_its_jid_then_the_failed_dial(
    tmp_path: Path, sessions: dict[str, Path]
) -> None:
    async with neonize_worker(tmp_path) as worker:
        await worker.send(wp.Start(account="acct", session_path=str(sessions["paired"])))
        assert await worker.next(wp.Loaded, "acct") == wp.Loaded(account="acct", jid=JID)
        disconnected = await worker.next(wp.Disconnected, "acct")
        assert "dial" in disconnected.reason and "127.0.0.1:1" in disconnected.reason
        await worker.send(wp.Pair(account="acct"))
        assert (await worker.next(wp.Rejected, "acct")).reason == "the session is already paired"
        await worker.send(wp.Start(account="second", session_path=str(sessions["empty"])))
        assert "one per process" in (await worker.next(wp.Rejected, "second")).reason
        await stop_and_time(worker, "acct")
        assert worker.reports[0] == wp.Loaded(account="acct", jid=JID)
        assert "Traceback" not in worker.stderr()


async def test_a_hold_that_runs_out_ends_the_worker_like_a_stop(
    tmp_path: Path, sessions: dict[str, Path]
) -> None:
    """The supervisor went silent: the one account of this process is reported and the process ends."""
    async with neonize_worker(tmp_path) as worker:
        await worker.send(wp.Start(account="held", session_path=str(sessions["paired"]), hold_ms=600_000))
        await worker.next(wp.Loaded, "held")
        await worker.next(wp.Disconnected, "held")  # the dead proxy
        await worker.send(wp.Hold(account="held", for_ms=50))
        dropped = await worker.next(wp.Disconnected, "held")
        assert "no hold from the supervisor" in dropped.reason
        await worker.next(wp.Stopped, "held", within=STOP_WITHIN_S)
        assert await worker.exit_code(within=STOP_WITHIN_S) == 0
        assert "Traceback" not in worker.stderr()


async def test_an_empty_database_asks_for_pairing(tmp_path: Path, sessions: dict[str, Path]) -> None:
    async with neonize_worker(tmp_path) as worker:
        await worker.send(wp.Start(account="new", session_path=str(sessions["empty"])))
        assert await worker.next(wp.Loaded, "new") == wp.Loaded(account="new", jid=None)
        await worker.send(wp.Pair(account="new"))
        assert "dial" in (await worker.next(wp.Disconnected, "new")).reason  # QR codes need WhatsApp
        await worker.send(wp.Pair(account="new"))
        assert "start a new worker" in (await worker.next(wp.Rejected, "new")).reason
        await stop_and_time(worker, "new")


async def test_logout_while_not_connected_says_so_and_stops(
    tmp_path: Path, sessions: dict[str, Path]
) -> None:
    async with neonize_worker(tmp_path) as worker:
        await worker.send(wp.Start(account="lo", session_path=str(sessions["paired"])))
        await worker.next(wp.Disconnected, "lo")
        await worker.send(wp.Logout(account="lo"))
        assert "not connected" in (await worker.next(wp.Fatal, "lo")).message  # get_me/logout would abort
        await worker.next(wp.Stopped, "lo", within=STOP_WITHIN_S)
        assert await worker.exit_code(within=STOP_WITHIN_S) == 0
    assert whatsmeow.read_device_jid(sessions["paired"]) == JID  # nothing was deleted


async def test_a_corrupt_file_is_fatal_with_the_database_error_and_no_core_dump(
    tmp_path: Path, sessions: dict[str, Path]
) -> None:
    async with neonize_worker(tmp_path) as worker:
        await worker.send(wp.Start(account="bad", session_path=str(sessions["corrupt"])))
        fatal = await worker.next(wp.Fatal, "bad")
        assert "failed to upgrade database" in fatal.message and "file is not a database" in fatal.message
        await worker.send(wp.Pair(account="bad"))
        assert (await worker.next(wp.Rejected, "bad")).reason == "the session file could not be opened"
        await stop_and_time(worker, "bad")
        assert "Traceback" not in worker.stderr()
        assert worker.proc.returncode == 0  # not killed by SIGABRT/SIGSEGV: no core dump


async def test_a_missing_file_is_fatal(tmp_path: Path) -> None:
    async with neonize_worker(tmp_path) as worker:
        await worker.send(wp.Start(account="gone", session_path=str(tmp_path / "nope.db")))
        assert "session file not found" in (await worker.next(wp.Fatal, "gone")).message
        assert not (tmp_path / "nope.db").exists()  # neonize did not create one either
        await stop_and_time(worker, "gone")


async def test_bad_order_lines_are_rejected_and_the_worker_goes_on(
    tmp_path: Path, sessions: dict[str, Path]
) -> None:
    async with neonize_worker(tmp_path) as worker:
        await worker.send(b"\x00\xffgarbage\n")
        await worker.send(b'{"type": "start", "account": "a"\n')
        await worker.send(b"{" + b" " * wp.MAX_LINE_BYTES + b"}\n")
        await worker.send(
            b'{"type": "qr", "account": "a", "code": "x", "expires_at": "2026-01-01T00:00:00Z"}\n'
        )
        await worker.send(wp.Pair(account="a"))
        assert (await worker.next(wp.Rejected, "a")).reason == "not started"
        await worker.send(wp.Start(account="a", session_path=str(sessions["paired"])))
        assert (await worker.next(wp.Loaded, "a")).jid == JID
        assert worker.stderr().count("ignored a bad order line") == 4
        await stop_and_time(worker, "a")


async def test_sigterm_stops_it_and_eof_stops_it(tmp_path: Path, sessions: dict[str, Path]) -> None:
    async with neonize_worker(tmp_path) as worker:
        await worker.send(wp.Start(account="t", session_path=str(sessions["paired"])))
        await worker.next(wp.Disconnected, "t")
        worker.proc.send_signal(signal.SIGTERM)
        await worker.next(wp.Stopped, "t", within=STOP_WITHIN_S)
        assert await worker.exit_code(within=STOP_WITHIN_S) == 0
    async with neonize_worker(tmp_path) as worker:
        await worker.send(wp.Start(account="e", session_path=str(sessions["paired"])))
        await worker.next(wp.Loaded, "e")
        await worker.close_stdin()
        await worker.next(wp.Stopped, "e", within=STOP_WITHIN_S)
        assert await worker.exit_code(within=STOP_WITHIN_S) == 0


async def test_sigkill_leaves_no_process_and_an_intact_session(
    tmp_path: Path, sessions: dict[str, Path]
) -> None:
    async with neonize_worker(tmp_path) as worker:
        await worker.send(wp.Start(account="k", session_path=str(sessions["paired"])))
        await worker.next(wp.Disconnected, "k")
        below = descendants(worker.pid)
        worker.proc.send_signal(signal.SIGKILL)
        assert await worker.exit_code() == -signal.SIGKILL
        assert all(wait_gone(pid, STOP_WITHIN_S) for pid in below)
    with closing(sqlite3.connect(sessions["paired"])) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert whatsmeow.read_device_jid(sessions["paired"]) == JID


def test_a_killed_parent_leaves_no_orphan_worker(tmp_path: Path, sessions: dict[str, Path]) -> None:
    """The supervisor dies by SIGKILL: the worker sees EOF on stdin and exits by itself."""
    parent = textwrap.dedent(
        f"""
        import subprocess, sys
        worker = subprocess.Popen(
            [sys.executable, "-m", "connector", "worker", "--transport", "neonize"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        worker.stdin.write(b'{{"type":"start","account":"o","session_path":"{sessions["paired"]}"}}\\n')
        worker.stdin.flush()
        worker.stdout.readline()
        print(worker.pid, flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **DEAD_PROXY},
    )
    try:
        assert proc.stdout is not None
        worker_pid = int(proc.stdout.readline())
        proc.kill()
        proc.wait()
        assert wait_gone(worker_pid, STOP_WITHIN_S), f"worker {worker_pid} outlived its parent"
    finally:
        proc.kill()
