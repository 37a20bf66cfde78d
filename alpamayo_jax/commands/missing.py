"""How a verb whose capability is not built yet answers: a clear message and a non-zero exit."""

from __future__ import annotations

import sys

EXIT_MISSING = 3


class MissingCapability(RuntimeError):
    """Raised by a verb that cannot run because a part of the system does not exist yet."""


def report_missing(verb: str, capability: str) -> int:
    """Print which capability `verb` needs and return the exit code for it."""
    print(f"alpamayo {verb}: not available yet: it needs {capability}.", file=sys.stderr)
    return EXIT_MISSING
