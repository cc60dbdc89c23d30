"""Files in, results out.

Finding the revision files under the paths given, rewriting one file's bytes
into a ``FileResult`` (changed, unchanged, skipped or failed, never an
exception), doing that for many files on all cores with a cache in front,
and writing a result back atomically.

LibCST is imported only when a file has to be parsed, so a re-check served
from the cache starts fast.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import difflib
import errno
import functools
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from codemod.cache import ResultCache
from codemod.formatting import Style
from codemod.results import FileResult, OpReport, Status

if TYPE_CHECKING:
    import libcst as cst

_REVISION = re.compile(rb"^revision\s*(?::[^=\n]*)?=", re.MULTILINE)
_UPGRADE = re.compile(rb"^(?:async\s+)?def\s+upgrade\w*\s*\(", re.MULTILINE)


def is_revision_file(source: bytes) -> bool:
    """An Alembic revision file assigns ``revision`` and defines ``upgrade``."""
    return _REVISION.search(source) is not None and _UPGRADE.search(source) is not None


def rewrite_source(source: bytes, style: Style, helpers_needed: set[str] | None = None) -> tuple[bytes, list[OpReport]]:
    """Guard every op in ``source``; raises ``libcst.ParserSyntaxError`` on bad input.

    ``helpers_needed``, when given, receives the generated helpers the
    rewritten file needs (what a shared helpers module must hold for it).
    """
    import libcst as cst  # noqa: PLC0415 - deferred: see the module docstring

    from codemod.transformer import GuardTransformer  # noqa: PLC0415

    module = cst.parse_module(source)
    transformer = GuardTransformer(style, source)
    rewritten = module.visit(transformer)
    if helpers_needed is not None:
        helpers_needed.update(transformer.helpers_needed)
    return transformer.code(rewritten), transformer.reports


def find_files(
    paths: Iterable[Path], not_followed: list[Path] | None = None, unreadable: list[FileResult] | None = None
) -> Iterator[Path]:
    """Every ``.py`` file named or below a named directory, in a stable order.

    Like Alembic, which lists its versions directories the same way, symlinked
    files are read (and written through) but symlinked directories are not
    entered; they are added to ``not_followed``. Hidden directories and
    ``__pycache__`` are not searched. A directory that cannot be listed is
    added to ``unreadable`` as a FAILED result, and the search goes on.
    """

    def failed(error: OSError) -> None:
        if unreadable is not None:
            unreadable.append(FileResult(Path(error.filename), Status.FAILED, message=f"cannot list: {error.strerror}"))

    for path in paths:
        if not path.is_dir():
            yield path
            continue
        found: list[Path] = []
        for root, directories, files in os.walk(path, onerror=failed):
            here = Path(root)
            directories[:] = [name for name in directories if not name.startswith(".") and name != "__pycache__"]
            if not_followed is not None:
                not_followed.extend(here / name for name in directories if (here / name).is_symlink())
            found.extend(here / name for name in files if name.endswith(".py"))
        yield from sorted(found)


def _rewrite(path: Path, source: bytes, style: Style) -> FileResult:
    """Rewrite ``source``, the bytes of the revision file ``path``; every failure becomes a FAILED result."""
    import libcst as cst  # noqa: PLC0415 - deferred: see the module docstring

    needed: set[str] | None = set() if style.helpers is not None else None
    try:
        rewritten, reports = (
            rewrite_source(source, style, needed) if needed is not None else rewrite_source(source, style)
        )
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
    helpers = tuple(sorted(needed or ()))
    return FileResult(
        path, status, source, rewritten if status is Status.CHANGED else None, tuple(reports), helpers=helpers
    )


def _read(path: Path) -> bytes | FileResult:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if path.is_symlink():
            return FileResult(path, Status.FAILED, message=f"a broken symlink (to {os.readlink(path)})")
        return FileResult(path, Status.FAILED, message="no such file or directory")
    except OSError as error:
        return FileResult(path, Status.FAILED, message=f"cannot read: {error.strerror or error}")


# Below this many files to parse, starting worker processes costs more than it saves.
_PARALLEL_FROM = 8


def process_files(
    files: Sequence[tuple[Path, Style]], *, jobs: int = 1, cache: ResultCache | None = None
) -> Iterator[FileResult]:
    """Each file rewritten in memory with its style, in order, on up to ``jobs`` processes.

    Files are read here: a cached result is used as it is, only the misses are
    parsed (in worker processes when there are enough of them), and their
    results are stored for the next run. Every failure (unreadable, not a
    revision, cannot be parsed) is a result, never an exception.

    The workers start at the first miss, before the files after it are read:
    forked later, each would hold a copy of every file's bytes read so far
    (resident, although shared) for the whole run. A warm run starts none.
    """
    pending: list[FileResult | tuple[Path, bytes, Style, str | None] | None] = []
    pool: ProcessPoolExecutor | None = None
    try:
        for index, (path, style) in enumerate(files):
            item = _cached_or_pending(path, style, cache)
            if pool is None and isinstance(item, tuple) and jobs > 1 and len(files) - index >= _PARALLEL_FROM:
                pool = _started_pool(min(jobs, len(files) - index))
            pending.append(item)
        misses = [item for item in pending if isinstance(item, tuple)]
        if pool is not None and len(misses) >= _PARALLEL_FROM:
            chunk = max(1, len(misses) // (jobs * 8))
            computed = pool.map(_process_in_worker, misses, chunksize=chunk)
            misses.clear()
            yield from _in_order(pending, computed, cache)
        else:
            if pool is not None:  # too few misses after all: the workers would cost more than they save
                pool.shutdown()
            yield from _in_order(pending, map(_process_item, misses), cache)
    finally:  # also when the caller stopped early (an error, a closed pipe): drop the files not started
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _cached_or_pending(
    path: Path, style: Style, cache: ResultCache | None
) -> FileResult | tuple[Path, bytes, Style, str | None]:
    """The result for ``path`` found without parsing it, else what a worker needs to parse it (and its cache key)."""
    source = _read(path)
    if isinstance(source, FileResult):
        return source
    if not is_revision_file(source):
        return _not_a_revision(path, source)
    if cache is None:
        return (path, source, style, None)
    key = cache.key(source, style)
    return cache.get(key, path, source) or (path, source, style, key)


def _started_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, started now (where processes are forked, the first task starts them all)."""
    pool = ProcessPoolExecutor(workers)
    pool.submit(os.getpid)
    return pool


