"""Worker processes as the supervisor sees them: start, order, stop, and reports back.

`ProcessPerAccount` runs one `wa-keeper worker --transport neonize` process per
account (neonize is not safe with several clients in one process);
`SharedProcess` runs one `--transport sim` process for every account (cheap
for hundreds of simulated accounts). Both turn each report line into
`Report(message)` for its account and a process exit into `WorkerExited`.

Workers die with the supervisor: each stops when its stdin closes and sets
PR_SET_PDEATHSIG=SIGTERM itself (connector/workers/lifeline.py), so a kill -9 of
the daemon leaves no orphan driving a session that another host is about to take
over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from connector import account as a
from connector.sessions.whatsmeow import SESSION_FILE
from connector.tasks import wait_ended
from connector.workers import protocol as wp
from connector.workers.lifeline import SUPERVISOR_PID_ENV
from connector.workers.reader import read_messages

log = logging.getLogger("wa_keeper.workers")

Deliver = Callable[[str, a.Signal], None]
MAX_BAD_LINES = 3
"""A per-account worker that sends this many bad lines is killed (then restarted with backoff)."""


def worker_command(transport: str) -> list[str]:
    return [sys.executable, "-m", "connector", "worker", "--transport", transport]


class WorkerProcess:
    """One worker subprocess: a line writer on its stdin, a report reader on its stdout."""

    def __init__(
        self,
        transport: str,
        env: Mapping[str, str],
        on_report: Callable[[wp.Message | wp.ProtocolError], None],
        on_exit: Callable[[str], None],
        command: list[str] | None = None,
    ) -> None:
        self.transport = transport
        self._command = command or worker_command(transport)
        self._env = dict(env)
        self._on_report = on_report
        self._on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def kill_all(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def spawn(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # worker logs go to the daemon's stderr
            env={**self._env, SUPERVISOR_PID_ENV: str(os.getpid())},  # workers/lifeline.py
        )
        self._reader = asyncio.create_task(self._read(), name=f"worker-reader:{self._proc.pid}")

    async def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        async for item in read_messages(proc.stdout, wp.REPORTS):
            self._on_report(item)
        code = await proc.wait()
        self._on_exit(_describe_exit(code))

    async def send(self, message: wp.Message) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            return
        async with self._write_lock:
            try:
                proc.stdin.write(wp.encode_line(message))
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                log.info("worker %s: stdin closed", proc.pid)

    def kill(self) -> None:
        if self.alive() and self._proc is not None:
            self._proc.kill()

    async def close(self, within_s: float) -> None:
        """Close stdin (the worker stops), then kill it if it outlives the bound."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), within_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            await wait_ended(self._reader)


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def session_file_for(session_dir: Path) -> str:
    return str(session_dir / SESSION_FILE)


