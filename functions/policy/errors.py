"""The one error the policy raises."""


class PolicyError(ValueError):
    """A policy input (a setting, a stored policy record) is invalid; one clear line."""
