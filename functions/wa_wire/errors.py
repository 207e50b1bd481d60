"""The one error the wire contract raises."""


class WireError(ValueError):
    """A message or document does not match the contract.

    `field` names the offending field (dotted for nested ones, "" for the whole
    message) so the error can be logged and answered without showing the value,
    which may be a secret.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        where = field if field else "message"
        super().__init__(f"{where}: {problem}")
