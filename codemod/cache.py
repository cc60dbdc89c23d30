"""A cache of rewrite results, so a re-check of an unchanged tree parses nothing.

An entry is keyed by the file's bytes, the settings that shape the output
(the ``Style``) and a fingerprint of idempotify itself (its version, the
source of its modules, and the LibCST and black versions), so any change to
one of them is a miss. Entries live in the platform cache directory
(``$XDG_CACHE_HOME/idempotify`` on Linux), one small JSON file each, written
to a temporary file and renamed into place: concurrent runs never see a
half-written entry, and an unreadable entry is simply a miss. The directory
can be deleted at any time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import platformdirs

from codemod import __version__
from codemod.formatting import Style
from codemod.results import FileResult, OpReport, Outcome, Status

_CACHED = (Status.CHANGED, Status.UNCHANGED, Status.FAILED)


def default_directory() -> Path:
    """``idempotify`` in the platform's user cache directory (``XDG_CACHE_HOME`` is respected)."""
    return Path(platformdirs.user_cache_dir("idempotify", appauthor=False))


@cache
def tool_fingerprint() -> str:
    """What idempotify's output depends on besides the input: its code and the libraries that shape it."""
    digest = hashlib.sha256(f"{__version__} python {sys.version_info[:2]}".encode())  # compile()'s messages vary
    for name in ("libcst", "black"):
        digest.update(f"\0{name}={metadata.version(name)}".encode())
    for module in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(b"\0" + module.read_bytes())
    return digest.hexdigest()


class ResultCache:
    """Rewrite results on disk, keyed by content, style and ``tool_fingerprint()``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = (directory or default_directory()) / "results"

    def key(self, source: bytes, style: Style) -> str:
        digest = hashlib.sha256(tool_fingerprint().encode())
        digest.update(f"\0{style.line_length}\0{style.string_normalization}\0{style.helpers}\0".encode())
        digest.update(source)
        return digest.hexdigest()

    def _entry(self, key: str) -> Path:
        return self.directory / key[:2] / key[2:]

    def get(self, key: str, path: Path, source: bytes) -> FileResult | None:
        """The cached result for ``source`` (read from ``path``), or None on a miss or an unreadable entry."""
        try:
            entry = json.loads(self._entry(key).read_bytes())
            status = Status(entry["status"])
            rewritten = base64.b64decode(entry["rewritten"]) if entry["rewritten"] is not None else None
            reports = tuple(
                OpReport(int(line), str(call), Outcome(outcome), str(reason))
                for line, call, outcome, reason in entry["reports"]
            )
            message = str(entry["message"])
            helpers = tuple(str(name) for name in entry["helpers"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if status not in _CACHED or (status is Status.CHANGED) != (rewritten is not None):
            return None
        return FileResult(path, status, source, rewritten, reports, message, helpers)

    def put(self, key: str, result: FileResult) -> None:
        """Store ``result`` if it depends on the content alone; a cache that cannot be written is no error."""
        if result.status not in _CACHED or result.message.startswith("internal error"):
            return
        entry: dict[str, Any] = {
            "status": result.status.value,
            "rewritten": base64.b64encode(result.rewritten).decode() if result.rewritten is not None else None,
            "reports": [[r.line, r.call, r.outcome.value, r.reason] for r in result.reports],
            "message": result.message,
            "helpers": list(result.helpers),
        }
        target = self._entry(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                    json.dump(entry, stream)
                os.replace(temporary, target)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError:
            return
