"""A worker process driven like the supervisor drives it: orders on stdin, reports
read from stdout with the protocol reader, stderr kept in a file for the test."""

from __future__ import annotations

import asyncio
import os
import select
import sys
from pathlib import Path
from typing import TypeVar

from connector.workers import protocol as wp
from connector.workers.reader import read_messages

M = TypeVar("M", bound=wp.Message)
DEADLINE_S = 20.0


class WorkerProcess:
    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr
        self.reports: list[wp.Message] = []
        self.errors: list[wp.ProtocolError] = []
        self._cursor = 0
        assert proc.stdout is not None
        self._stream = read_messages(proc.stdout, wp.REPORTS)

    @classmethod
    async def spawn(cls, args: list[str], stderr: Path, env: dict[str, str] | None = None) -> WorkerProcess:
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "connector",
                "worker",
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env={**os.environ, **(env or {})},
            )
        return cls(proc, stderr)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def send(self, order: wp.Message | bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(order if isinstance(order, bytes) else wp.encode_line(order))
        await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    async def next(self, kind: type[M], account: str, within: float = DEADLINE_S) -> M:
        """The next `kind` report of `account` (earlier other reports are kept in `reports`)."""
        try:
            async with asyncio.timeout(within):
                while True:
                    for index in range(self._cursor, len(self.reports)):
                        message = self.reports[index]
                        if isinstance(message, kind) and message.account == account:
                            self._cursor = index + 1
                            return message
                    item = await anext(self._stream)
                    if isinstance(item, wp.ProtocolError):
                        self.errors.append(item)
                    else:
                        self.reports.append(item)
        except (TimeoutError, StopAsyncIteration):
            raise AssertionError(
                f"no {kind.TYPE} for {account}; reports {self.reports}; stderr: {self.stderr()[-2000:]}"
            ) from None

    async def rest(self, within: float = DEADLINE_S) -> list[wp.Message]:
        """Every report until the worker closes stdout."""
        async with asyncio.timeout(within):
            async for item in self._stream:
                if isinstance(item, wp.ProtocolError):
                    self.errors.append(item)
                else:
                    self.reports.append(item)
        return self.reports[self._cursor :]

    async def exit_code(self, within: float = DEADLINE_S) -> int:
        async with asyncio.timeout(within):
            return await self.proc.wait()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc, through each thread's children list)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def wait_gone(pid: int, within: float) -> bool:
    """True once process `pid` has exited (a pidfd turns readable), False at the deadline."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], within)
        return bool(readable)
    finally:
        os.close(fd)
