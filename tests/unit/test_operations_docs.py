"""docs/operations.md lists every metric the connector defines and every account status,
and the docs it and the README link to exist."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from connector.metrics import ConnectorMetrics
from wa_wire import AccountStatus

REPO = Path(__file__).resolve().parents[2]
OPERATIONS = REPO / "docs" / "operations.md"


def defined() -> dict[str, set[str]]:
    """{name as /metrics shows it: label names} of every metric ConnectorMetrics defines."""
    out: dict[str, set[str]] = {}
    for metric in vars(ConnectorMetrics()).values():
        if isinstance(metric, MetricWrapperBase):
            name = metric._name + ("_total" if metric._type == "counter" else "")
            out[name] = set(metric._labelnames)  # prometheus-client keeps the label names here
    return out


def table_rows(text: str, header: str) -> dict[str, str]:
    """{first cell without backticks and labels: the row} of the table headed `| header |`."""
    rows: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        if line.startswith(f"| {header} |"):
            inside = True
            continue
        if inside and not line.startswith("|"):
            break
        if inside and not line.startswith("|---"):
            first = line.strip("|").split("|", 1)[0].strip().strip("`")
            rows[first.split("{", 1)[0]] = line
    return rows


def test_every_metric_is_documented_with_its_labels_and_nothing_else() -> None:
    documented = table_rows(OPERATIONS.read_text(), "metric")
    metrics = defined()
    assert len(metrics) >= 13
    assert sorted(documented) == sorted(metrics)
    for name, labels in metrics.items():
        cell = documented[name].strip("|").split("|", 1)[0]
        written = re.findall(r"\{([^}]*)\}", cell)
        assert set(written[0].split(",") if written else []) == labels, f"{name}: labels {labels}, doc {cell}"


def test_every_account_status_has_a_runbook_row() -> None:
    documented = table_rows(OPERATIONS.read_text(), "status")
    assert sorted(documented) == sorted(s.value for s in AccountStatus)
    assert all(row.count("|") >= 4 and len(row) > 80 for row in documented.values())


def test_linked_docs_exist() -> None:
    for doc in (REPO / "README.md", OPERATIONS, REPO / "docs" / "migration.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if not target.startswith("http"):
                assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
