"""The session vault as the supervisor sees it: outcomes become state-machine signals.

It also counts what the vault did for /metrics (restores by source and outcome,
backup bytes) and remembers when each account's session was last held by a
backup, for the backup age and lag gauges the daemon refreshes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime

from connector import account as a
from connector.adapters.disk_sessions import DiskState
from connector.clock import Clock, SystemClock
from connector.metrics import ConnectorMetrics
from connector.ports import NewestBackup, StaleEpochError
from connector.vault import (
    BackupOutcome,
    BackupRequest,
    BackupStatus,
    EnsureAction,
    EnsureOutcome,
    SessionVault,
)

log = logging.getLogger("wa_keeper.vault")


class VaultBridge:
    """Implements `connector.supervisor.Vault` on a `SessionVault`."""

    def __init__(
        self, vault: SessionVault, metrics: ConnectorMetrics | None = None, clock: Clock | None = None
    ) -> None:
        self.vault = vault
        self.metrics = metrics if metrics is not None else ConnectorMetrics()
        self.clock = clock if clock is not None else SystemClock()
        self._held_at: dict[str, datetime] = {}
        """Last backup pass that found the disk session held by a generation (written or unchanged)."""
        self._good_at: dict[str, datetime] = {}
        """When the newest good generation was taken."""
        self._guard = threading.Lock()  # backups of different accounts run in different threads

    def ensure(self, account: str, expected_jid: str | None, epoch: int) -> a.EnsureDone:
        outcome = self.vault.ensure_session(account, expected_jid, epoch)
        self._count_ensure(outcome)
        if outcome.action in (EnsureAction.USED_DISK, EnsureAction.RESTORED) and outcome.jid is not None:
            generation = outcome.generation if outcome.action is EnsureAction.RESTORED else None
            return a.EnsureDone(jid=outcome.jid, generation=generation)
        return a.EnsureDone(jid=None)

    def prefetch(self, held: Mapping[str, int], known: Mapping[str, NewestBackup] | None = None) -> None:
        self.vault.prefetch_newest(held, known)

    def newest_known(self, account: str, epoch: int) -> NewestBackup | None:
        return self.vault.newest_known(account, epoch)

    def check_ahead(self, accounts: Sequence[str]) -> None:
        self.vault.check_ahead(accounts)

    def backup(self, account: str, jid: str, epoch: int, while_connected: bool) -> None:
        failed = self.backup_many([BackupRequest(account, jid, epoch, while_connected)])[0]
        if failed is not None:
            raise failed

    def backup_many(self, requests: Sequence[BackupRequest]) -> list[Exception | None]:
        outcomes = self.vault.backup_many(requests)
        failed: list[Exception | None] = []
        for request, outcome in zip(requests, outcomes, strict=True):
            failed.append(None)
            if isinstance(outcome, StaleEpochError):
                log.warning("backup of %s refused: %s", request.account, outcome)
            elif isinstance(outcome, Exception):
                failed[-1] = outcome
            elif outcome.status is BackupStatus.REFUSED:
                log.warning("backup of %s refused: %s", request.account, outcome.reason)
            else:
                self._record_backup(request.account, outcome)
        return failed

    def restore(self, account: str, epoch: int, generation: int | None) -> a.OperationDone:
        outcome = self.vault.restore(account, epoch, generation)
        self.metrics.restores.labels(source="backup", outcome="ok" if outcome.ok else "failed").inc()
        if not outcome.ok:
            return a.OperationDone(ok=False, message=f"restore failed: {outcome.detail}")
        return a.OperationDone(
            ok=True, message=f"restored {outcome.detail}", jid=outcome.jid, generation=outcome.generation
        )

    def wipe(self, account: str, epoch: int) -> a.OperationDone:
        deleted = self.vault.wipe(account, confirm=account, epoch=epoch)
        return a.OperationDone(ok=True, message=f"wiped the disk session and {deleted} backup generations")

    def mark_good(self, account: str, generation: int) -> None:
        self.vault.mark_good(account, generation)

    def disk_problem(self, account: str) -> str | None:
        health = self.vault.check_disk(account)
        if health.state is DiskState.OK:
            return None
        return health.state.value if not health.detail else f"{health.state.value} ({health.detail[:200]})"

    # ---- metrics

    def _count_ensure(self, outcome: EnsureOutcome) -> None:
        """The restore order: the disk copy used or not, then a backup restored or not."""
        count = self.metrics.restores.labels
        if outcome.action is EnsureAction.USED_DISK:
            count(source="disk", outcome="ok").inc()
            return
        if outcome.disk.state is not DiskState.MISSING:
            count(source="disk", outcome="failed").inc()  # present but corrupt, or another device
        if outcome.action is EnsureAction.RESTORED:
            count(source="backup", outcome="ok").inc()
        elif outcome.action is EnsureAction.RESTORE_FAILED:
            count(source="backup", outcome="failed").inc()

    def _record_backup(self, account: str, outcome: BackupOutcome) -> None:
        self.metrics.backup_bytes.inc(outcome.uploaded_bytes)
        with self._guard:
            self._held_at[account] = self.clock.now()
            if outcome.good and outcome.taken_at is not None:
                known = self._good_at.get(account)
                self._good_at[account] = outcome.taken_at if known is None else max(known, outcome.taken_at)

    def refresh_backup_gauges(self, connected: Mapping[str, bool]) -> None:
        """Set backup age and lag for the accounts held (True: connected now); drop the others.

        The lag grows only while the account is connected: nothing writes its
        session otherwise, so a disconnected account keeps the lag it had.
        """
        now = self.clock.now()
        with self._guard:
            for account in set(self._held_at) - set(connected):
                del self._held_at[account]
                self._good_at.pop(account, None)
            held, good = dict(self._held_at), dict(self._good_at)
        for account, is_connected in connected.items():
            if account in good:
                self.metrics.backup_age.labels(account=account).set((now - good[account]).total_seconds())
            if account in held and is_connected:
                self.metrics.backup_lag.labels(account=account).set((now - held[account]).total_seconds())
        for gauge in (self.metrics.backup_age, self.metrics.backup_lag):
            for labels in [s.labels for metric in gauge.collect() for s in metric.samples]:
                if labels.get("account") not in connected:
                    gauge.remove(labels["account"])
