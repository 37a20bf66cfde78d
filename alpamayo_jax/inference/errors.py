"""The error of a bad planning input, importable without the model (`run-exported` uses it too)."""


class PolicyInputError(ValueError):
    """An input the policy cannot plan from; the message names the field and the expected value."""
