"""Carries out the fault script on the running stack and waits on the judge's answers.

Pairing, the steps and the QR re-pairing are all waits for conditions with a
deadline; what happened is recorded per account (`AccountOutcome`) for the
final table, including failures: the demo never reports a recovery it did
not see.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

from connector.demo import script as s
from connector.demo.emulators import DemoError
from connector.demo.observe import Observations
from connector.demo.stack import DemoStack
from connector.demo.stray import StrayCopy
from connector.sessions import whatsmeow
from wa_wire import CommandAction

REPAIR_AFTER_S = 15.0
"""An account back in needs_qr this long after its pair order gets another one."""


@dataclass(frozen=True)
class AccountOutcome:
    """What one step did to one account."""

    step: str
    fault: s.Fault
    ok: bool
    phase: s.Phase
    detail: str
    seconds: float | None
    qr_shown: bool = False


@dataclass
class StepResult:
    step: s.Step
    targets: list[str]
    outcomes: dict[str, AccountOutcome] = field(default_factory=dict)
    note: str = ""


class Runner:
    def __init__(
        self,
        stack: DemoStack,
        store: Observations,
        http: aiohttp.ClientSession,
        accounts: list[str],
        *,
        say: Callable[[str], None],
        show_qr: Callable[[str, str], None],
        step_within_s: float,
    ) -> None:
        self.stack, self.store, self.http, self.accounts = stack, store, http, accounts
        self.say, self.show_qr, self.step_within_s = say, show_qr, step_within_s
        self.used: set[str] = set()
        self.initial_jids: dict[str, str] = {}
        self.current: str = "starting"

    # ---- setup

    async def pair_all(self, within_s: float) -> None:
        """Activate every account, order pairing, scan each QR at the simulated WhatsApp."""
        self.current = f"pairing {len(self.accounts)} accounts"
        ordered: dict[str, float] = {}
        for account in self.accounts:
            await self.stack.activate(account)
            await self.stack.command(account, CommandAction.PAIR)
            ordered[account] = self.store.now()
        scanned: set[str] = set()

        async def progress() -> bool:
            for account in (await self.stack.pending_qr(self.http)) & set(self.accounts) - scanned:
                try:
                    await self.stack.scan(self.http, account)
                    scanned.add(account)
                except DemoError:
                    continue  # the code rotated between the listing and the scan: next round
            docs = self.store.snapshot().docs
            for account in self.accounts:  # pairing cut short (e.g. a lease moved): ask again
                doc = docs.get(account)
                if doc and doc.status == "needs_qr" and self.store.now() - ordered[account] > REPAIR_AFTER_S:
                    self.say(f"  {account}: pairing was cut short ({doc.reason}); ordering it again")
                    await self.stack.command(account, CommandAction.PAIR)
                    ordered[account] = self.store.now()
                    scanned.discard(account)
            return all(a in docs and docs[a].status == "connected" and docs[a].jid for a in self.accounts)

        await self._until(progress, within_s, "every account paired and connected")
        self.initial_jids = await self.stack.devices(self.http)

    async def wait_backups(self, within_s: float) -> None:
        self.current = "waiting for a good backup of every account"

        async def ready() -> bool:
            docs = self.store.snapshot().docs
            return all(
                a in docs and docs[a].backup_good and docs[a].status == "connected" for a in self.accounts
            )

        await self._until(ready, within_s, "a good backup of every account")

    async def _until(self, probe: Callable[[], object], within_s: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while loop.time() < deadline:
            result = probe()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.25)
        raise DemoError(f"not reached within {within_s:.0f} s: {what}")

    async def settle(self, within_s: float) -> dict[str, bool]:
        """After the script: wait (bounded) until every account is logged in and shown connected."""
        self.current = "settling"
        live: dict[str, bool] = {}

        async def settled() -> bool:
            nonlocal live
            live = await self.stack.live(self.http, self.accounts)
            docs = self.store.snapshot().docs
            return all(live.values()) and all(
                a in docs and docs[a].status == "connected" for a in self.accounts
            )

        with contextlib.suppress(DemoError):  # not settled: the final table shows where each one stands
            await self._until(settled, within_s, "every account connected")
        return live

    # ---- steps

    async def run(self, step: s.Step) -> StepResult:
        self.current = step.title
        self.stack.check_alive()
        snap = self.store.snapshot()
        targets = s.pick_targets(step, snap.docs, self.accounts, self.used)
        if step.per_account:
            self.used.update(targets)
        result = StepResult(step, targets)
        if not targets:
            result.note = "no account to hit (the connector held none)"
            self.say(f"  nothing to do: {result.note}")
            return result
        self.say(f"  accounts hit: {', '.join(targets)}")
        fresh = await asyncio.to_thread(self.stack.read_accounts, targets, self.store.now())
        since = self.store.now()
        bases = {
            a: s.Baseline(a, d.jid, d.last_connected_at, since, step.signature, d.updated)
            for a, d in fresh.items()
        }
        stray = await self._act(step, targets)
        try:
            verdicts = await self._verdicts(bases, self.step_within_s)
        finally:
            if stray is not None:
                await stray.stop()
        self.stack.check_alive()
        for account, verdict in verdicts.items():
            result.outcomes[account] = await self._outcome(step, bases[account], verdict, stray)
        return result

    async def _act(self, step: s.Step, targets: list[str]) -> StrayCopy | None:
        if step.fault is s.Fault.WIPE_DISK_AND_RESTART:
            assert step.connector is not None
            await self.stack.crash(step.connector)
            self.stack.wipe_sessions(step.connector)
            self.say(
                f"  {step.connector} killed, {self.stack.sessions_path(step.connector).name} deleted; restarting"
            )
            await self.stack.start_connector(step.connector, self.http)
        elif step.fault is s.Fault.KILL_CONNECTOR:
            assert step.connector is not None
            await self.stack.crash(step.connector)
            self.say(f"  {step.connector} killed; its workers died with it")
        elif step.fault is s.Fault.TRANSIENT_LOGOUT:
            await self.stack.fault(self.http, targets[0], fault="logout")
        elif step.fault is s.Fault.REAL_LOGOUT:
            await self.stack.fault(self.http, targets[0], fault="unlink")
        elif step.fault is s.Fault.STREAM_REPLACED:
            return await self._stray(targets[0])
        return None

    async def _stray(self, account: str) -> StrayCopy:
        holder = self.store.snapshot().docs[account].holder or ""
        source = whatsmeow.session_file(self.stack.sessions_path(holder), account)
        stray = StrayCopy(account, source, self.stack.run_dir / "stray", self.stack.sim_url, self.http)
        await stray.start()
        await self._until(lambda: stray.connected() or stray.failure(), 30, "the stray copy logged in")
        if not stray.connected():
            raise DemoError(f"the stray copy of {account} could not log in ({stray.failure()})")
        self.say(f"  a stray copy of {account}'s session logged in: {holder} was kicked out")
        return stray

    async def _verdicts(self, bases: Mapping[str, s.Baseline], within_s: float) -> dict[str, s.Verdict]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            snap = self.store.snapshot()
            verdicts = {a: s.judge(b, snap.docs.get(a), snap.events_of(a, b.since)) for a, b in bases.items()}
            if all(v.final for v in verdicts.values()) or loop.time() >= deadline:
                return verdicts
            await asyncio.sleep(0.2)

    async def _outcome(
        self, step: s.Step, base: s.Baseline, verdict: s.Verdict, stray: StrayCopy | None
    ) -> AccountOutcome:
        seconds = None if verdict.at is None else round(verdict.at - base.since, 1)
        ok = verdict.phase is s.expected_phase(step)
        detail = verdict.detail
        if verdict.phase is s.Phase.WAITING:
            detail = f"not settled within {self.step_within_s:.0f} s (last: {verdict.detail})"
        if stray is not None and ok:
            detail += "; the stray copy was kicked" if stray.replaced() else "; the stray copy was stopped"
        qr_shown = False
        if step.expect is s.Expect.QR and ok:
            events = self.store.snapshot().events_of(base.account, base.since)
            logouts = sum(e.type == "logged_out" for e in events)
            restores = sum(e.type == "restored" for e in events)
            detail = f"needs_qr after {logouts} logouts and {restores} restores from backup ({seconds} s)"
            qr_shown, repair = await self._show_and_scan(base)
            ok = repair.phase is s.Phase.RECOVERED
            detail += f"; QR shown; {repair.detail}" if ok else f"; re-pairing failed: {repair.detail}"
            seconds = None if repair.at is None else round(repair.at - base.since, 1)
        mark = "ok" if ok else "FAILED"
        self.say(f"  {base.account}: {mark}: {detail}" + (f" ({seconds} s)" if seconds is not None else ""))
        return AccountOutcome(step.title, step.fault, ok, verdict.phase, detail, seconds, qr_shown)

    async def _show_and_scan(self, base: s.Baseline) -> tuple[bool, s.Verdict]:
        """Order pairing, show the QR from the account document, scan it, wait for the new device."""
        account = base.account
        await self.stack.command(account, CommandAction.PAIR)

        def qr() -> str | None:
            doc = self.store.snapshot().docs.get(account)
            return None if doc is None else doc.qr_code

        try:
            await self._until(qr, 60, f"a QR code for {account}")
        except DemoError as exc:
            return False, s.Verdict(s.Phase.WAITING, str(exc))
        self.show_qr(account, qr() or "")
        await self._until(
            lambda: self._scan_when_pending(account), 60, f"{account}'s QR code at the simulated WhatsApp"
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            verdict = s.repaired(base, self.store.snapshot().docs.get(account))
            if verdict.final:
                return True, verdict
            await asyncio.sleep(0.2)
        return True, s.Verdict(s.Phase.WAITING, "the new device did not connect within 60 s")

    async def _scan_when_pending(self, account: str) -> bool:
        if account not in await self.stack.pending_qr(self.http):
            return False
        try:
            await self.stack.scan(self.http, account)
        except DemoError:
            return False  # the code rotated between the listing and the scan: next round
        return True
