"""Errors of the functions' effects: one root, one clear line each."""


class ControlError(Exception):
    """Root of the functions' own errors (bad params, unusable stored data)."""
