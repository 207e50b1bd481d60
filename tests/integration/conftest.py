"""Every integration test starts from empty emulator data."""

from __future__ import annotations

import pytest
from google.cloud import firestore


@pytest.fixture(autouse=True)
def _fresh_emulator_data(clean_firestore: firestore.Client) -> None:
    """Resets Firestore through `clean_firestore` before each test."""
