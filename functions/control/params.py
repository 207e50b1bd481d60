"""The policy's thresholds as firebase-functions params, read at call time.

Declaring a param only registers its name (no I/O), so `firebase deploy` can
list them; `.value` reads the environment when a function runs. Durations are
whole seconds. Unset params take DESIGN.md's defaults (PolicyConfig's).
"""

from __future__ import annotations

from datetime import timedelta

from firebase_functions.params import IntParam

from control.errors import ControlError
from policy import PolicyConfig, PolicyError

_D = PolicyConfig()


def _seconds(value: timedelta) -> int:
    return int(value.total_seconds())


MAX_STRIKES = IntParam("WA_POLICY_MAX_STRIKES", default=_D.max_strikes)
STRIKE_WINDOW_S = IntParam("WA_POLICY_STRIKE_WINDOW_S", default=_seconds(_D.strike_window))
TRANSIENT_AFTER_RESTART_S = IntParam(
    "WA_POLICY_TRANSIENT_AFTER_RESTART_S", default=_seconds(_D.transient_after_restart)
)
STABLE_PERIOD_S = IntParam("WA_POLICY_STABLE_PERIOD_S", default=_seconds(_D.stable_period))
MAX_REPLACED_RECONNECTS = IntParam("WA_POLICY_MAX_REPLACED_RECONNECTS", default=_D.max_replaced_reconnects)
REPLACED_BACKOFF_S = IntParam("WA_POLICY_REPLACED_BACKOFF_S", default=_seconds(_D.replaced_backoff))
BAN_DEFAULT_S = IntParam("WA_POLICY_BAN_DEFAULT_S", default=_seconds(_D.ban_default))
BAN_GRACE_S = IntParam("WA_POLICY_BAN_GRACE_S", default=_seconds(_D.ban_grace))
COMMAND_TTL_S = IntParam("WA_POLICY_COMMAND_TTL_S", default=_seconds(_D.command_ttl))
KEEP_GENERATIONS = IntParam("WA_POLICY_KEEP_GENERATIONS", default=_D.keep_generations)
LEASE_GRACE_S = IntParam("WA_POLICY_LEASE_GRACE_S", default=_seconds(_D.lease_grace))
PROCESSED_EVENTS_TTL_S = IntParam(
    "WA_POLICY_PROCESSED_EVENTS_TTL_S", default=_seconds(_D.processed_events_ttl)
)
JOURNAL_SIZE = IntParam("WA_POLICY_JOURNAL_SIZE", default=_D.journal_size)


def _read(param: IntParam) -> int:
    try:
        return param.value
    except ValueError as exc:
        raise ControlError(f"param {param.name} must be an integer") from exc


def _secs(param: IntParam) -> timedelta:
    return timedelta(seconds=_read(param))


def load_config() -> PolicyConfig:
    """The current thresholds; a bad value raises ControlError naming the param."""
    try:
        return PolicyConfig(
            max_strikes=_read(MAX_STRIKES),
            strike_window=_secs(STRIKE_WINDOW_S),
            transient_after_restart=_secs(TRANSIENT_AFTER_RESTART_S),
            stable_period=_secs(STABLE_PERIOD_S),
            max_replaced_reconnects=_read(MAX_REPLACED_RECONNECTS),
            replaced_backoff=_secs(REPLACED_BACKOFF_S),
            ban_default=_secs(BAN_DEFAULT_S),
            ban_grace=_secs(BAN_GRACE_S),
            command_ttl=_secs(COMMAND_TTL_S),
            keep_generations=_read(KEEP_GENERATIONS),
            lease_grace=_secs(LEASE_GRACE_S),
            processed_events_ttl=_secs(PROCESSED_EVENTS_TTL_S),
            journal_size=_read(JOURNAL_SIZE),
        )
    except PolicyError as exc:
        raise ControlError(f"params: {exc}") from exc
