"""The connector's ports: one Protocol per external role it talks to.

Each has a real adapter (connector/adapters/) and an in-memory fake for unit
tests; contract tests run the same cases against both. The Clock port lives in
`connector.clock`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from connector.errors import KeeperError
from wa_wire import AccountStatus, CommandAction, LifecycleEvent, to_json

if TYPE_CHECKING:
    from connector.lease_record import LeaseRecord, LeaseView
    from connector.registry_record import ConnectorInfo, ConnectorRecord, RegistryView


class EventSink(Protocol):
    """Where lifecycle events go: the durable outbox (then Pub/Sub).

    `emit` must not block on the network: the outbox writes locally first.
    """

    def emit(self, event: LifecycleEvent) -> None: ...

    async def put(self, event: LifecycleEvent) -> None:
        """`emit` from the event loop, without holding it up for the local write."""
        ...


class MemoryEventSink:
    """Collects events in a list (tests, and commands that run without a daemon)."""

    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []

    def emit(self, event: LifecycleEvent) -> None:
        self.events.append(event)

    async def put(self, event: LifecycleEvent) -> None:
        self.emit(event)


@dataclass(frozen=True)
class EventMessage:
    """One lifecycle event as it goes to Pub/Sub (DESIGN.md Part 1, Pub/Sub).

    The outbox stores and sends these bytes as they are, without parsing them
    again, so an event queued by a newer version still goes out after a downgrade.
    """

    event_id: str
    ordering_key: str
    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, event: LifecycleEvent) -> EventMessage:
        """Data = the event's JSON, attributes = account_id and type, ordering key = account id."""
        return cls(
            event_id=event.event_id,
            ordering_key=event.account_id,
            data=to_json(event).encode(),
            attributes=event.pubsub_attributes(),
        )


@dataclass(frozen=True)
class PublishOutcome:
    """What became of one message: a server message id, or a one-line error."""

    message_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.message_id is not None and self.error is None


class PublisherError(KeeperError):
    """The publisher cannot work at all (topic unusable, closed); the message says why."""


class EventPublisher(Protocol):
    """Pub/Sub's role: publish lifecycle events, in order per ordering key.

    The outbox owns retries: `publish` makes one attempt per message and reports
    each outcome instead of raising; a failed key must be publishable again on
    the next call (the real client pauses it until resumed).
    """

    async def ensure_topic(self) -> None:
        """Create the topic if it is missing (an existing one is fine)."""
        ...

    async def publish(self, messages: Sequence[EventMessage]) -> list[PublishOutcome]:
        """One outcome per message, in the order given."""
        ...

    async def close(self) -> None: ...


class StaleEpochError(KeeperError):
    """A write was refused because the caller's lease epoch is older than the lease's."""


@dataclass(frozen=True)
class Manifest:
    """One backup generation (DESIGN.md Part 1, "Backup manifest fields").

    A generation exists only once its manifest exists; its chunks are written first.
    `sha256` is of the plaintext snapshot; `wrapped_key` is the data key wrapped by
    the key-encryption key `key_id` (never the key itself).
    """

    account_id: str
    generation: int
    created_at: datetime
    connector_id: str
    lease_epoch: int
    format: int
    key_id: str
    wrapped_key: bytes = field(repr=False)
    size: int
    sha256: str
    chunk_count: int
    taken_while_connected: bool
    good: bool
    jid: str
    head: bytes | None = field(default=None, repr=False, compare=False)
    """Chunk 0, when the manifest carries it inline and it was read with the manifest
    (`manifest`, `newest_good`); None in listings, which leave the bytes out."""


@dataclass(frozen=True)
class NextCommit:
    """What `BackupStore.commit_next` committed, and whether a number reserved before it
    has no newest manifest (`gap`): a writer may have died between its chunks and its
    manifest, so orphan chunks are worth looking for."""

    manifest: Manifest
    gap: bool


