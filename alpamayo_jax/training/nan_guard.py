"""Stop a run at the first non-finite loss, gradient or update, before anything is saved.

A NaN in the loss (or an Inf gradient, or an update that overflows the parameters) poisons every
later step, and a checkpoint of it would poison every resume. The loop checks the step's metrics
with `check_finite` before logging and before each save; the error names the step, the quantity
and the last good checkpoint, so the run can be resumed from there with a smaller learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# The scalars the train step reports that must stay finite.
GUARDED = ("loss", "grad_norm", "param_norm")


class NonFiniteError(FloatingPointError):
    """A non-finite training quantity; raised before the poisoned state can be checkpointed.

    `last_good` is the newest checkpoint known complete and verified (its digests written by the
    run, or verified when it resumed); the loop updates it once the save in flight has finished.
    """

    def __init__(self, step: int, name: str, value: float, last_good: int | None):
        self.step, self.name, self.value, self.last_good = step, name, value, last_good
        super().__init__(step, name, value, last_good)

    def __str__(self) -> str:
        where = (
            f"the last good checkpoint is step {self.last_good}"
            if self.last_good is not None
            else "no checkpoint was written"
        )
        return (
            f"non-finite {self.name} ({self.value}) at step {self.step}; "
            f"stopped without saving this state ({where})"
        )


def check_finite(step: int, metrics: Mapping[str, float], last_good: int | None) -> None:
    """Raise `NonFiniteError` if a guarded metric of `step` is NaN or infinite."""
    for name in GUARDED:
        if name in metrics and not math.isfinite(float(metrics[name])):
            raise NonFiniteError(step, name, float(metrics[name]), last_good)
