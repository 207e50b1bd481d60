"""Names of Firestore collections, the Pub/Sub topic and account statuses.

No other module spells these strings.
"""

from enum import StrEnum

DEFAULT_TOPIC = "wa-lifecycle"
"""The lifecycle topic; the connector may override it with WA_KEEPER_TOPIC."""

MAX_ID_LEN = 128
MAX_DETAIL_LEN = 2000
MAX_TEXT_LEN = 2000


class Collections(StrEnum):
    """Top-level Firestore collections (DESIGN.md Part 1)."""

    ACCOUNTS = "accounts"
    LEASES = "leases"
    CONNECTORS = "connectors"
    COMMANDS = "commands"
    REQUESTS = "requests"
    PROCESSED_EVENTS = "processed_events"
    HANDOFFS = "handoffs"  # connector-to-connector hints: accounts just released (connector only)


class SubCollections(StrEnum):
    """Collections nested under an account (backups) or a backup (chunks)."""

    BACKUPS = "backups"
    CHUNKS = "chunks"


class AccountStatus(StrEnum):
    """Visible state of an account in `accounts/{id}.status`."""

    NEEDS_QR = "needs_qr"
    PAIRING = "pairing"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    RESTORING = "restoring"
    NEEDS_RESTORE = "needs_restore"
    LOGGED_OUT = "logged_out"
    BANNED = "banned"
    REPLACED = "replaced"
    UNATTENDED = "unattended"
    ERROR = "error"
