"""What idempotify found: per op (``OpReport``) and per file (``FileResult``).

Kept apart from the rewriting machinery so that reading a cached result, or
reporting one, never needs LibCST.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Outcome(Enum):
    """What became of one op call."""

    GUARDED = "guarded"
    ALREADY_SAFE = "already safe"
    SKIPPED = "skipped by marker"
    UNGUARDED = "left unguarded"


@dataclass(frozen=True)
class OpReport:
    """What became of one op call, where, and why."""

    line: int
    call: str
    outcome: Outcome
    reason: str = ""


class Status(Enum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class FileResult:
    """The outcome for one file. ``rewritten`` is set when ``status`` is CHANGED.

    ``helpers``: the generated helpers the file needs from the project's shared
    helpers module (only with one).
    """

    path: Path
    status: Status
    original: bytes = b""
    rewritten: bytes | None = None
    reports: tuple[OpReport, ...] = field(default_factory=tuple)
    message: str = ""
    helpers: tuple[str, ...] = ()
