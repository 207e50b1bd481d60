"""The connector's metrics: one registry per object, nothing global, statuses checked."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, generate_latest

from connector.metrics import ConnectorMetrics
from wa_wire import AccountStatus


def test_each_object_has_its_own_registry_and_nothing_is_global() -> None:
    first, second = ConnectorMetrics(), ConnectorMetrics()
    first.reconnects.labels(account="acct-a").inc()
    assert first.registry.get_sample_value("wa_keeper_reconnects_total", {"account": "acct-a"}) == 1
    assert second.registry.get_sample_value("wa_keeper_reconnects_total", {"account": "acct-a"}) is None
    assert b"wa_keeper_" not in generate_latest(REGISTRY)


def test_every_metric_has_a_help_text() -> None:
    text = generate_latest(ConnectorMetrics().registry).decode()
    helps = [line for line in text.splitlines() if line.startswith("# HELP wa_keeper_")]
    assert len(helps) >= 13
    assert all(len(line.split(" ", 3)[3]) > 10 for line in helps)


def test_account_counts_cover_every_status() -> None:
    metrics = ConnectorMetrics()
    metrics.set_account_counts({"connected": 5, "needs_qr": 1})
    metrics.set_account_counts({"connected": 4})
    value = metrics.registry.get_sample_value
    assert value("wa_keeper_accounts", {"status": "connected"}) == 4
    assert value("wa_keeper_accounts", {"status": "needs_qr"}) == 0, "a status that emptied reads 0"
    assert all(value("wa_keeper_accounts", {"status": s.value}) is not None for s in AccountStatus)


def test_an_unknown_status_is_refused_before_anything_changes() -> None:
    metrics = ConnectorMetrics()
    metrics.set_account_counts({"connected": 2})
    with pytest.raises(ValueError, match="unknown account status: sleeping"):
        metrics.set_account_counts({"connected": 9, "sleeping": 1})
    assert metrics.registry.get_sample_value("wa_keeper_accounts", {"status": "connected"}) == 2
