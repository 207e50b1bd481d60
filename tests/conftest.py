"""Shared fixtures. Emulator-backed tests live in tests/integration and tests/contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import firestore

from tests import emulator

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def clean_firestore() -> Iterator[firestore.Client]:
    """A Firestore client on an emptied emulator database."""
    emulator.require_emulators()
    emulator.reset_firestore()
    client = firestore.Client(project=emulator.project_id())
    yield client
    client.close()
