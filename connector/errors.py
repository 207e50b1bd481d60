"""Errors of the connector: one root, so the CLI can turn any into one clear line."""


class KeeperError(Exception):
    """Root of the connector's own errors; its message is shown to the operator as is."""


class SettingsError(KeeperError):
    """A setting is missing or invalid; the message names it."""
