"""The metrics the connector's parts update: restarts and reconnects (supervisor), restores
and backup bytes, age and lag (vault bridge), lease renewal latency (elector)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connector import account as a
from connector.adapters.memory_backups import MemoryBackupStore
from connector.adapters.memory_leases import MemoryLeaseStore
from connector.clock import FakeClock
from connector.lease import LeaseConfig
from connector.lease_loop import LeaseElector
from connector.lease_record import LeaseView
from connector.metrics import ConnectorMetrics
from connector.vault_bridge import VaultBridge
from connector.workers import protocol as wp
from tests.unit.lease_helpers import FlakyStore, Recorder
from tests.unit.test_supervisor import JID, Rig, until
from tests.vault_support import make_session, make_vault, template
from wa_wire import AccountStatus

A = "acct-metrics"


def sample(metrics: ConnectorMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# ---------------------------------------------------------------- supervisor


async def test_restarts_count_every_start_after_the_first_and_reconnects_those_after_a_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path)
    m = rig.sup.metrics
    rig.sup.hold(A, epoch=1)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    assert sample(m, "wa_keeper_worker_restarts_total", account=A) == 0
    assert sample(m, "wa_keeper_reconnects_total", account=A) == 0

    async def start_without_connecting(account: str, session_path: Path, hold_ms: int = 0) -> None:
        rig.w.starts += 1
        rig.w.running.add(account)
        rig.w.deliver(account, a.Report(wp.Loaded(account=account, jid=JID)))

    monkeypatch.setattr(rig.w, "start", start_without_connecting)
    rig.sup.deliver(A, a.Report(wp.Disconnected(account=A, reason="428")))
    await until(lambda: rig.w.starts == 2)
    assert sample(m, "wa_keeper_worker_restarts_total", account=A) == 1
    assert sample(m, "wa_keeper_reconnects_total", account=A) == 1

    rig.sup.deliver(A, a.WorkerExited("crashed while connecting"))
    await until(lambda: rig.w.starts == 3)
    assert sample(m, "wa_keeper_worker_restarts_total", account=A) == 2
    assert sample(m, "wa_keeper_reconnects_total", account=A) == 1, "it never connected in between"
    await rig.sup.shutdown(within_s=5)


# ---------------------------------------------------------------- vault bridge


@pytest.fixture
def tmpl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template(tmp_path_factory)


class BridgeRig:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.clock = FakeClock()
        self.store = MemoryBackupStore()
        self.vault, _events = make_vault(root, self.store, clock=self.clock)
        self.metrics = ConnectorMetrics()
        self.bridge = VaultBridge(self.vault, self.metrics, self.clock)

    def restores(self, source: str, outcome: str) -> float:
        return sample(self.metrics, "wa_keeper_restores_total", source=source, outcome=outcome)

    def uploaded(self) -> float:
        return sample(self.metrics, "wa_keeper_backup_uploaded_bytes_total")

    def stored_bytes(self) -> int:
        total = 0
        for manifest in self.store.manifests(A):
            chunks = self.store.read_chunks(A, manifest.generation, manifest.chunk_count)
            total += sum(len(chunk) for chunk in chunks if chunk is not None)
        return total


@pytest.fixture
def rig(tmp_path: Path, tmpl: Path) -> BridgeRig:
    bridge_rig = BridgeRig(tmp_path / "sessions")
    make_session(tmpl, bridge_rig.root / A / "session.db", rows=20)
    return bridge_rig


def test_restores_are_counted_by_source_and_outcome(rig: BridgeRig, tmpl: Path) -> None:
    assert rig.bridge.ensure(A, JID, 1).jid == JID
    assert rig.restores("disk", "ok") == 1
    rig.bridge.backup(A, JID, 1, while_connected=True)

    shutil.rmtree(rig.root / A)  # missing: not a disk failure, the backup restores it
    assert rig.bridge.ensure(A, JID, 1).jid == JID
    assert (rig.restores("disk", "failed"), rig.restores("backup", "ok")) == (0, 1)

    (rig.root / A / "session.db").write_bytes(b"not an SQLite file" * 100)  # corrupt: a disk failure
    assert rig.bridge.ensure(A, JID, 1).jid == JID
    assert (rig.restores("disk", "failed"), rig.restores("backup", "ok")) == (1, 2)

    assert rig.bridge.restore(A, 1, generation=42).ok is False  # a commanded restore that fails
    assert rig.restores("backup", "failed") == 1
    assert rig.bridge.restore(A, 1, generation=None).ok is True
    assert rig.restores("backup", "ok") == 3


def test_a_session_missing_everywhere_counts_no_restore(tmp_path: Path) -> None:
    rig = BridgeRig(tmp_path / "sessions")
    assert rig.bridge.ensure(A, None, 1).jid is None
    text = rig.metrics.registry.get_sample_value
    assert all(
        text("wa_keeper_restores_total", {"source": s, "outcome": o}) is None
        for s in ("disk", "backup")
        for o in ("ok", "failed")
    )


def test_backup_bytes_are_the_encrypted_chunks_written_and_an_unchanged_pass_adds_none(
    rig: BridgeRig, tmpl: Path
) -> None:
    rig.bridge.backup(A, JID, 1, while_connected=True)
    first = rig.uploaded()
    assert first == rig.stored_bytes() > 0
    rig.bridge.backup(A, JID, 1, while_connected=True)
    assert rig.uploaded() == first, "unchanged: nothing uploaded"
    make_session(tmpl, rig.root / A / "session.db", rows=30)
    rig.bridge.backup(A, JID, 1, while_connected=True)
    assert rig.uploaded() == rig.stored_bytes() > first


def test_backup_age_and_lag_follow_the_clock_and_the_backups(rig: BridgeRig) -> None:
    def gauges() -> tuple[float | None, float | None]:
        value = rig.metrics.registry.get_sample_value
        return (
            value("wa_keeper_backup_age_seconds", {"account": A}),
            value("wa_keeper_backup_lag_seconds", {"account": A}),
        )

    rig.bridge.refresh_backup_gauges({A: True})
    assert gauges() == (None, None), "nothing known before the first backup"
    rig.bridge.backup(A, JID, 1, while_connected=False)  # not good: no age yet
    rig.clock.advance(30)
    rig.bridge.refresh_backup_gauges({A: True})
    assert gauges() == (None, 30.0)

    rig.bridge.backup(A, JID, 1, while_connected=True)  # unchanged, now good: taken 30 s ago
    rig.bridge.refresh_backup_gauges({A: True})
    assert gauges() == (30.0, 0.0)

    rig.clock.advance(10)
    rig.bridge.refresh_backup_gauges({A: False})
    assert gauges() == (40.0, 0.0), "not connected: the lag stays where it was"
    rig.bridge.refresh_backup_gauges({A: True})
    assert gauges() == (40.0, 10.0)

    rig.bridge.refresh_backup_gauges({})
    assert gauges() == (None, None), "an account no longer held leaves /metrics"


def test_a_refused_backup_leaves_the_lag_growing(rig: BridgeRig) -> None:
    rig.bridge.backup(A, JID, 1, while_connected=True)
    rig.clock.advance(20)
    (rig.root / A / "session.db").unlink()  # nothing to snapshot: the backup is refused
    rig.bridge.backup(A, JID, 1, while_connected=True)
    rig.bridge.refresh_backup_gauges({A: True})
    assert rig.metrics.registry.get_sample_value("wa_keeper_backup_lag_seconds", {"account": A}) == 20.0


# ---------------------------------------------------------------- lease renewals


class SlowRenewals(FlakyStore):
    """Each renewal takes `seconds` of the fake clock."""

    def __init__(self, store: MemoryLeaseStore, clock: FakeClock, seconds: float) -> None:
        super().__init__(store)
        self.clock, self.seconds = clock, seconds

    async def renew(self, account: str, holder: str, epoch: int, ttl_ms: int) -> LeaseView:
        self.clock.advance(self.seconds)
        return await super().renew(account, holder, epoch, ttl_ms)


async def test_each_lease_renewal_is_observed_with_its_duration() -> None:
    clock = FakeClock()
    store = SlowRenewals(MemoryLeaseStore(server_clock=clock), clock, seconds=0.3)
    metrics = ConnectorMetrics()
    elector = LeaseElector(
        store=store, holder="conn-a", config=LeaseConfig(), clock=clock, listener=Recorder(), metrics=metrics
    )
    elector.set_claims({A: 0.0})
    for _ in range(90):  # 22.5 s of fake time: acquired, then renewed every 5 s
        clock.advance(0.25)
        elector.step()
        await elector.drain()
    renewals = [c for c in store.calls if c[0] == "renew"]
    assert len(renewals) >= 3
    assert sample(metrics, "wa_keeper_lease_renew_seconds_count") == len(renewals)
    assert sample(metrics, "wa_keeper_lease_renew_seconds_sum") == pytest.approx(0.3 * len(renewals))
    assert sample(metrics, "wa_keeper_lease_renew_seconds_bucket", le="0.25") == 0
    assert sample(metrics, "wa_keeper_lease_renew_seconds_bucket", le="0.5") == len(renewals)
