"""The session vault as the supervisor sees it: outcomes become state-machine signals."""

from __future__ import annotations

import logging

from connector import account as a
from connector.adapters.disk_sessions import DiskState
from connector.ports import StaleEpochError
from connector.vault import BackupStatus, EnsureAction, SessionVault

log = logging.getLogger("wa_keeper.vault")


class VaultBridge:
    """Implements `connector.supervisor.Vault` on a `SessionVault`."""

    def __init__(self, vault: SessionVault) -> None:
        self.vault = vault

    def ensure(self, account: str, expected_jid: str | None, epoch: int) -> a.EnsureDone:
        outcome = self.vault.ensure_session(account, expected_jid, epoch)
        if outcome.action in (EnsureAction.USED_DISK, EnsureAction.RESTORED) and outcome.jid is not None:
            generation = outcome.generation if outcome.action is EnsureAction.RESTORED else None
            return a.EnsureDone(jid=outcome.jid, generation=generation)
        return a.EnsureDone(jid=None)

    def backup(self, account: str, jid: str, epoch: int, while_connected: bool) -> None:
        try:
            outcome = self.vault.backup(account, jid, epoch, while_connected)
        except StaleEpochError as exc:
            log.warning("backup of %s refused: %s", account, exc)
            return
        if outcome.status is BackupStatus.REFUSED:
            log.warning("backup of %s refused: %s", account, outcome.reason)

    def restore(self, account: str, epoch: int, generation: int | None) -> a.OperationDone:
        outcome = self.vault.restore(account, epoch, generation)
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
