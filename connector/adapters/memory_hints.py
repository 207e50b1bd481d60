"""In-memory `HandoffHints` for tests: connectors of one test share a `HintBoard`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from connector.lease_record import LeaseView, check_id
from connector.ports import CleanRelease


class HintBoard:
    """The hint documents, by connector id, and who listens to which."""

    def __init__(self) -> None:
        self.docs: dict[str, list[str]] = {}
        self.clean: dict[str, dict[str, CleanRelease]] = {}
        self.listeners: dict[str, Callable[[dict[str, CleanRelease | None]], None]] = {}

    def deliver(self, connector: str) -> None:
        on_hint = self.listeners.get(connector)
        clean = self.clean.get(connector, {})
        hinted: dict[str, CleanRelease | None] = {
            a: clean.get(a) for a in sorted(set(self.docs.get(connector, [])))
        }
        if on_hint is not None and hinted:
            self.docs[connector], self.clean[connector] = [], {}
            on_hint(hinted)


class MemoryHandoffHints:
    def __init__(self, board: HintBoard) -> None:
        self.board = board
        self._me: str | None = None

    def send(self, to: Sequence[str], released: Mapping[str, CleanRelease | None]) -> None:
        hinted = {check_id("account", a): v for a, v in released.items()}
        targets = [check_id("connector id", c) for c in to]
        if not hinted:
            return
        for connector in targets:
            self.board.docs.setdefault(connector, []).extend(hinted)
            clean = self.board.clean.setdefault(connector, {})
            for account, release in hinted.items():
                view = None if release is None else release.lease
                if release is None or view is None or view.record is None or view.version is None:
                    continue
                known = clean.get(account)
                if known is None or known.lease.epoch() < view.epoch():  # as a stored hint reads back:
                    stored = LeaseView(account, view.record, None, version=view.version)
                    clean[account] = CleanRelease(stored, release.newest)
            self.board.deliver(connector)

    def listen(self, me: str, on_hint: Callable[[dict[str, CleanRelease | None]], None]) -> None:
        self._me = check_id("connector id", me)
        self.board.listeners[me] = on_hint
        self.board.deliver(me)

    def listening(self) -> bool:
        return self._me is not None and self._me in self.board.listeners

    def stop(self) -> None:
        if self._me is not None:
            self.board.listeners.pop(self._me, None)
            self._me = None
