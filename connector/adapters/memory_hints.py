"""In-memory `HandoffHints` for tests: connectors of one test share a `HintBoard`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from connector.lease_record import check_id


class HintBoard:
    """The hint documents, by connector id, and who listens to which."""

    def __init__(self) -> None:
        self.docs: dict[str, list[str]] = {}
        self.listeners: dict[str, Callable[[list[str]], None]] = {}

    def deliver(self, connector: str) -> None:
        on_hint = self.listeners.get(connector)
        accounts = sorted(set(self.docs.get(connector, [])))
        if on_hint is not None and accounts:
            self.docs[connector] = []
            on_hint(accounts)


class MemoryHandoffHints:
    def __init__(self, board: HintBoard) -> None:
        self.board = board
        self._me: str | None = None

    def send(self, to: Sequence[str], accounts: Sequence[str]) -> None:
        ids = [check_id("account", a) for a in accounts]
        for connector in to:
            self.board.docs.setdefault(check_id("connector id", connector), []).extend(ids)
            self.board.deliver(connector)

    def listen(self, me: str, on_hint: Callable[[list[str]], None]) -> None:
        self._me = check_id("connector id", me)
        self.board.listeners[me] = on_hint
        self.board.deliver(me)

    def listening(self) -> bool:
        return self._me is not None and self._me in self.board.listeners

    def stop(self) -> None:
        if self._me is not None:
            self.board.listeners.pop(self._me, None)
            self._me = None
