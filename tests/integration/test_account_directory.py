"""FirestoreAccountDirectory against the emulator: a refresh and point reads, no listener.

The bug the race test guards: `refresh` read the `desired: active` accounts, a
point read confirmed an account activated meanwhile, then the refresh overwrote
the set with its older answer and the daemon could not claim the account until
the next refresh (or released a wanted one, had it not confirmed first).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.cloud import firestore

from connector.adapters.firestore_accounts import FirestoreAccountDirectory
from connector.control_client import activate_account
from wa_wire import Collections


class PointReadDuringRefresh(FirestoreAccountDirectory):
    """Activates `late` and deactivates `gone` after the refresh's query has read, then
    point-reads both (as the daemon does for a command, or before a release)."""

    def __init__(self, client: firestore.Client, late: str, gone: str) -> None:
        super().__init__(client)
        self.late, self.gone = late, gone

    def _query(self) -> Any:
        query = super()._query()
        directory = self

        class Hooked:
            def select(self, fields: list[str]) -> Hooked:
                self.inner = query.select(fields)
                return self

            def stream(self) -> Iterator[Any]:
                answer = list(self.inner.stream())  # read before the changes
                activate_account(directory._client, directory.late)
                accounts = directory._client.collection(Collections.ACCOUNTS)
                accounts.document(directory.gone).update({"desired": "stopped"})
                assert directory.still_desired([directory.late, directory.gone]) == {directory.late}
                return iter(answer)

        return Hooked()


def test_a_refresh_takes_activations_and_deactivations(clean_firestore: firestore.Client) -> None:
    activate_account(clean_firestore, "kept")
    directory = FirestoreAccountDirectory(clean_firestore)
    assert directory.desired() == set()
    assert directory.refresh() == {"kept"}
    assert directory.loaded.is_set()
    clean_firestore.collection(Collections.ACCOUNTS).document("kept").update({"desired": "stopped"})
    activate_account(clean_firestore, "new")
    assert directory.refresh() == {"new"}
    assert directory.desired() == {"new"}


def test_point_reads_during_a_refresh_are_newer_than_its_answer(clean_firestore: firestore.Client) -> None:
    activate_account(clean_firestore, "early")
    activate_account(clean_firestore, "gone")
    directory = PointReadDuringRefresh(clean_firestore, late="late", gone="gone")
    assert directory.refresh() == {"early", "late"}
    assert directory.desired() == {"early", "late"}


def test_still_desired_asks_the_documents_and_mends_the_set(clean_firestore: firestore.Client) -> None:
    activate_account(clean_firestore, "active")
    activate_account(clean_firestore, "stopped")
    clean_firestore.collection(Collections.ACCOUNTS).document("stopped").update({"desired": "stopped"})
    directory = FirestoreAccountDirectory(clean_firestore)  # no refresh yet: an empty set
    assert directory.desired() == set()
    assert directory.still_desired(["active", "stopped", "never-created"]) == {"active"}
    assert directory.desired() == {"active"}
    assert directory.still_desired([]) == set()
    clean_firestore.collection(Collections.ACCOUNTS).document("active").update({"desired": "stopped"})
    assert directory.still_desired(["active"]) == set()
    assert directory.desired() == set()


def test_the_count_follows_activations_and_deactivations(clean_firestore: firestore.Client) -> None:
    directory = FirestoreAccountDirectory(clean_firestore)
    assert directory.count() == 0
    for account in ("one", "two", "three"):
        activate_account(clean_firestore, account)
    assert directory.count() == 3
    directory.refresh()
    clean_firestore.collection(Collections.ACCOUNTS).document("two").update({"desired": "stopped"})
    assert directory.count() == 2 != len(directory.desired()), "the daemon lists again"
    assert directory.refresh() == {"one", "three"}