@dataclass(frozen=True)
class NewestBackup:
    """An account's newest backup generation and the lease epoch it was written under, as the
    connector releasing the account knew it (`generation` 0: there is none).

    The holder at an epoch is the only writer of generations while it holds the lease, so
    what it knew when it released cleanly is what the next holder would read."""

    generation: int
    lease_epoch: int

    def __post_init__(self) -> None:
        for name in ("generation", "lease_epoch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise KeeperError(f"newest backup: {name} must be an integer >= 0, got {value!r}")
        if (self.generation == 0) != (self.lease_epoch == 0):
            raise KeeperError(
                f"newest backup: generation {self.generation} with lease epoch {self.lease_epoch}"
            )


@dataclass(frozen=True)
class CleanRelease:
    """A lease released with nothing of its epoch left to land after it: the lease as released
    (with its version), and the releaser's newest backup (None: it did not know it)."""

    lease: LeaseView
    newest: NewestBackup | None = None


def check_one_each(accounts: Sequence[str], error: type[Exception] = KeeperError) -> None:
    """A batch of accounts' writes takes each account once: two in one commit have no order."""
    if len(set(accounts)) != len(accounts):
        raise error("an account appears twice in one batch")


def check_next_manifest(manifest: Manifest, account: str, generation: int, epoch: int) -> Manifest:
    """What `BackupStore.commit_next` requires of the manifest `build` returns."""
    if (manifest.account_id, manifest.generation, manifest.lease_epoch) != (account, generation, epoch):
        raise KeeperError(
            f"{account}: built a manifest for {manifest.account_id} generation {manifest.generation}"
            f" epoch {manifest.lease_epoch}, expected generation {generation} epoch {epoch}"
        )
    if manifest.chunk_count != 1 or manifest.head is None:
        raise KeeperError(f"{account}: commit_next takes a one-chunk manifest with its chunk inline")
    return manifest


class BackupStore(Protocol):
    """Encrypted backup generations of session snapshots (Firestore, or memory in tests).

    Writers are fenced: `reserve_generation` and `commit` refuse (StaleEpochError)
    when the caller's epoch is older than `leases/{account}.epoch` (a missing lease
    counts as epoch 0). Generation numbers are handed out once per account and grow.
    """

    def reserve_generation(self, account: str, epoch: int) -> int:
        """A new generation number, never handed out before for this account."""
        ...

    def commit_next(self, account: str, epoch: int, build: Callable[[int], Manifest]) -> NextCommit:
        """Reserve the next generation and commit `build(generation)`, a one-chunk manifest
        (chunk 0 in `head`), in one fenced write.

        The short path of a backup that fits one chunk: no chunk documents, so no
        separate reservation is needed before them. `build` may be called again
        (with a new number) when a concurrent write forces a retry.
        """
        ...

    def commit_next_many(
        self, items: Sequence[tuple[str, int, Callable[[int], Manifest]]]
    ) -> list[NextCommit | Exception]:
        """`commit_next` of each (account, epoch, build), one per account, in as few writes as
        the store can; per item what was committed, or what refused it (StaleEpochError...)."""
        ...

    def write_chunks(self, account: str, generation: int, chunks: Sequence[bytes], start: int = 0) -> None:
        """Store chunks `start`, `start`+1… of a reserved generation (not yet a generation:
        no manifest). The vault passes chunk 0 in the manifest's `head` instead (start=1)."""
        ...

    def commit(self, manifest: Manifest) -> None:
        """Write the manifest (with `head` inline when given), fenced by `manifest.lease_epoch`,
        and point the account's `backup` summary at it when it is the newest."""
        ...

    def manifests(self, account: str, limit: int | None = None) -> list[Manifest]:
        """Every generation of the account (the newest `limit`), newest first, without `head`
        (one read each)."""
        ...

    def manifest(self, account: str, generation: int) -> Manifest | None:
        """One generation with its `head` (one read); None when it does not exist or is unreadable."""
        ...

    def newest_good(self, account: str) -> Manifest | None:
        """The newest good generation with its `head` (one read); None when there is none."""
        ...

    def newest(self, account: str) -> Manifest | None:
        """The newest generation, good or not, with its `head` (one read); None when there is
        none or it is unreadable."""
        ...

    def manifests_named(self, wanted: Mapping[str, int]) -> dict[str, Manifest]:
        """The generation named for each account ({account: generation}), with its `head`, in
        one batched read; an account is left out when that manifest does not read back whole."""
        ...

    def newest_many(self, accounts: Sequence[str]) -> dict[str, Manifest]:
        """`newest` of many accounts in two batched reads: the `backup` summaries, then the
        manifests they name (the summary names the newest generation: it is set in the commit
        that creates it). An account is left out when its summary names no manifest that reads
        back whole (none yet, a delete halfway): ask `newest` for it."""
        ...

    def read_chunks(self, account: str, generation: int, count: int, start: int = 0) -> list[bytes | None]:
        """Chunks `start`..count-1 of a generation (chunk 0 from the manifest's inline head,
        or its chunk document in the older layout); None where one is missing."""
        ...

    def mark_good(self, account: str, generation: int) -> bool:
        """Set `good`; False when the generation does not exist."""
        ...

    def orphan_generations(self, account: str) -> list[int]:
        """Generations with chunks but no manifest (a writer died before committing)."""
        ...

    def delete_generation(self, account: str, generation: int) -> None:
        """Delete the manifest (first) and every chunk of one generation."""
        ...

    def wipe(self, account: str, epoch: int) -> int:
        """Delete every generation and orphan of the account (fenced); returns how many."""
        ...


@dataclass(frozen=True)
class StatusUpdate:
    """One write of an account's visible state (`accounts/{id}`), by its holder."""

    status: AccountStatus
    reason: str
    epoch: int
    holder: str
    jid: str | None
    qr: tuple[str, str] | None = field(default=None, repr=False)  # (code, expires_at): a secret
    connected_at: datetime | None = None


@dataclass(frozen=True)
class Shown:
    """A status a lease write also shows on `accounts/{id}`, in the same commit: `connecting`
    as a lease is taken, `unattended` as it is released. One round trip and one listener
    push instead of two; the holder and epoch written are the lease's."""

    status: AccountStatus
    reason: str


class StatusWriter(Protocol):
    """Writes `accounts/{id}` status fields; refuses (StaleEpochError) a stale epoch."""

    async def write(self, account: str, update: StatusUpdate) -> None: ...


@dataclass(frozen=True)
class PendingCommand:
    """The part of a pending `commands/{id}` document the connector acts on."""

    command_id: str
    account_id: str
    action: CommandAction
    generation: int | None
    expires_at: str


class CommandStore(Protocol):
    """Commands in Firestore (`commands/{id}`): listened to, claimed, finished.

    `claim` is atomic: the command must be pending and unexpired and the caller's
    epoch must equal `leases/{account}.epoch` when it commits; otherwise it raises
    `connector.inbox.ClaimRefused`. A claim repeated by its claimer at the same
    epoch succeeds (a retry after a lost answer). The listener callback runs on
    another thread.
    """

    def listen(self, on_pending: Callable[[PendingCommand], None]) -> None: ...

    def listening(self) -> bool: ...

    def stop_listening(self) -> None: ...

    def pending(self, accounts: Sequence[str]) -> list[PendingCommand]: ...

    def claim(self, command_id: str, connector_id: str, epoch: int) -> None: ...

    def finish(self, command_id: str, connector_id: str, ok: bool, message: str) -> None: ...


class LeaseStore(Protocol):
    """`leases/{account}` (connector/lease_record.py has the record and the write rules).

    Every write is one atomic compare-and-set on one document that applies a rule
    of lease_record.py to the record as stored; the store's own clock (Firestore:
    the server timestamp) sets `renewed_at` and `acquired_at`. Each call returns
    the lease as stored after it, with the store's time of that read or write.
    """

    async def get(self, account: str) -> LeaseView: ...

    async def get_many(self, accounts: Sequence[str]) -> list[LeaseView]:
        """One view per account, in the order given (one batched read)."""
        ...

    def learn(self, views: Sequence[LeaseView]) -> None:
        """Leases as another connector's store saw them (with their `version`): the next
        write on each may go out without reading it first. A view gone stale costs that
        write a conflict and a read, never a wrong write (the write is on that version)."""
        ...

    async def try_acquire(
        self, account: str, holder: str, ttl_ms: int, expected: LeaseRecord | None, shown: Shown | None = None
    ) -> LeaseView:
        """Take the lease at the next epoch if it is still `expected`; else write nothing.
        With `shown`, the account shows that status, held by `holder` at the new epoch."""
        ...

    async def try_acquire_many(
        self,
        claims: Sequence[tuple[str, LeaseRecord | None]],
        holder: str,
        ttl_ms: int,
        shown: Shown | None = None,
    ) -> list[LeaseView]:
        """`try_acquire` for each (account, expected), one view per claim in order: each
        account is taken or not on its own, in as few commits as the store can make."""
        ...

    async def renew(self, account: str, holder: str, epoch: int, ttl_ms: int) -> LeaseView:
        """Renew if `holder` holds it at `epoch`; else write nothing."""
        ...

    async def release(self, account: str, holder: str, epoch: int, shown: Shown | None = None) -> LeaseView:
        """Set the holder to null if `holder` holds it at `epoch`; else write nothing.
        With `shown`, the account shows that status, last held by `holder` at `epoch`."""
        ...

    async def release_many(
        self, leases: Sequence[tuple[str, int]], holder: str, shown: Shown | None = None
    ) -> list[LeaseView]:
        """`release` for each (account, epoch), one view per lease in order, each on its own,
        in as few commits as the store can make (a handoff releases hundreds at once)."""
        ...

    async def current_epoch(self, account: str) -> int:
        """The lease's epoch (0 when there is no lease) for fencing checks."""
        ...


class HandoffHints(Protocol):
    """`handoffs/{connector}`: accounts other connectors just released, for this one to read
    their leases now rather than at its next poll. Only a hint: the lease decides."""

    def send(self, to: Sequence[str], released: Mapping[str, CleanRelease | None]) -> None:
        """Add the `released` accounts to the hints of each connector in `to` (one commit).
        Each maps to its clean release when the release was clean (the old holder's last write
        done: nothing of that epoch can land after it), else None."""
        ...

    def listen(self, me: str, on_hint: Callable[[dict[str, CleanRelease | None]], None]) -> None:
        """Call `on_hint` (from another thread) with the accounts hinted to `me` (as `send`
        gave them; a clean release wins over None, a later epoch over an earlier one); each
        is delivered once, then cleared."""
        ...

    def listening(self) -> bool:
        """Whether the listener still runs (one can stop silently after hours: NOTES.md)."""
        ...

    def stop(self) -> None: ...


class ConnectorRegistry(Protocol):
    """`connectors/{id}`: each connector's heartbeat, with its capacity."""

    async def heartbeat(self, info: ConnectorInfo) -> ConnectorRecord:
        """Write this connector's record; `renewed_at` (and at first `started_at`) = store time."""
        ...

    async def list_connectors(self) -> RegistryView: ...

    async def remove(self, connector_id: str) -> None:
        """A clean shutdown: the record goes at once instead of going stale."""
        ...