def _not_a_revision(path: Path, source: bytes) -> FileResult:
    return FileResult(path, Status.SKIPPED, source, message="not an Alembic revision file")


def _process_item(item: tuple[Path, bytes, Style, str | None]) -> FileResult:
    path, source, style, _ = item
    return _rewrite(path, source, style)  # process_files has found it a revision file


def _process_in_worker(item: tuple[Path, bytes, Style, str | None]) -> FileResult:
    """``_process_item`` in a worker process, which then hands the memory the file needed back to the system.

    LibCST's native parser takes tens of megabytes of C heap for a large file
    (about 30 MB for 40 kB of source) and frees it, but glibc keeps free heap
    pages mapped: each worker would hold the peak of the largest file it ever
    parsed, for the rest of the run.
    """
    try:
        return _process_item(item)
    finally:
        _release_free_memory()


def _release_free_memory() -> None:
    if (trim := _malloc_trim()) is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, which returns every free page of the heap to the system; None elsewhere."""
    try:
        function: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl without it, Windows)
        return None
    return function


def _in_order(
    pending: list[FileResult | tuple[Path, bytes, Style, str | None] | None],
    computed: Iterator[FileResult],
    cache: ResultCache | None,
) -> Iterator[FileResult]:
    for index, item in enumerate(pending):
        pending[index] = None  # the caller holds what it keeps: 2,000 files' bytes need not stay here
        if isinstance(item, FileResult):
            yield item
            continue
        assert item is not None
        result = next(computed)
        if cache is not None and item[3] is not None:
            cache.put(item[3], result)
        yield result


def default_jobs() -> int:
    """The CPUs this process may use (its affinity, where the platform reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS and Windows
        return max(1, os.cpu_count() or 1)


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
    write_beside(target, result.rewritten, mode, os.replace)


def write_beside(target: Path, data: bytes, mode: int, put: Callable[[str, Path], object]) -> None:
    """Write ``data`` (synced, with ``mode``) to a temporary file beside ``target``, then ``put`` it there.

    ``put`` is ``os.replace`` to overwrite in one rename, or ``os.link`` to
    create a file that must not exist yet. The temporary file never stays.
    """
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".idempotify")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        put(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)  # still there after a link, or after a failure


def lines_after_rewrite(result: FileResult) -> FileResult:
    """``result`` with its reports' lines counted in the rewritten file, as the user will now read it.

    A rewrite inserts lines (guards, the helper block) and re-indents op
    statements, so lines are matched on their stripped text.
    """
    if result.rewritten is None or not result.reports:
        return result
    before = [line.strip() for line in result.original.splitlines()]
    after = [line.strip() for line in result.rewritten.splitlines()]
    moved: dict[int, int] = {}
    for block in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_matching_blocks():
        moved.update((block.a + offset + 1, block.b + offset + 1) for offset in range(block.size))
    reports = tuple(dataclasses.replace(report, line=moved.get(report.line, report.line)) for report in result.reports)
    return dataclasses.replace(result, reports=reports)
