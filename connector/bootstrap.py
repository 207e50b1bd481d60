"""The one place that wires the connector together from its settings."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from google.cloud import firestore

from connector.account import Config as MachineConfig
from connector.account_machine import BEGIN_REASON
from connector.adapters.disk_sessions import DiskSessions
from connector.adapters.firestore_accounts import FirestoreAccountDirectory
from connector.adapters.firestore_backups import FirestoreBackupStore
from connector.adapters.firestore_cas import LeaseVersions
from connector.adapters.firestore_commands import FirestoreCommandStore
from connector.adapters.firestore_connectors import FirestoreConnectorRegistry
from connector.adapters.firestore_hints import FirestoreHandoffHints
from connector.adapters.firestore_leases import FirestoreLeaseStore
from connector.adapters.firestore_status import FirestoreStatusWriter
from connector.adapters.pubsub_publisher import PubSubPublisher
from connector.adapters.sessions_volume import prepare_sessions_path
from connector.backup_crypto import Keyring
from connector.clock import Clock, SystemClock
from connector.daemon import Daemon, DaemonConfig
from connector.http_api import HttpApi
from connector.inbox import CommandInbox
from connector.lease import LeaseConfig
from connector.lease_loop import LeaseElector
from connector.metrics import ConnectorMetrics
from connector.outbox import Outbox, default_outbox_path
from connector.ports import Shown
from connector.settings import Settings
from connector.supervisor import Supervisor, SupervisorConfig, Workers
from connector.vault import SessionVault
from connector.vault_bridge import VaultBridge
from connector.worker_pool import Deliver, ProcessPerAccount, SharedProcess
from wa_wire import AccountStatus

log = logging.getLogger("wa_keeper.bootstrap")


class StoreResults:
    """Command results go straight to the command store (the claimer finishes its command)."""

    def __init__(self, store: FirestoreCommandStore, connector_id: str) -> None:
        self._store, self._connector_id = store, connector_id

    async def finish(self, command_id: str, ok: bool, message: str) -> None:
        await asyncio.to_thread(self._store.finish, command_id, self._connector_id, ok, message)


def build_daemon(settings: Settings, *, require_persistent: bool, clock: Clock | None = None) -> Daemon:
    """Everything `wa-keeper run` needs; checks SESSIONS_PATH and the backup key first."""
    clock = clock or SystemClock()
    prepare_sessions_path(settings.sessions_path, require_persistent or settings.require_persistent)
    keys = Keyring.from_settings(settings)
    metrics = ConnectorMetrics()
    client = firestore.Client(project=settings.project)
    leases = LeaseVersions()  # the lease store's reads and writes; the status writer checks against them
    publisher = PubSubPublisher.connect(settings.project, settings.topic)
    outbox = Outbox(default_outbox_path(settings.sessions_path), publisher, clock, metrics=metrics)
    vault = SessionVault(
        DiskSessions(settings.sessions_path, clock),
        FirestoreBackupStore(client),
        keys,
        outbox,
        clock=clock,
        connector_id=settings.connector_id,
    )
    status = FirestoreStatusWriter(client, leases)
    command_store = FirestoreCommandStore(client, clock)

    def workers(deliver: Deliver) -> Workers:
        env = dict(os.environ, WA_KEEPER_SIM_URL=settings.sim_url)
        if settings.transport == "sim":
            return SharedProcess(deliver, env)
        return ProcessPerAccount(deliver, env)

    bridge = VaultBridge(vault, metrics, clock)
    supervisor = Supervisor(
        connector_id=settings.connector_id,
        sessions_path=settings.sessions_path,
        vault=bridge,
        workers_factory=workers,
        status=status,
        events=outbox,
        commands=StoreResults(command_store, settings.connector_id),
        clock=clock,
        config=SupervisorConfig(machine=MachineConfig(backup_interval_s=settings.backup_interval_s)),
        metrics=metrics,
    )
    lease_config = LeaseConfig.for_ttl(settings.lease_ttl_s)
    lease_store = FirestoreLeaseStore(client, leases)
    lease_store.start_threads()

    def elector(daemon: Daemon) -> LeaseElector:
        return LeaseElector(
            store=lease_store,
            holder=settings.connector_id,
            config=lease_config,
            clock=clock,
            listener=daemon,
            metrics=metrics,
            acquire_shows=Shown(AccountStatus.CONNECTING, BEGIN_REASON),
        )

    def inbox(daemon: Daemon) -> CommandInbox:
        return CommandInbox(
            store=command_store,
            held=daemon.elector.held,
            deliver=daemon.deliver_command,
            clock=clock,
            connector_id=settings.connector_id,
            on_unheld=daemon.command_for_unheld,
        )

    placement_every_s = min(2.0, lease_config.retry_period_s)
    config = DaemonConfig(
        connector_id=settings.connector_id,
        host=socket.gethostname()[:256] or "unknown",
        health_every_s=settings.health_interval_s,
        heartbeat_ttl_ms=heartbeat_ttl_ms(settings.lease_ttl_s, placement_every_s),
        placement_every_s=placement_every_s,
    )
    return Daemon(
        config=config,
        clock=clock,
        supervisor=supervisor,
        vault=vault,
        elector_factory=elector,
        registry=FirestoreConnectorRegistry(client),
        directory=FirestoreAccountDirectory(client),
        hints=FirestoreHandoffHints(client),
        inbox_factory=inbox,
        status=status,
        outbox=outbox,
        publisher=publisher,
        http=lambda readiness, view: HttpApi.from_settings(
            settings, registry=metrics.registry, readiness=readiness, status=view
        ),
        metrics=metrics,
        backup_gauges=bridge.refresh_backup_gauges,
    )


HEARTBEAT_MIN_TTL_S = 8.0


def heartbeat_ttl_ms(lease_ttl_s: float, placement_every_s: float) -> int:
    """How long a connector's heartbeat counts: four heartbeats, at least 8 s, at most the lease TTL.

    Shorter than the lease TTL on purpose: a dead preferred host must lose its head
    start (connector/assignment.py) before its leases expire, so the runner-up takes
    each lease the moment it is free instead of 3 s later. Safety never depends on it:
    only leases decide who drives an account.
    """
    seconds = min(lease_ttl_s, max(HEARTBEAT_MIN_TTL_S, 4 * placement_every_s))
    return int(seconds * 1000)
