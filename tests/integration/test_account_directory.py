"""FirestoreAccountDirectory against the emulator: its set may miss accounts, `still_desired` may not.

The bugs these guard: `refresh` read the `desired: active` accounts, an
account was activated meanwhile and the listener took it in, then the refresh
overwrote the set with its older answer; and under write load the emulator's
listener left activated accounts out of its snapshots. Either way the daemon
released a wanted account as "not desired" (a pairing lost its lease and fell
to needs_qr); it now confirms with `still_desired` first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.cloud import firestore

from connector.adapters.firestore_accounts import FirestoreAccountDirectory
from connector.control_client import activate_account
from tests.integration.stack_support import wait_until
from wa_wire import Collections


class ActivatedDuringRead(FirestoreAccountDirectory):
    """Activates `late` after the refresh's query has read, and waits until the listener has it."""

    def __init__(self, client: firestore.Client, late: str) -> None:
        super().__init__(client)
        self.late = late
        self.refreshing = False

    def _query(self) -> Any:
        query = super()._query()
        if not self.refreshing:
            return query
        directory = self

        class Hooked:
            def select(self, fields: list[str]) -> Hooked:
                self.inner = query.select(fields)
                return self

            def stream(self) -> Iterator[Any]:
                answer = list(self.inner.stream())  # read before the activation
                activate_account(directory._client, directory.late)
                wait_until(
                    "the listener seeing the late account", lambda: directory.late in directory.desired(), 30
                )
                return iter(answer)

        return Hooked()


def test_a_refresh_does_not_drop_an_account_the_listener_saw_meanwhile(
    clean_firestore: firestore.Client,
) -> None:
    activate_account(clean_firestore, "early")
    directory = ActivatedDuringRead(clean_firestore, "late")
    directory.listen()
    try:
        wait_until("the listener's first snapshot", lambda: directory.desired() == {"early"}, 30)
        directory.refreshing = True
        assert directory.refresh() == {"early", "late"}
        assert directory.desired() == {"early", "late"}
    finally:
        directory.stop()


def test_a_refresh_takes_what_a_silent_listener_missed(clean_firestore: firestore.Client) -> None:
    activate_account(clean_firestore, "kept")
    directory = FirestoreAccountDirectory(clean_firestore)
    directory.listen()
    wait_until("the listener's first snapshot", lambda: directory.desired() == {"kept"}, 30)
    directory.stop()  # a listener that stopped: only the refresh sees changes now
    clean_firestore.collection(Collections.ACCOUNTS).document("kept").update({"desired": "stopped"})
    activate_account(clean_firestore, "new")
    assert directory.refresh() == {"new"}
    assert directory.desired() == {"new"}


def test_still_desired_asks_the_documents_and_mends_the_set(clean_firestore: firestore.Client) -> None:
    activate_account(clean_firestore, "active")
    activate_account(clean_firestore, "stopped")
    clean_firestore.collection(Collections.ACCOUNTS).document("stopped").update({"desired": "stopped"})
    directory = FirestoreAccountDirectory(clean_firestore)  # no listener, no refresh: an empty set
    assert directory.desired() == set()
    assert directory.still_desired(["active", "stopped", "never-created"]) == {"active"}
    assert directory.desired() == {"active"}
    assert directory.still_desired([]) == set()


def test_what_a_point_read_confirmed_outlives_a_listener_that_misses_it(
    clean_firestore: firestore.Client,
) -> None:
    """The emulator's listener can leave an activated account out for minutes; each of its
    snapshots replaces its own view, not what a point read confirmed."""
    activate_account(clean_firestore, "seen")
    activate_account(clean_firestore, "missed")
    directory = FirestoreAccountDirectory(clean_firestore)
    directory.take_snapshot({"seen"})  # the buggy listener: "missed" absent
    assert directory.still_desired(["missed"]) == {"missed"}
    directory.take_snapshot({"seen"})  # ... and absent again
    assert directory.desired() == {"seen", "missed"}
    directory.take_snapshot({"seen", "missed"})
    directory.take_snapshot({"seen"})  # reported removed: out until a point read says otherwise
    assert directory.desired() == {"seen"}
    assert directory.still_desired(["missed"]) == {"missed"}
    clean_firestore.collection(Collections.ACCOUNTS).document("missed").update({"desired": "stopped"})
    assert directory.still_desired(["missed"]) == set()
    assert directory.desired() == {"seen"}


def test_an_account_changing_to_unattended_is_reported_to_the_hook(clean_firestore: firestore.Client) -> None:
    """The hint a standby acts on: a holder released the account, its lease can be read now."""
    for account in ("acct-1", "acct-2"):
        activate_account(clean_firestore, account)
    directory = FirestoreAccountDirectory(clean_firestore)
    heard: list[str] = []
    directory.on_unattended = heard.extend
    directory.listen()
    try:
        wait_until("the listener's first snapshot", lambda: directory.desired() == {"acct-1", "acct-2"}, 30)
        accounts = clean_firestore.collection(Collections.ACCOUNTS)
        accounts.document("acct-1").update({"status": "connected"})
        accounts.document("acct-2").update({"status": "unattended"})
        wait_until("the hook hearing acct-2", lambda: "acct-2" in heard, 30)
        assert "acct-1" not in heard
    finally:
        directory.stop()
