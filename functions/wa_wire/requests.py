"""Requests: what the app may ask for, in `requests/{id}` (rules-checked).

A Cloud Function authorizes each request and answers on the same document with
a `RequestDecision`: `accepted` with the command id, or `rejected` with an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from wa_wire.codec import validate_fields
from wa_wire.commands import CommandAction, check_params
from wa_wire.errors import WireError
from wa_wire.names import MAX_ID_LEN

_ID = {"max_len": MAX_ID_LEN, "min_len": 1}


class RequestAction(StrEnum):
    """The actions an app user may request (`release` is the connectors' own)."""

    RESTORE = "restore"
    WIPE = "wipe"
    RECONNECT = "reconnect"
    PAIR = "pair"
    LOGOUT = "logout"

    def as_command(self) -> CommandAction:
        return CommandAction(self.value)


class RequestStatus(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Request:
    """A request document exactly as the app creates it.

    Attributes:
        account_id: the account, 1..128 chars.
        action: what the user asks for.
        params: action parameters (as for the command).
        requested_by: the caller's uid (rules enforce `== request.auth.uid`).
    """

    account_id: str = field(metadata=_ID)
    action: RequestAction
    params: dict[str, object]
    requested_by: str = field(metadata=_ID)

    def __post_init__(self) -> None:
        validate_fields(self)
        check_params(self.action.as_command(), self.params)


@dataclass(frozen=True)
class RequestDecision:
    """The functions' answer, merged into the request document.

    Attributes:
        status: accepted or rejected.
        command_id: the command created for an accepted request.
        error: why a request was rejected, one line.
    """

    status: RequestStatus
    command_id: str | None = field(default=None, metadata=_ID)
    error: str | None = None

    def __post_init__(self) -> None:
        validate_fields(self)
        if (self.status is RequestStatus.ACCEPTED) != (self.command_id is not None):
            raise WireError("command_id", "required exactly when accepted")
        if (self.status is RequestStatus.REJECTED) != (self.error is not None):
            raise WireError("error", "required exactly when rejected")
