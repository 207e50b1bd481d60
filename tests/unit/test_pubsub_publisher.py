"""The Pub/Sub adapter's start-up errors (its behaviour is in tests/contract/test_event_publisher.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.adapters.pubsub_publisher import PubSubPublisher, one_line
from connector.ports import PublisherError


def test_missing_credentials_are_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(
        PublisherError, match=r"^Pub/Sub: no usable Google credentials .*absent\.json"
    ) as caught:
        PubSubPublisher.connect("demo-x", "wa-lifecycle")
    assert "\n" not in str(caught.value)


async def test_an_emulator_host_needs_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    publisher = PubSubPublisher.connect("demo-x", "wa-lifecycle", emulator_host="127.0.0.1:1")
    assert publisher.topic_path == "projects/demo-x/topics/wa-lifecycle"
    await publisher.close()


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ConnectionError("refused\nmore detail"), "ConnectionError: refused"),
        (RuntimeError(""), "RuntimeError"),
        (ValueError("x" * 1000), "ValueError: " + "x" * 288),
    ],
)
def test_errors_become_one_short_line(exc: Exception, line: str) -> None:
    assert one_line(exc) == line
