"""An app request becomes a command, or a rejection, in one transaction.

The judgement is pure (policy/requests.py, which also explains who is trusted
and why); here: read the request and the account's owners, write the answer
and the command together. A retried trigger finds the answer already there
and does nothing; the command id derives from the request id, so even a race
creates it once. A lock timeout (two judges of one request at once) is retried
here, as for lifecycle events: a trigger that failed on it left the request pending.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

from control import effects, params
from control.accounts import account_ref
from control.lifecycle import CONTENTION_RETRY
from policy import PolicyConfig
from policy.requests import Verdict, already_decided, judge
from wa_wire import Collections, RequestStatus, encode

log = logging.getLogger("wa_keeper.functions.requests")


def decide_request(
    db: firestore.Client, request_id: str, now: datetime, config: PolicyConfig
) -> Verdict | None:
    """Judge `requests/{request_id}`; None when it is gone or was already answered."""
    request_ref = db.collection(Collections.REQUESTS).document(request_id)

    @firestore.transactional
    def apply(tx: firestore.Transaction) -> Verdict | None:
        snap = request_ref.get(transaction=tx)
        data: dict[str, Any] = (snap.to_dict() or {}) if snap.exists else {}
        if not snap.exists or already_decided(data):
            return None
        account = data.get("account_id")
        owners = None
        if isinstance(account, str) and 0 < len(account) <= 128 and "/" not in account:
            account_snap = account_ref(db, account).get(transaction=tx)
            owners = (account_snap.to_dict() or {}).get("owners") if account_snap.exists else None
        verdict = judge(request_id, data, owners, now, config)
        command_ref = None
        if verdict.command is not None and verdict.decision.command_id is not None:
            command_ref = db.collection(Collections.COMMANDS).document(verdict.decision.command_id)
            if command_ref.get(transaction=tx).exists:
                command_ref = None  # created by an earlier attempt
        answer = {k: v for k, v in encode(verdict.decision).items() if v is not None}
        tx.update(request_ref, {**answer, "decided_at": firestore.SERVER_TIMESTAMP})
        if command_ref is not None and verdict.command is not None:
            tx.create(command_ref, encode(verdict.command))
        return verdict

    verdict: Verdict | None = CONTENTION_RETRY(lambda: apply(db.transaction()))()
    return verdict


def handle_created(request_id: str, now: datetime | None = None) -> Verdict | None:
    """The trigger's body: judge the new request and log the outcome (never its params)."""
    verdict = decide_request(
        effects.firestore_client(), request_id, now or datetime.now(UTC), params.load_config()
    )
    if verdict is not None and verdict.decision.status is RequestStatus.REJECTED:
        log.info("request %s rejected: %s", request_id, verdict.decision.error)
    return verdict
