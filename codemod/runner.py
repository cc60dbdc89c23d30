"""One file in, one result out.

Finding the revision files under the paths given, rewriting one file's bytes
into a ``FileResult`` (changed, unchanged, skipped or failed, never an
exception), and writing a result back atomically.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper

from codemod.formatting import Style, style_for
from codemod.transformer import GuardTransformer, OpReport

_REVISION = re.compile(rb"^revision\s*(?::[^=\n]*)?=", re.MULTILINE)
_UPGRADE = re.compile(rb"^(?:async\s+)?def\s+upgrade\w*\s*\(", re.MULTILINE)


class Status(Enum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class FileResult:
    """The outcome for one file. ``rewritten`` is set when ``status`` is CHANGED."""

    path: Path
    status: Status
    original: bytes = b""
    rewritten: bytes | None = None
    reports: tuple[OpReport, ...] = field(default_factory=tuple)
    message: str = ""


def is_revision_file(source: bytes) -> bool:
    """An Alembic revision file assigns ``revision`` and defines ``upgrade``."""
    return _REVISION.search(source) is not None and _UPGRADE.search(source) is not None


def rewrite_source(source: bytes, style: Style) -> tuple[bytes, list[OpReport]]:
    """Guard every op in ``source``; raises ``libcst.ParserSyntaxError`` on bad input."""
    module = cst.parse_module(source)
    transformer = GuardTransformer(style)
    rewritten = MetadataWrapper(module).visit(transformer)
    return rewritten.bytes, transformer.reports


def find_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every ``.py`` file named or below a named directory, in a stable order."""
    for path in paths:
        if path.is_dir():
            for candidate in sorted(path.rglob("*.py")):
                relative = candidate.relative_to(path).parts
                if not any(part.startswith(".") or part == "__pycache__" for part in relative[:-1]):
                    yield candidate
        else:
            yield path


def process_file(path: Path, style: Style | None = None) -> FileResult:
    """Rewrite one file in memory; every failure becomes a FAILED result."""
    try:
        source = path.read_bytes()
    except FileNotFoundError:
        return FileResult(path, Status.FAILED, message="no such file or directory")
    except OSError as error:
        return FileResult(path, Status.FAILED, message=f"cannot read: {error.strerror or error}")
    if not is_revision_file(source):
        return FileResult(path, Status.SKIPPED, source, message="not an Alembic revision file")
    try:
        rewritten, reports = rewrite_source(source, style or style_for(path))
    except cst.ParserSyntaxError as error:
        return FileResult(path, Status.FAILED, source, message=_syntax_error_message(source, error))
    except UnicodeDecodeError as error:
        line = source[: error.start].count(b"\n") + 1
        message = f"line {line}: not valid text in its encoding ({error.encoding}): {error.reason}"
        return FileResult(path, Status.FAILED, source, message=message)
    except SyntaxError as error:  # tokenize's verdict on the encoding of the first lines
        return FileResult(path, Status.FAILED, source, message=f"line {error.lineno or 1}: {error.msg}")
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
        return FileResult(path, Status.FAILED, source, message=f"internal error: {type(error).__name__}: {error}")
    status = Status.CHANGED if rewritten != source else Status.UNCHANGED
    return FileResult(path, status, source, rewritten if status is Status.CHANGED else None, tuple(reports))


def _syntax_error_message(source: bytes, error: cst.ParserSyntaxError) -> str:
    """Python's own account of a syntax error (it names the line at fault), else LibCST's."""
    try:
        compile(source, "<migration>", "exec", dont_inherit=True)
    except SyntaxError as python_error:
        return f"line {python_error.lineno}: invalid Python: {python_error.msg}"
    return f"line {error.raw_line}, column {error.raw_column + 1}: cannot parse: {error.message.splitlines()[0]}"


class ChangedOnDiskError(Exception):
    """The file on disk is no longer what was read, so it is not overwritten."""


def write_result(result: FileResult) -> None:
    """Write a CHANGED result over its file atomically, keeping the file's mode.

    The new bytes go to a temporary file beside the original, which then
    replaces it in one rename: a crash leaves either the old or the new file.
    Raises ``ChangedOnDiskError`` when the file changed since it was read.
    """
    assert result.status is Status.CHANGED and result.rewritten is not None
    path = result.path
    if path.read_bytes() != result.original:
        raise ChangedOnDiskError(f"{path} changed on disk while idempotify ran; not overwritten")
    target = path.resolve()
    mode = target.stat().st_mode & 0o7777
    if not mode & stat.S_IWUSR:
        raise PermissionError(errno.EACCES, "the file is read-only", str(path))
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".idempotify")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(result.rewritten)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
