"""Judging an app request: shape, then authority, then the command it becomes.

Who is asking: a Firestore trigger carries no auth, so the function trusts two
things the rules (firestore.rules) enforced when the client created the
document: `requested_by == request.auth.uid`, and `admin: true` only when the
caller's token has the custom claim `wa_admin: true`. The function cannot see
claims, so an admin who does not own the account states `admin: true` in the
request and the rules check it against the token; everyone else is
authorized by `requested_by in accounts/{id}.owners`, which the function
re-reads here. Server code writing requests bypasses the rules and is trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from policy.config import PolicyConfig
from wa_wire import Command, Request, RequestDecision, RequestStatus, WireError, command_id_for, decode
from wa_wire.codec import utc_timestamp

ADMIN_FIELD = "admin"
DECIDED_FIELDS = ("status", "command_id", "error")


@dataclass(frozen=True)
class Verdict:
    """The answer for the request document, and the command to create when accepted."""

    decision: RequestDecision
    command: Command | None = None

    @classmethod
    def reject(cls, error: str) -> Verdict:
        return cls(RequestDecision(RequestStatus.REJECTED, error=error[:2000]))


def already_decided(data: dict[str, Any]) -> bool:
    """A request that carries a decision was handled before (the trigger may fire twice)."""
    return any(data.get(name) is not None for name in DECIDED_FIELDS)


def parse(data: dict[str, Any]) -> tuple[Request, bool]:
    """The request and whether the caller claims to be an admin; WireError when malformed."""
    fields = dict(data)
    admin = fields.pop(ADMIN_FIELD, False)
    if admin is not True and admin is not False:
        raise WireError(ADMIN_FIELD, "must be a boolean")
    return decode(Request, fields), admin


def authorized(request: Request, admin: bool, owners: object) -> bool:
    return admin or (isinstance(owners, list) and request.requested_by in owners)


def judge(
    request_id: str, data: dict[str, Any], owners: object, now: datetime, config: PolicyConfig
) -> Verdict:
    """Accept (with the command) or reject (with a one-line error) one request document.

    `owners` is `accounts/{id}.owners` as stored (None when the account does not exist).
    """
    try:
        request, admin = parse(data)
    except WireError as exc:
        return Verdict.reject(f"malformed request: {exc}")
    if not authorized(request, admin, owners):
        return Verdict.reject(
            f"{request.requested_by} is neither an owner of account {request.account_id} nor an admin"
            " (admins: send admin: true)"
        )
    action = request.action.as_command()
    try:
        command = Command(
            account_id=request.account_id,
            action=action,
            params=dict(request.params),
            reason=f"{action.value} requested in the app by {request.requested_by}",
            issued_by=f"app:{request.requested_by}",
            source_event_id=request_id,
            issued_at=utc_timestamp(now),
            expires_at=utc_timestamp(now + config.command_ttl),
        )
    except WireError as exc:
        return Verdict.reject(f"cannot issue the command: {exc}")
    decision = RequestDecision(RequestStatus.ACCEPTED, command_id=command_id_for(request_id, action))
    return Verdict(decision, command)
