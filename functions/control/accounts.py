"""Reading an account as the policy sees it, and writing a decision back.

The reads come first (account, existing commands; the lease and the backup
manifests always without locks), then the writes of one decision, so the dedupe
record, the state and the commands land together or not at all. The caller runs
them in a transaction (the sweep) or, with `tx=None` and a batch whose account
write is guarded by the read's update_time, optimistically (lifecycle events:
control/effects.py says why).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

from policy import AccountView, BackupRef, Decision, PolicyError, PolicyRecord
from wa_wire import Collections, encode
from wa_wire.names import SubCollections

log = logging.getLogger("wa_keeper.functions.accounts")

POLICY_FIELD = "policy"


@dataclass(frozen=True)
class Loaded:
    """One account read in a transaction: the policy's view plus the raw account and lease fields."""

    view: AccountView
    data: dict[str, Any]
    exists: bool
    lease: dict[str, Any]
    update_time: Any = None  # the account document's, as read (None: missing)


def account_ref(db: firestore.Client, account: str) -> firestore.DocumentReference:
    return db.collection(Collections.ACCOUNTS).document(account)


def backups_ref(db: firestore.Client, account: str) -> firestore.CollectionReference:
    backups: firestore.CollectionReference = account_ref(db, account).collection(SubCollections.BACKUPS)
    return backups


def lease_epoch(account: str, data: dict[str, Any] | None) -> int:
    """`leases/{id}.epoch`; a missing lease is epoch 0 (the connector's convention)."""
    epoch = (data or {}).get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        log.warning("leases/%s: epoch is not a non-negative integer; treating it as 0", account)
        return 0
    return epoch


def backup_refs(account: str, docs: Iterable[Any]) -> tuple[BackupRef, ...]:
    """Manifests as (generation, good); a manifest without them is skipped, with a warning."""
    found = []
    for doc in docs:
        data = doc.to_dict() or {}
        generation, good = data.get("generation"), data.get("good")
        if isinstance(generation, bool) or not isinstance(generation, int) or not isinstance(good, bool):
            log.warning(
                "accounts/%s/backups/%s: no integer generation or boolean good; ignored", account, doc.id
            )
            continue
        found.append(BackupRef(generation, good))
    return tuple(sorted(found, key=lambda b: b.generation))


def policy_record(account: str, data: dict[str, Any]) -> PolicyRecord:
    """The stored record; an unreadable one is logged and replaced by an empty one.

    Raising instead would make Pub/Sub redeliver the event forever; the history
    it held is unreadable either way.
    """
    try:
        return PolicyRecord.from_fields(data.get(POLICY_FIELD))
    except PolicyError as exc:
        log.error("accounts/%s: %s; starting from an empty policy record", account, exc)
        return PolicyRecord()


def load(db: firestore.Client, tx: firestore.Transaction | None, account: str) -> Loaded:
    snap = account_ref(db, account).get(transaction=tx)
    # Read outside the transaction on purpose: a transactional read locks the lease, and the
    # connector's renewals would wait behind this transaction (NOTES.md: emulator lock waits).
    # The epoch only decides whether an event is stale; a moment's staleness changes nothing.
    lease = db.collection(Collections.LEASES).document(account).get()
    # Also outside: a query in a transaction locks the whole range, and the connector's
    # manifest commits waited behind every policy transaction (and timed out under load).
    manifests = backups_ref(db, account).select(["generation", "good"]).stream()
    data = (snap.to_dict() or {}) if snap.exists else {}
    lease_data = (lease.to_dict() or {}) if lease.exists else None
    view = AccountView(
        account_id=account,
        record=policy_record(account, data),
        backups=backup_refs(account, manifests),
        lease_epoch=lease_epoch(account, lease_data),
    )
    return Loaded(view, data, snap.exists, lease_data or {}, snap.update_time if snap.exists else None)


def missing_commands(db: firestore.Client, tx: firestore.Transaction | None, decision: Decision) -> list[str]:
    """Ids of the decision's commands not yet stored (a read, so call it before any write)."""
    if not decision.commands:
        return []
    refs = [db.collection(Collections.COMMANDS).document(cid) for cid, _ in decision.commands]
    existing = {snap.id for snap in db.get_all(refs, transaction=tx) if snap.exists}
    return [cid for cid, _ in decision.commands if cid not in existing]


def account_fields(decision: Decision, loaded: Loaded) -> dict[str, Any]:
    """The account fields a changed decision writes (merged into the document)."""
    state, before = decision.state, decision.before
    fields: dict[str, Any] = {
        POLICY_FIELD: decision.record.to_fields(),
        "strikes": state.strikes.to_fields(),
        "updated_at": firestore.SERVER_TIMESTAMP,
    }
    if state.status is not None and (state.status, state.reason) != (before.status, before.reason):
        fields["status"] = state.status.value
        fields["status_reason"] = state.reason
    newest = decision.newest
    if newest is not None and newest.type is not None:
        fields["last_event"] = {
            "type": newest.type.value,
            "reason_code": newest.reason_code,
            "at": newest.to_fields()["at"],
        }
    summary = loaded.data.get("backup")
    if isinstance(summary, dict) and summary.get("generation") in decision.mark_good:
        fields["backup"] = {"good": True}
    return fields


def write_decision(
    db: firestore.Client,
    tx: firestore.Transaction | firestore.WriteBatch,
    loaded: Loaded,
    decision: Decision,
    new_ids: list[str],
    *,
    guarded: bool = False,
) -> None:
    """Apply a decision: account fields, manifests marked good, new commands. `guarded`: the
    account write fails the commit if the document changed since `loaded` was read, also
    when the decision changes nothing (the decision was made on that version)."""
    account = loaded.view.account_id
    ref = account_ref(db, account)
    if guarded:
        _guard_account(db, tx, ref, loaded, account_fields(decision, loaded) if decision.changed else None)
    if not decision.changed:
        return
    if not guarded:
        tx.set(ref, account_fields(decision, loaded), merge=True)
    known = {b.generation: b.good for b in loaded.view.backups}
    for generation in decision.mark_good:
        if known.get(generation) is False:
            tx.update(backups_ref(db, account).document(str(generation)), {"good": True})
    for cid, command in decision.commands:
        if cid in new_ids:
            tx.create(db.collection(Collections.COMMANDS).document(cid), encode(command))


def _guard_account(
    db: firestore.Client,
    batch: firestore.Transaction | firestore.WriteBatch,
    ref: firestore.DocumentReference,
    loaded: Loaded,
    fields: dict[str, Any] | None,
) -> None:
    """Write `fields` (or, when None, rewrite one field with its own value: no change, and
    Firestore then keeps the update_time) on the version read; create a missing document."""
    if not loaded.exists:
        if fields is None:
            batch.delete(ref, option=db.write_option(exists=False))  # still missing, or conflict
        else:
            batch.create(ref, fields)
        return
    if fields is None:
        if not loaded.data:
            return  # an empty document: nothing to rewrite unchanged, and nothing to decide on
        kept = min(loaded.data)
        fields = {kept: loaded.data[kept]}
    elif isinstance(fields.get("backup"), dict):  # merge into the summary, do not replace it
        fields = {k: v for k, v in fields.items() if k != "backup"} | {
            "backup.good": fields["backup"]["good"]
        }
    batch.update(ref, fields, option=db.write_option(last_update_time=loaded.update_time))
