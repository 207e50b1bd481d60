"""`wa-keeper run`: the loops of one connector, around the supervisor.

- placement: heartbeat in `connectors/{id}`, read the live connectors and the
  accounts with `desired: active`, `assignment.plan` -> lease claims, handoffs;
- leases: `LeaseElector` (acquired -> the supervisor holds the account; lost or
  renew deadline missed -> the worker is stopped at once: self-fencing);
- commands: `CommandInbox` (claims fenced by the epoch) -> the account's machine;
- health: the supervisor's health pass, the volume marker, metrics;
- events: the outbox drains to Pub/Sub; HTTP serves health, metrics, status.

Shutdown (SIGTERM): heartbeat removed (the others become the preferred holders)
while the workers stop and the final backups run, then status `unattended` and the
leases released (a standby takes over at once), outbox flushed; a second SIGTERM
or the bound kills the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector import __version__
from connector import account as a
from connector.adapters.firestore_accounts import FirestoreAccountDirectory, needs_listing
from connector.assignment import AssignmentConfig, ConnectorLiveness, ReleaseReason, plan
from connector.clock import Clock
from connector.handoff_hints import HintSender
from connector.http_api import HttpApi, Readiness
from connector.inbox import CommandInbox
from connector.lease_loop import LeaseElector
from connector.loop_lag import watch_loop_lag
from connector.metrics import ConnectorMetrics
from connector.outbox import Outbox
from connector.ports import (
    CleanRelease,
    ConnectorRegistry,
    EventPublisher,
    HandoffHints,
    Shown,
    StatusUpdate,
    StatusWriter,
)
from connector.registry_record import ConnectorInfo
from connector.supervisor import Supervisor
from connector.vault import SessionVault
from wa_wire import AccountStatus, CommandAction, EventType, LifecycleEvent

log = logging.getLogger("wa_keeper.daemon")


@dataclass(frozen=True)
class DaemonConfig:
    connector_id: str
    host: str
    capacity: int = 500
    placement_every_s: float = 2.0
    refresh_desired_every_s: float = 10.0  # commands and handoff hints bring the urgent cases at once
    list_desired_every_s: float = 60.0  # in between, a count tells whether the set changed
    health_every_s: float = 30.0
    shutdown_bound_s: float = 20.0
    release_bound_s: float = 10.0
    heartbeat_ttl_ms: int = 15_000
    assignment: AssignmentConfig = field(default_factory=AssignmentConfig)


class Daemon:
    def __init__(
        self,
        *,
        config: DaemonConfig,
        clock: Clock,
        supervisor: Supervisor,
        vault: SessionVault,
        elector_factory: Callable[[Daemon], LeaseElector],
        registry: ConnectorRegistry,
        directory: FirestoreAccountDirectory,
        hints: HandoffHints,
        inbox_factory: Callable[[Daemon], CommandInbox],
        status: StatusWriter,
        outbox: Outbox,
        publisher: EventPublisher,
        http: Callable[[Readiness, Callable[[], dict[str, object]]], HttpApi],
        metrics: ConnectorMetrics,
        backup_gauges: Callable[[Mapping[str, bool]], None] | None = None,
    ) -> None:
        self.config, self.clock = config, clock
        self.backup_gauges = backup_gauges  # VaultBridge.refresh_backup_gauges
        self.supervisor, self.vault = supervisor, vault
        self.registry, self.directory, self.status = registry, directory, status
        self.hints = hints
        self._live: set[str] = set()  # the live connectors placement last saw (hint targets)
        self._hinted: Callable[[dict[str, CleanRelease | None]], None] | None = (
            None  # the hint listener's callback
        )
        self.hint_sender = HintSender(hints, lambda: sorted(self._live - {config.connector_id}))
        self.outbox, self.publisher, self.metrics = outbox, publisher, metrics
        self.elector = elector_factory(self)
        self.inbox = inbox_factory(self)
        self.readiness = Readiness()
        self.http = http(self.readiness, self.status_view)
        self.liveness = ConnectorLiveness()
        self._handoffs: dict[str, float] = {}
        self._given_up: dict[str, float] = {}  # released on a `release` command, and when
        self._releasing: set[str] = set()
        self._handing_off = 0  # accounts between their stop and their lease's release
        self._kept: set[str] = set()  # held, missing from the desired set, confirmed desired (logged once)
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self._leases_stop = asyncio.Event()  # after the handoff: leases are renewed until released
        self._left: asyncio.Future[None] | None = None  # shutdown: out of the live set (releases wait)
        self._placement_ok = False
        self._warmed = False
        self._last_refresh = -1e9
        self._last_listing = -1e9
        self._hints_deaf = False  # the hint listener was not listening at the last refresh

    # ---- LeaseListener: called on the loop, must not block

    def on_acquired(self, account: str, epoch: int) -> None:
        log.info("lease of %s acquired at epoch %d", account, epoch)
        self._event(EventType.LEASE_ACQUIRED, account, epoch)
        self.supervisor.hold(account, epoch, shown=self.elector.acquire_shows)
        self.inbox.acquired(account)  # commands issued before we held it

    def on_lost(self, account: str, epoch: int) -> None:
        log.warning("lease of %s lost (epoch %d): stopping its worker", account, epoch)
        self._event(EventType.LEASE_LOST, account, epoch, "another holder took over")
        self._spawn(self.supervisor.fence(account))

    def on_renew_deadline_missed(self, account: str, epoch: int) -> None:
        log.warning("lease of %s not renewed in time (epoch %d): stopping its worker", account, epoch)
        self._event(EventType.LEASE_LOST, account, epoch, "renew deadline missed: self-fenced")
        self._spawn(self.supervisor.fence(account))

    def command_for_unheld(self, account: str) -> None:
        """A pending command for an account we do not hold: if placement does not know the
        account (new, or missed by the directory's listener), read its document now so the
        next placement pass can claim it, instead of waiting for the next full refresh."""
        if account not in self.directory.desired():
            self._spawn(self._check_desired(account))

    async def _check_desired(self, account: str) -> None:
        with contextlib.suppress(Exception):  # the periodic refresh covers a failed read
            if await asyncio.to_thread(self.directory.still_desired, [account]):
                log.info("account %s: known from a command before the directory listed it", account)

    def _on_hint(self, hinted: dict[str, CleanRelease | None]) -> None:
        clean = [release for release in hinted.values() if release is not None]
        named = sum(release.newest is not None for release in clean)
        log.info(
            "hint: %d accounts released by another connector (%d cleanly, %d naming their newest backup)",
            len(hinted),
            len(clean),
            named,
        )
        self.elector.learn([release.lease for release in clean])  # taken without reading them first
        self.elector.look(account for account, release in hinted.items() if release is None)
        claimed = self.elector.claimed()
        # Released cleanly at epoch e: read their backups now, for the epoch we would take.
        taking = [release for release in clean if release.lease.account in claimed]
        self.supervisor.read_ahead(
            {r.lease.account: r.lease.epoch() + 1 for r in taking},
            {r.lease.account: r.newest for r in taking if r.newest is not None},
        )

    def on_held_until(self, account: str, epoch: int, until_mono: float) -> None:
        self._spawn(self.supervisor.extend_hold(account, until_mono))

    def _event(self, kind: EventType, account: str, epoch: int, detail: str = "") -> None:
        """Stored off the loop with the other events of the moment (`Outbox.put`)."""
        event = LifecycleEvent.new(
            kind,
            account_id=account,
            connector_id=self.config.connector_id,
            lease_epoch=epoch,
            at=self.clock.now(),
            detail=detail,
        )
        self._spawn(self._put(event))

    async def _put(self, event: LifecycleEvent) -> None:
        try:
            await self.outbox.put(event)
        except Exception as exc:
            log.error("event %s of %s not stored: %s", event.type.value, event.account_id, exc)

    def deliver_command(
        self, account: str, command_id: str, action: CommandAction, generation: int | None
    ) -> None:
        if action is CommandAction.RELEASE:  # the lease goes too: the daemon's part, not the account's
            self._spawn(self._release_on_command(account, command_id))
            return
        self.supervisor.deliver(account, a.CommandReceived(command_id, action, generation))

    async def _release_on_command(self, account: str, command_id: str) -> None:
        """The `release` command: a handoff as rebalancing does it (stop, final backup, the lease
        released with a hint), counted as one of ours, so this host takes the account back only
        after another one had the first chance (connector/assignment.py `taken_back_after_s`)."""
        if account not in self.elector.held() or account in self._releasing:
            why = "already being released" if account in self._releasing else "not held by this connector"
            await self._finish(command_id, False, why)
            return
        self._releasing.add(account)
        self._handoffs[account] = self._given_up[account] = self.clock.monotonic()
        try:
            seconds = await self.hand_off(account)
        except Exception as exc:
            log.exception("account %s: release on command failed", account)
            await self._finish(command_id, False, f"release failed: {exc}")
            return
        if account in self.elector.held():
            await self._finish(command_id, False, "the lease could not be released (it is renewed as before)")
            return
        after = self.config.assignment.taken_back_after_s
        log.info("account %s released on command in %.2f s", account, seconds)
        await self._finish(
            command_id,
            True,
            f"released in {seconds:.1f} s: another connector may take it (this one takes it back"
            f" after {after:g} s free if none does)",
        )

    async def _finish(self, command_id: str, ok: bool, message: str) -> None:
        try:
            await self.supervisor.commands.finish(command_id, ok, message)
        except Exception as exc:  # the command expires; the handoff itself stands
            log.error("command %s: result not recorded: %s", command_id, exc)

    # ---- the loops

    async def run(self) -> None:
        """Start everything and run until `stop()`; then shut down gracefully."""
        self.vault.open_volume()
        try:
            await self.publisher.ensure_topic()
        except Exception as exc:  # the outbox keeps events until the topic works
            log.error("topic not ready (events wait in the outbox): %s", exc)
        loop = asyncio.get_running_loop()

        def hinted(accounts: dict[str, CleanRelease | None]) -> None:
            loop.call_soon_threadsafe(self._on_hint, accounts)  # from the listener's thread

        self._hinted = hinted
        self.hints.listen(self.config.connector_id, hinted)
        self._register_readiness()
        await self.http.start()
        self._tasks = [
            asyncio.create_task(self.outbox.run_forever(yield_to=self._busy), name="outbox"),
            asyncio.create_task(self.elector.run(self._leases_stop), name="leases"),
            asyncio.create_task(self._every(self.config.placement_every_s, self.place), name="placement"),
            asyncio.create_task(self.inbox.run(), name="inbox"),
            asyncio.create_task(self._every(self.config.health_every_s, self.check_health), name="health"),
            asyncio.create_task(
                watch_loop_lag(self.clock, self.metrics.event_loop_lag.observe, self._stop), name="loop-lag"
            ),
        ]
        self._spawn(self._warm())
        await self._stop.wait()
        await self.shutdown()

    def stop(self) -> None:
        self._stop.set()

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while not self._stop.is_set():
            try:
                await work()
            except Exception:
                log.exception("%s failed; trying again in %.0f s", getattr(work, "__name__", "loop"), seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)

    async def place(self) -> None:
        """One placement pass: heartbeat, plan, claims and handoffs."""
        held = self.elector.held()
        info = ConnectorInfo(
            connector_id=self.config.connector_id,
            host=self.config.host,
            version=__version__,
            capacity=self.config.capacity,
            accounts_held=len(held),
            ttl_ms=self.config.heartbeat_ttl_ms,
        )
        await self.registry.heartbeat(info)
        view = await self.registry.list_connectors()
        now = self.clock.monotonic()
        live = self.liveness.capacities(view, now)
        live.setdefault(self.config.connector_id, self.config.capacity)
        self._live = set(live)
        if now - self._last_refresh > self.config.refresh_desired_every_s:
            await self._refresh_desired(now)
            self._last_refresh = now
            deaf, self._hints_deaf = self._hints_deaf, self._hinted is not None and not self.hints.listening()
            if deaf and self._hints_deaf and self._hinted is not None:  # at two refreshes in a row:
                log.warning("the handoff hint listener is not listening: listening again")  # not a slow start
                self.hints.listen(self.config.connector_id, self._hinted)
                self._hints_deaf = False
        decided = plan(
            self.config.connector_id,
            live=live,
            desired=self.directory.desired(),
            held=[acc for acc in held if acc not in self._releasing],
            handoffs=self._handoffs,
            now=now,
            config=self.config.assignment,
            given_up=self._given_up,
        )
        self.elector.set_claims({k: v for k, v in decided.claims.items() if k not in self._releasing})
        unwanted = [r.account for r in decided.releases if r.reason is ReleaseReason.NOT_DESIRED]
        kept = await asyncio.to_thread(self.directory.still_desired, unwanted) if unwanted else set()
        for account in sorted(kept - self._kept):  # the set missed it: never release on that alone
            log.warning("account %s missing from the desired set but still desired: kept", account)
        self._kept = kept
        for release in decided.releases:
            if release.account not in self._releasing and release.account not in kept:
                self._releasing.add(release.account)
                self._handoffs[release.account] = now
                self._spawn(self.hand_off(release.account))
        self._placement_ok = True

    async def _refresh_desired(self, now: float) -> None:
        """List the desired set when its count says it changed, or now and then in any case."""
        since = now - self._last_listing
        counted = None
        if since < self.config.list_desired_every_s:
            try:
                counted = await asyncio.to_thread(self.directory.count)
            except Exception as exc:  # listing instead costs more reads, never a missed change
                log.warning("desired accounts not counted (listing them instead): %s", exc)
        known = len(self.directory.desired())
        if needs_listing(since, self.config.list_desired_every_s, counted, known):
            await asyncio.to_thread(self.directory.refresh)
            self._last_listing = now

    async def _warm(self) -> None:
        """Set the workers up before any account comes (a standby is ready to take over before it
        must); /readyz waits for it. A failure only means the first start sets them up."""
        try:
            await self.supervisor.warm()
        finally:
            self._warmed = True

    async def hand_off(self, account: str) -> float:
        """Stop the worker, final backup, then release the lease, showing `unattended` in the
        same commit (the next holder restores); returns the seconds it took."""
        started = time.monotonic()
        self._handing_off += 1
        try:
            epoch = self.elector.held().get(account)
            clean = await self.supervisor.release(
                account, within_s=self.config.release_bound_s, show_released=False
            )
            stopped = time.monotonic()
            if self._left is not None:  # shutting down: release once the others prefer themselves
                await asyncio.wait([self._left])
            reason = f"released by {self.config.connector_id}; waiting for the next holder"
            released = await self.elector.release(account, Shown(AccountStatus.UNATTENDED, reason))
            if released is not None:  # clean: no write of ours at its epoch can land after it
                newest = self.supervisor.newest_known(account, released.epoch())
                self.hint_sender.note(account, CleanRelease(released, newest) if clean else None)
            if epoch is not None and released is None:  # a failed release: show it all the same (fenced)
                with contextlib.suppress(Exception):
                    update = StatusUpdate(
                        AccountStatus.UNATTENDED, reason, epoch, self.config.connector_id, None
                    )
                    await self.status.write(account, update)
            done = time.monotonic()
            log.debug(
                "%s handed off in %.2f s (stopped and backed up: %.2f s, cleanly: %s; lease released: %s)",
                account,
                done - started,
                stopped - started,
                clean,
                released is not None,
            )
            return done - started
        finally:
            self._handing_off -= 1
            self._releasing.discard(account)

    def _busy(self) -> bool:
        """Whether accounts are being started or handed off: events wait for them (the outbox's
        `yield_to`), for the next holder's sake, which waits for our final backups."""
        return self._handing_off > 0 or self.supervisor.starting()

    async def check_health(self) -> None:
        if await asyncio.to_thread(self.vault.volume_lost):
            log.error("the sessions volume was wiped under us: restoring every held account")
            await asyncio.to_thread(self.vault.open_volume)
            for account, epoch in self.elector.held().items():
                self._event(EventType.DISK_LOST, account, epoch, "volume marker gone: the disk was wiped")
                self.supervisor.deliver(account, a.DiskUnhealthy("lost with the volume"))
        await self.supervisor.check_health()
        self.update_metrics()

    def update_metrics(self) -> None:
        counts: dict[str, int] = {}
        for view in self.supervisor.views.values():
            counts[view.state.status.value] = counts.get(view.state.status.value, 0) + 1
        self.metrics.set_account_counts(counts)
        self.metrics.outbox_depth.set(self.outbox.depth())
        if self.backup_gauges is not None:
            self.backup_gauges(
                {acc: v.state.status is AccountStatus.CONNECTED for acc, v in self.supervisor.views.items()}
            )

    # ---- readiness and status

    def _register_readiness(self) -> None:
        self.readiness.register("placement", lambda: (self._placement_ok, "heartbeat and plan ran"))
        self.readiness.register("command_listener", self._listener_check)
        self.readiness.register("leases", self._lease_check)
        self.readiness.register("workers", lambda: (self._warmed, "set up" if self._warmed else "starting"))

    def _listener_check(self) -> tuple[bool, str]:
        alive = self.inbox.listening()
        return alive, "listening" if alive else "command listener is down (it is recreated)"

    def _lease_check(self) -> tuple[bool, str]:
        held = self.elector.held()
        if not held:
            return True, "standby: holding no accounts"
        return True, f"holding {len(held)} accounts"

    def status_view(self) -> dict[str, object]:
        held = self.elector.held()
        return {
            "connector_id": self.config.connector_id,
            "standby": not held,
            "held": len(held),
            "leases": held,
            "accounts": self.supervisor.snapshot(),
            "outbox_depth": self.outbox.depth(),
        }

    # ---- shutdown

    async def shutdown(self) -> None:
        """Graceful handoff within the bound; whatever is left is killed."""
        started = time.monotonic()
        for task in self._tasks:
            if task.get_name() in ("placement", "health", "inbox"):
                task.cancel()
        # Take nothing new, but keep renewing what is held until it is handed off: a handoff
        # of many accounts can outlast the renew deadline, and the workers' holds with it.
        self.elector.set_claims({})
        # Leave the live set while the workers stop and the final backups run; no lease is
        # released before that (`hand_off`): the other connectors' plans then make them the
        # preferred holders of our accounts, with no head start to wait for.
        self._left = asyncio.ensure_future(self._leave())
        try:
            await asyncio.wait_for(self._release_everything(), self.config.shutdown_bound_s)
        except TimeoutError:
            log.error("graceful shutdown exceeded %.0f s: killing workers", self.config.shutdown_bound_s)
        self._leases_stop.set()
        await self.supervisor.workers.close()
        with contextlib.suppress(Exception):
            await self.registry.remove(self.config.connector_id)
        await self.outbox.flush(timeout_s=3.0)
        self.outbox.stop()
        self.hints.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.stop()
        self.outbox.close()
        log.info("stopped in %.1f s", time.monotonic() - started)

    async def _leave(self) -> None:
        with contextlib.suppress(Exception):
            await self.registry.remove(self.config.connector_id)
        with contextlib.suppress(Exception):  # hint every live host, also one that joined since the last pass
            view = await self.registry.list_connectors()
            self._live |= set(self.liveness.capacities(view, self.clock.monotonic()))

    async def _release_everything(self) -> None:
        accounts = list(self.elector.held())
        results = await asyncio.gather(*(self.hand_off(acc) for acc in accounts), return_exceptions=True)
        await self.hint_sender.flush()
        seconds = sorted(r for r in results if isinstance(r, float))
        if seconds:
            log.info(
                "handed off %d of %d accounts: median %.2f s, slowest %.2f s",
                len(seconds),
                len(accounts),
                seconds[len(seconds) // 2],
                seconds[-1],
            )

    def _spawn(self, work: Awaitable[object]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)
