"""Commands: one immutable order for one account, in `commands/{id}`.

Functions and the CLI create them; the connector holding the account's lease
claims one in a transaction (recording its epoch), runs it once and writes the
result. Nothing rewrites a command's action or params.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from wa_wire.codec import validate_fields
from wa_wire.errors import WireError
from wa_wire.names import MAX_ID_LEN

_ID = {"max_len": MAX_ID_LEN, "min_len": 1}
_TIME = {"timestamp": True, "max_len": 40}


class CommandAction(StrEnum):
    RESTORE = "restore"
    WIPE = "wipe"
    RECONNECT = "reconnect"
    PAIR = "pair"
    LOGOUT = "logout"
    RELEASE = "release"


class CommandStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


ALLOWED_PARAMS: dict[CommandAction, dict[str, type]] = {
    CommandAction.RESTORE: {"generation": int},
    CommandAction.WIPE: {},
    CommandAction.RECONNECT: {},
    CommandAction.PAIR: {},
    CommandAction.LOGOUT: {},
    CommandAction.RELEASE: {},
}
"""The params each action accepts (all optional); restore without a generation
means the newest good one."""


def check_params(action: CommandAction, params: dict[str, object], field_name: str = "params") -> None:
    """Reject params the action does not take, or of the wrong type."""
    allowed = ALLOWED_PARAMS[action]
    for key, value in params.items():
        if key not in allowed:
            raise WireError(f"{field_name}.{key}", f"not a parameter of {action.value}")
        expected = allowed[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise WireError(f"{field_name}.{key}", f"must be {expected.__name__}")
        if isinstance(value, int) and value < 0:
            raise WireError(f"{field_name}.{key}", "must not be negative")


def command_id_for(source_event_id: str, action: CommandAction) -> str:
    """A command id derived from its cause, so a retried trigger creates no duplicate."""
    digest = hashlib.sha256(f"{source_event_id}\x00{action.value}".encode()).hexdigest()
    return f"cmd-{digest[:40]}"


@dataclass(frozen=True)
class CommandResult:
    """Outcome written by the connector that ran the command.

    Attributes:
        ok: whether the action succeeded.
        message: one human line saying what happened.
    """

    ok: bool
    message: str

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class Command:
    """One command document.

    Attributes:
        account_id: the account the command is for.
        action: what to do.
        params: action parameters (see `ALLOWED_PARAMS`).
        reason: why it was issued, human text.
        issued_by: `policy`, `cli:<user>` or `app:<uid>`.
        source_event_id: the event or request that caused it (its id derives from it).
        issued_at: RFC 3339 UTC.
        expires_at: after this the command is `expired`, never run.
        status: pending -> claimed -> done | failed; or rejected, expired.
        claimed_by: connector id that claimed it, else null.
        claimed_epoch: lease epoch of the claimer, else null.
        result: outcome, once finished.
        finished_at: RFC 3339 UTC, once finished.
    """

    account_id: str = field(metadata=_ID)
    action: CommandAction
    params: dict[str, object]
    reason: str
    issued_by: str = field(metadata=_ID)
    source_event_id: str = field(metadata=_ID)
    issued_at: str = field(metadata=_TIME)
    expires_at: str = field(metadata=_TIME)
    status: CommandStatus = CommandStatus.PENDING
    claimed_by: str | None = field(default=None, metadata=_ID)
    claimed_epoch: int | None = field(default=None, metadata={"min": 0})
    result: CommandResult | None = None
    finished_at: str | None = field(default=None, metadata=_TIME)

    def __post_init__(self) -> None:
        validate_fields(self)
        check_params(self.action, self.params)
        if not self.issued_by.startswith(("policy", "cli:", "app:")):
            raise WireError("issued_by", "must be policy, cli:<user> or app:<uid>")
        if self.expires_at <= self.issued_at:
            raise WireError("expires_at", "must be later than issued_at")
