"""A stray copy of a session: the split brain the `stream_replaced` step stages.

A copy of the holder's session file (SQLite backup API, from this process,
which never imports neonize) logs in to the simulated WhatsApp with the same
device, exactly as a forgotten second host would: the server lets the newer
login in and kicks the holder with `stream_replaced`. When the holder comes
back, the stray copy is kicked in turn and stops (it does not retry after
`stream_replaced`, like whatsmeow).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from connector.demo.emulators import DemoError
from connector.sessions import whatsmeow
from connector.workers import protocol as wp
from connector.workers.sim_session import SimLink, SimSession

LABEL = "stray copy (demo)"


async def _no_template() -> Path:
    raise DemoError("the stray copy needs an existing session file")


class StrayCopy:
    def __init__(self, account: str, source: Path, folder: Path, sim_url: str, http: aiohttp.ClientSession):
        self.account, self.source, self.path = account, source, folder / f"stray-{account}.db"
        self.messages: list[wp.Message] = []
        self._session = SimSession(
            account,
            self.path,
            SimLink(server_url=sim_url, http=http, label=LABEL),
            self.messages.append,
            template=_no_template,
        )

    async def start(self) -> None:
        if not self.source.exists():
            raise DemoError(f"no session file to copy at {self.source}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(whatsmeow.copy_template, self.source, self.path)
        await self._session.start()

    def connected(self) -> bool:
        return any(isinstance(m, wp.Connected) for m in self.messages)

    def replaced(self) -> bool:
        """The holder came back and kicked the stray copy out."""
        return any(isinstance(m, wp.StreamReplaced) for m in self.messages)

    def failure(self) -> str | None:
        for message in self.messages:
            if isinstance(message, (wp.LoggedOut, wp.Fatal)):
                return type(message).__name__
        return None

    async def stop(self) -> None:
        await self._session.stop()
        await asyncio.to_thread(self._remove)

    def _remove(self) -> None:
        """The copy holds session keys: it goes as soon as the step is over."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
