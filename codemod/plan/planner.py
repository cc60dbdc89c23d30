"""The plan: what the next deploy runs and skips on the live database, and whether the original chain fails.

The pending revisions (from the live ``alembic_version`` to the heads) run on
a scratch copy of the live database twice: the rewritten chain on one copy,
the original chain on another. The rewritten version of a revision file not
yet rewritten is idempotify's own rewrite of it, in memory (the file is the
original); a file already rewritten has its baseline as the original
(``--baseline DIR``, else its committed version when git has it modified),
or no known original. Ops are listed with the lines of the file on disk.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from codemod.formatting import Style, style_for
from codemod.guards import BLOCK_MARK
from codemod.plan.drift import describe, drift
from codemod.plan.live import LiveCopy, copy_into, read_live
from codemod.plan.record import Recording, run_recorded
from codemod.results import OpReport, Outcome
from codemod.runner import rewrite_source as _rewrite_source
from codemod.shared_helpers import imported_helpers_module
from codemod.verify.chain import Revision, load_chain
from codemod.verify.database import Scratch, ScratchServer, scratch_server
from codemod.verify.environment import ProjectEnvironment

RUN = "run"
SKIP = "skip (exists)"
UNGUARDED = "unguarded (runs unchecked)"
NOT_RUN = "not run"
FAILS = "fails"
NOT_REACHED = "not reached"


class PlanError(Exception):
    """The plan cannot be made (the database is at a revision the chain does not have, say)."""


@dataclass
class OpPlan:
    """One op of a pending revision in the rewritten chain, and what the deploy does with it."""

    line: int | None  # in the file on disk (None: only in the rewritten version, at ``rewritten_line``)
    rewritten_line: int
    call: str
    action: str
    detail: str = ""
    drift: list[str] = field(default_factory=list)
    approximate: str = ""
    names: tuple[str, ...] = ()  # what the guard that skipped it found


@dataclass
class RevisionPlan:
    """One pending revision: its ops in the rewritten chain, and how the original fares."""

    id: str
    path: Path
    rewritten_in_memory: bool
    ops: list[OpPlan] = field(default_factory=list)
    rewritten_error: str = ""
    original: str = "runs"  # runs, fails, not known, not reached
    original_error: str = ""
    original_path: str = ""
    original_line: int | None = None
    original_call: str = ""

    @property
    def drifted(self) -> bool:
        return any(op.drift for op in self.ops)


@dataclass
class Plan:
    url: str
    dialect: str
    heads: tuple[str, ...]
    method: str
    not_carried: list[str]
    rows_not_copied: list[str]
    revisions: list[RevisionPlan]

    @property
    def failed(self) -> bool:
        """The deploy as it stands would fail (original or rewritten), or a guard skips an object that drifted."""
        return any(
            revision.original == "fails" or revision.rewritten_error or revision.drifted for revision in self.revisions
        )


@dataclass
class _Sources:
    revision: Revision
    rewritten: str
    original: str | None
    original_path: str
    reports: list[OpReport]  # of the rewritten version, with its lines
    original_reports: list[OpReport]
    line_in_file: dict[int, int] | None  # rewritten line -> the file's line (None: the same lines)


def build_plan(
    versions: Sequence[Path],
    url: str,
    *,
    baseline: Path | None = None,
    project: ProjectEnvironment | None = None,
    naming_convention: dict[str, str] | None = None,
    scratch_url: str | None = None,
) -> Plan:
    """Read the live database at ``url`` (read-only) and plan the pending revisions of ``versions`` on copies."""
    chain = load_chain(versions, baseline)
    live = read_live(url)
    pending = [_sources(revision) for revision in _pending(versions, chain, live.heads)]
    plans = [RevisionPlan(item.revision.id, item.revision.path, _in_memory(item)) for item in pending]
    if pending:
        with scratch_server(scratch_url if scratch_url is not None else _server_of(url, live.dialect)) as server:
            _walk(server, live, pending, plans, project, naming_convention, chain)
    return Plan(_safe(url), live.dialect, live.heads, live.method, live.not_carried, live.rows_not_copied, plans)


def _server_of(url: str, dialect: str) -> str | None:
    """Where scratch databases go by default: the live server, through its maintenance database (never through
    the live database); SQLite: temporary files."""
    if dialect == "sqlite":
        return None
    parsed = sa.engine.make_url(url)
    maintenance = "postgres" if dialect == "postgresql" else None
    return parsed.set(database=maintenance).render_as_string(hide_password=False)


def _pending(versions: Sequence[Path], chain: list[Revision], heads: tuple[str, ...]) -> list[Revision]:
    """The revisions of ``chain`` not yet applied to a database at ``heads``, in upgrade order."""
    script = ScriptDirectory(str(versions[0].parent), version_locations=[str(location) for location in versions])
    applied: set[str] = set()
    for head in heads:
        try:
            applied.update(found.revision for found in script.walk_revisions("base", head))
        except Exception as error:
            raise PlanError(
                f"the database is at revision {head}, which {', '.join(map(str, versions))} does not have: {error}"
            ) from error
    return [revision for revision in chain if revision.id not in applied]


def _sources(revision: Revision) -> _Sources:
    """The rewritten version of ``revision`` and its original, with the op reports of each."""
    style = _style(revision)
    on_disk = revision.source.encode("utf-8")
    rewritten_bytes, first = rewrite_source(on_disk, style)
    rewritten = rewritten_bytes.decode("utf-8")
    reports = list(rewrite_source(rewritten_bytes, style)[1])
    if style.helpers is not None or BLOCK_MARK in revision.source:
        # already rewritten: the original is its baseline
        original, original_path = revision.baseline, revision.baseline_path
        original_reports = list(rewrite_source(original.encode("utf-8"), style)[1]) if original is not None else []
        line_in_file: dict[int, int] | None = None
    else:
        original, original_path, original_reports = revision.source, str(revision.path), list(first)
        line_in_file = {}
        if [report.call for report in first] == [report.call for report in reports]:
            line_in_file = {after.line: before.line for before, after in zip(first, reports, strict=True)}
    return _Sources(revision, rewritten, original, original_path, reports, original_reports, line_in_file)


def _style(revision: Revision) -> Style:
    """The style to rewrite ``revision`` in: a file that imports its helpers from a shared module keeps doing so
    (it is run from disk, importing that module); others get a block of their own, so they run in memory."""
    return dataclasses.replace(style_for(revision.path), helpers=imported_helpers_module(revision.source))


@functools.lru_cache(maxsize=256)
def rewrite_source(source: bytes, style: Style) -> tuple[bytes, list[OpReport]]:
    """idempotify's rewrite of ``source``, once per source: a pending revision's is used again for drift, and a
    file already rewritten is its own rewrite."""
    return _rewrite_source(source, style)


def _in_memory(item: _Sources) -> bool:
    return item.rewritten != item.revision.source


def _walk(
    server: ScratchServer,
    live: LiveCopy,
    pending: list[_Sources],
    plans: list[RevisionPlan],
    project: ProjectEnvironment | None,
    naming_convention: dict[str, str] | None,
    chain: list[Revision],
) -> None:
    """Run the rewritten chain on one copy of the live database, the original on another; then drift."""
    rewritten_copy = server.create()
    copy_into(rewritten_copy, live)
    original_copy = server.create(template=rewritten_copy) if server.can_copy(rewritten_copy) else None
    if original_copy is None:
        original_copy = server.create()
        copy_into(original_copy, live)
    rewritten_stopped = original_stopped = ""
    for item, plan in zip(pending, plans, strict=True):
        label = f"{item.revision.path} (rewritten)" if plan.rewritten_in_memory else str(item.revision.path)
        if rewritten_stopped:
            plan.ops = _ops(item, Recording(), live, stopped=rewritten_stopped)
        else:
            recorded = run_recorded(rewritten_copy, item.rewritten, label, project, naming_convention)
            plan.ops = _ops(item, recorded, live)
            if recorded.error is not None:
                plan.rewritten_error = recorded.error
                rewritten_stopped = f"the rewritten chain fails at {item.revision.id}"
        if original_stopped:
            plan.original = "not reached" if original_stopped == "fails" else "not known"
            continue
        if item.original is None:
            plan.original, original_stopped = "not known", "not known"
            continue
        recorded = run_recorded(original_copy, item.original, item.original_path, project, naming_convention)
        plan.original_path = item.original_path
        if recorded.error is not None:
            plan.original, plan.original_error, original_stopped = "fails", recorded.error, "fails"
            plan.original_line = recorded.error_line
            line = recorded.error_line or -1
            calls = {report.line: report.call for report in item.original_reports}
            plan.original_call = calls.get(line, recorded.invoked.get(line, ""))
    skipped = [op for plan in plans for op in plan.ops if op.action == SKIP and op.names]
    if skipped:
        _drift(server, rewritten_copy, skipped, project, naming_convention, chain)


def _ops(item: _Sources, recorded: Recording, live: LiveCopy, stopped: str = "") -> list[OpPlan]:
    """The ops of the rewritten revision's ``upgrade()`` (and any other op it invoked), with what each did."""
    first, last = _upgrade_span(item.rewritten)
    reports = {report.line: report for report in item.reports if first <= report.line <= last}
    lines = sorted(reports.keys() | recorded.invoked.keys())
    ops = []
    previous = 0
    for line in lines:
        report = reports.get(line)
        call = report.call if report is not None else f"op ({recorded.invoked[line]})"
        unguarded = report is not None and report.outcome is Outcome.UNGUARDED
        in_file = line if item.line_in_file is None else item.line_in_file.get(line)
        op = OpPlan(in_file, line, call, NOT_RUN)
        logged = [entry for entry in recorded.logged if previous < entry.line <= line]
        if stopped:
            op.action, op.detail = NOT_REACHED, stopped
        elif recorded.error_line == line:
            op.action, op.detail = FAILS, recorded.error or ""
        elif line in recorded.invoked:
            op.action = UNGUARDED if unguarded else RUN
            op.detail = report.reason if unguarded and report is not None else ""
        elif recorded.error is not None and line > (recorded.error_line or 0):
            op.action = NOT_REACHED
        elif logged and not unguarded:
            op.action, op.detail = SKIP, "; ".join(entry.message for entry in logged)
            op.names = tuple(name for entry in logged for name in entry.names)
        touched = (set(op.names) | recorded.inserted.get(line, set())) & set(live.rows_not_copied)
        if touched:
            op.approximate = f"rows of {', '.join(sorted(touched))} not copied (over the row limit, or refer to such)"
        ops.append(op)
        previous = line
    return ops


def _upgrade_span(source: str) -> tuple[int, int]:
    """The lines of ``def upgrade()`` in ``source``."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "upgrade":
            return node.lineno, node.end_lineno or node.lineno
    return 0, 0


def _drift(
    server: ScratchServer,
    copy: Scratch,
    skipped: list[OpPlan],
    project: ProjectEnvironment | None,
    naming_convention: dict[str, str] | None,
    chain: list[Revision],
) -> None:
    """Describe each skipped op's object on the copy and on a fresh database that ran the whole rewritten chain."""
    fresh = server.create()
    for revision in chain:
        source = rewrite_source(revision.source.encode("utf-8"), _style(revision))[0].decode("utf-8")
        recorded = run_recorded(fresh, source, f"{revision.path} (fresh)", project, naming_convention)
        if recorded.error is not None:
            for op in skipped:
                op.detail += f" (drift not checked: the chain fails on an empty database at {revision.id})"
            return
    for op in skipped:
        described = functools.partial(describe, names=op.names)
        op.drift = drift(fresh.database.run(described), copy.database.run(described))


def _safe(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)
