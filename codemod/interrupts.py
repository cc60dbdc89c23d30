"""Telling an interrupted run from a failed one.

Ctrl-C or SIGTERM raises ``KeyboardInterrupt`` wherever the run is, often inside a database call. The
clean-up on its way out can fail in turn (SQLAlchemy: "can't reconnect until invalid transaction is
rolled back"), and that error, an ``Exception``, is what a handler then sees: taken for a migration's
failure, the interrupt would be reported as a finding and the run would go on. The interrupt stays in
the error's cause or context, where this looks for it.
"""

from __future__ import annotations


def carries_interrupt(error: BaseException | None) -> bool:
    """``error`` is a ``KeyboardInterrupt``, or was raised while one was on its way out."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False