class ProcessPerAccount:
    """One worker process per account (neonize)."""

    def __init__(
        self,
        deliver: Deliver,
        env: Mapping[str, str] | None = None,
        transport: str = "neonize",
        command: list[str] | None = None,
    ) -> None:
        self._deliver = deliver
        self._env = dict(os.environ if env is None else env)
        self._transport = transport
        self._command = command  # tests run a stand-in worker; None: `wa-keeper worker`
        self._procs: dict[str, WorkerProcess] = {}
        self.restarts = 0

    async def start(self, account: str, session_path: Path, hold_ms: int = 0) -> None:
        old = self._procs.pop(account, None)
        if old is not None:
            old.kill()
        bad_lines = 0

        def on_report(item: wp.Message | wp.ProtocolError) -> None:
            nonlocal bad_lines
            if isinstance(item, wp.ProtocolError) or item.account != account:
                bad_lines += 1
                log.warning("account %s: bad line from its worker: %s", account, item)
                if bad_lines >= MAX_BAD_LINES:
                    proc.kill()
                return
            self._deliver(account, a.Report(item))

        def on_exit(reason: str) -> None:
            if self._procs.get(account) is proc:
                del self._procs[account]
                self._deliver(account, a.WorkerExited(reason))

        proc = WorkerProcess(self._transport, self._env, on_report, on_exit, self._command)
        self._procs[account] = proc
        self.restarts += 1
        await proc.spawn()
        path = session_file_for(session_path)
        await proc.send(wp.Start(account=account, session_path=path, hold_ms=hold_ms))

    async def send(self, account: str, order: wp.Message) -> None:
        proc = self._procs.get(account)
        if proc is not None:
            await proc.send(order)

    async def stop(self, account: str, kill: bool = False) -> None:
        proc = self._procs.get(account)
        if proc is None:
            self._deliver(account, a.WorkerExited("no worker was running"))
            return
        if kill:
            proc.kill()
        else:
            await proc.send(wp.Stop(account=account))

    def alive(self, account: str) -> bool:
        proc = self._procs.get(account)
        return proc is not None and proc.alive()

    def kill_all(self) -> None:
        for proc in self._procs.values():
            proc.kill()

    def pids(self) -> dict[str, int]:
        return {acc: p.pid for acc, p in self._procs.items() if p.pid is not None}

    async def warm(self) -> None:
        """Nothing to set up ahead: each account's process starts with the account."""

    async def close(self) -> None:
        procs = list(self._procs.values())
        self._procs.clear()
        await asyncio.gather(*(p.close(within_s=5.0) for p in procs))


class SharedProcess:
    """One worker process for every account (the sim transport)."""

    def __init__(
        self, deliver: Deliver, env: Mapping[str, str] | None = None, transport: str = "sim"
    ) -> None:
        self._deliver = deliver
        self._env = dict(os.environ if env is None else env)
        self._transport = transport
        self._proc: WorkerProcess | None = None
        self._accounts: set[str] = set()
        self._spawn_lock = asyncio.Lock()

    async def _process(self) -> WorkerProcess:
        async with self._spawn_lock:
            if self._proc is None or not self._proc.alive():
                proc = WorkerProcess(
                    self._transport, self._env, self._on_report, lambda r: self._on_exit(proc, r)
                )
                self._proc = proc
                await proc.spawn()
            return self._proc

    def _on_report(self, item: wp.Message | wp.ProtocolError) -> None:
        if isinstance(item, wp.ProtocolError):
            log.warning("bad line from the shared worker: %s", item)
            return
        if isinstance(item, wp.Stopped):
            self._accounts.discard(item.account)
        self._deliver(item.account, a.Report(item))

    def _on_exit(self, proc: WorkerProcess, reason: str) -> None:
        if self._proc is not proc:
            return
        self._proc = None
        gone, self._accounts = self._accounts, set()
        for account in gone:
            self._deliver(account, a.WorkerExited(f"shared worker {reason}"))

    async def warm(self) -> None:
        """Spawn the process now: its start-up (a Python interpreter with its imports, about a
        second of CPU) would otherwise delay the first accounts of a takeover and compete with it."""
        await self._process()

    async def start(self, account: str, session_path: Path, hold_ms: int = 0) -> None:
        proc = await self._process()
        self._accounts.add(account)
        path = session_file_for(session_path)
        await proc.send(wp.Start(account=account, session_path=path, hold_ms=hold_ms))

    async def send(self, account: str, order: wp.Message) -> None:
        if self._proc is not None:
            await self._proc.send(order)

    async def stop(self, account: str, kill: bool = False) -> None:
        if account not in self._accounts or self._proc is None:
            self._deliver(account, a.WorkerExited("no worker was running"))
            return
        await self._proc.send(wp.Stop(account=account))
        if kill:  # one account cannot be killed alone: forget it now
            self._accounts.discard(account)
            self._deliver(account, a.WorkerExited("stop did not finish in time"))

    def alive(self, account: str) -> bool:
        return account in self._accounts and self._proc is not None and self._proc.alive()

    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def kill_all(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    async def close(self) -> None:
        async with self._spawn_lock:  # a spawn under way (a warm-up) finishes first, then is closed
            if self._proc is not None:
                await self._proc.close(within_s=5.0)
