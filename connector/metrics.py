"""Every Prometheus metric of the connector, defined in one place with its help text.

The metrics live on a `CollectorRegistry` owned by a `ConnectorMetrics` object
that bootstrap builds once and passes to the parts that update it (and to the
HTTP `/metrics` endpoint). Nothing registers on prometheus-client's global
registry, so tests can build as many as they like.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from wa_wire import AccountStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Seconds; wide on purpose: an event queued while Pub/Sub was down waits minutes."""


LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds the event loop runs late: milliseconds when idle, tenths of a second when starved."""


class ConnectorMetrics:
    """The connector's metric objects, registered on `self.registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.accounts = Gauge(
            "wa_keeper_accounts",
            "Accounts held by this connector, by visible status.",
            ["status"],
            registry=r,
        )
        self.reconnects = Counter(
            "wa_keeper_reconnects", "Reconnects of an account's WhatsApp socket.", ["account"], registry=r
        )
        self.restores = Counter(
            "wa_keeper_restores",
            "Session restores by source (disk, backup) and outcome (ok, failed).",
            ["source", "outcome"],
            registry=r,
        )
        self.backup_bytes = Counter(
            "wa_keeper_backup_uploaded_bytes", "Encrypted backup bytes uploaded to Firestore.", registry=r
        )
        self.backup_age = Gauge(
            "wa_keeper_backup_age_seconds",
            "Seconds since the newest good backup of the account was taken.",
            ["account"],
            registry=r,
        )
        self.backup_lag = Gauge(
            "wa_keeper_backup_lag_seconds",
            "Seconds the account's disk session has had changes that no backup holds yet.",
            ["account"],
            registry=r,
        )
        self.event_loop_lag = Histogram(
            "wa_keeper_event_loop_lag_seconds",
            "How much later than asked the event loop woke from a short sleep: every hint, lease"
            " decision and account start waits about that long per step (a busy or GIL-starved process).",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.lease_renew_seconds = Histogram(
            "wa_keeper_lease_renew_seconds",
            "Duration of one lease renewal transaction.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.worker_restarts = Counter(
            "wa_keeper_worker_restarts", "Restarts of an account's worker process.", ["account"], registry=r
        )
        self.outbox_depth = Gauge(
            "wa_keeper_outbox_depth",
            "Events stored in the outbox and not yet acknowledged by Pub/Sub.",
            registry=r,
        )
        self.outbox_rejected = Counter(
            "wa_keeper_outbox_rejected",
            "Events refused because the outbox was full or unwritable (the emitter got an error).",
            registry=r,
        )
        self.events_published = Counter(
            "wa_keeper_events_published", "Events acknowledged by Pub/Sub, by type.", ["type"], registry=r
        )
        self.publish_failures = Counter(
            "wa_keeper_event_publish_failures",
            "Failed publish attempts of one event (each is retried until acknowledged).",
            registry=r,
        )
        self.publish_latency = Histogram(
            "wa_keeper_event_publish_seconds",
            "Seconds from an event's emit to its acknowledgement by Pub/Sub.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def set_account_counts(self, counts: Mapping[str, int]) -> None:
        """Set the accounts gauge for every status; statuses absent from `counts` read 0."""
        unknown = sorted(set(counts) - {status.value for status in AccountStatus})
        if unknown:
            raise ValueError(f"unknown account status: {', '.join(unknown)}")
        for status in AccountStatus:
            self.accounts.labels(status=status.value).set(counts.get(status.value, 0))
