"""The control plane's policy, pure: standard library and wa_wire only.

`decide(event, account, now, config)` turns one lifecycle event and the
account's stored record into a new record and the commands to issue;
`settle` does the same for the sweep's clock tick; `housekeeping` holds the
sweep's other decisions. No Google import, no I/O: import-linter enforces it.
"""

from policy.config import PolicyConfig
from policy.decide import AccountView, Decision, Outcome, PolicyRecord, decide, fold, settle
from policy.errors import PolicyError
from policy.model import BackupRef, MarkGood, Order, PolicyEvent, PolicyState, Strikes

__all__ = [
    "AccountView",
    "BackupRef",
    "Decision",
    "MarkGood",
    "Order",
    "Outcome",
    "PolicyConfig",
    "PolicyError",
    "PolicyEvent",
    "PolicyRecord",
    "PolicyState",
    "Strikes",
    "decide",
    "fold",
    "settle",
]
