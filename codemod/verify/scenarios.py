"""The scenarios ``verify`` runs for each revision, walking the chain once.

Two databases follow the chain: one runs the files on disk, the other their
baselines. At each revision:

- equivalence: both reach the same schema;
- re-run: the revision's upgrade, run again on its own result, changes nothing;
- crash recovery: the original revision stopped after each of its first k ops
  (every op committed at once, as on MySQL), then the revision on disk run in
  full, reaches the same schema;
- downgrade: run twice, it ends where the baseline's downgrade ends, and it
  restores the schema from before the revision (or says what it leaves);
- offline: ``--sql`` output of the baseline and of the file on disk are equal.

On PostgreSQL and SQLite (sync drivers) both databases are held in one
transaction per revision and each scenario runs in a savepoint, rolled back
(the revision's upgrade excepted: its savepoint is kept, the crash points having
run before it); a revision that leaves the transaction (``may_leave_transaction``,
or ``LeftTransaction`` at run time: it commits, or reaches the database through a
connection of its own) is verified on copies: a SQLite file copy, a
PostgreSQL template, MariaDB's tables copied (or the chain replayed where a
database holds views, triggers or routines).
"""

from __future__ import annotations

import ast
import re
import traceback
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from functools import lru_cache

import sqlalchemy as sa

from codemod.guards import is_helper_name
from codemod.interrupts import carries_interrupt
from codemod.verify.causes import line_naming, op_cause, rows_cause
from codemod.verify.chain import Revision
from codemod.verify.database import EACH_STATEMENT_COMMITS, LeftTransaction, SavepointBlock, Scratch, ScratchServer
from codemod.verify.environment import EnvPyRefused, ProjectEnvironment
from codemod.verify.execution import Crash, Inserted, load_migration, offline_sql_or_error, run_on_connection, where
from codemod.verify.schema import (
    ROWS,
    Snapshot,
    differences,
    made_at_run_time,
    rows_of,
    rows_only_of,
    schema_only,
    snapshot_of,
)

NO_DOWNGRADE = "no downgrade: none, or one that runs no op"
SCENARIOS = ("upgrade", "equivalence", "re-run", "crash", "downgrade", "offline")
# What leaves a transaction (or cannot run in one), named in a revision or its baseline: such a revision is
# verified on copies. A run that leaves it all the same is caught (LeftTransaction) and run again on copies.
_LEAVES_TRANSACTION = re.compile(
    r"autocommit_block|\bconcurrently\b|\badd\s+value\b|\bcommit\b|\bvacuum\b|\bpragma\b", re.IGNORECASE
)


@lru_cache(maxsize=4)
def _parsed(source: str) -> ast.Module:
    """The tree of ``source`` (not to be changed): a revision's source is read by ``may_leave_transaction``, then by
    ``_defines``; a guarded revision, its helpers included, takes milliseconds to parse."""
    return ast.parse(source)


def may_leave_transaction(source: str) -> bool:
    """Whether ``source`` names what leaves a transaction, in its code or its strings (SQL), outside its module
    docstring and idempotify's generated helpers (they leave none; their docstrings name CONCURRENTLY)."""
    try:
        tree = _parsed(source)
    except SyntaxError:
        return True
    docstring = ast.get_docstring(tree, clean=False)
    nodes: list[ast.AST] = [tree]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and is_helper_name(node.name):
            continue
        word = {ast.Constant: "value", ast.Attribute: "attr", ast.Name: "id"}.get(type(node))
        text = getattr(node, word) if word else None
        if isinstance(text, str) and text != docstring and _LEAVES_TRANSACTION.search(text):
            return True
        nodes.extend(ast.iter_child_nodes(node))
    return False


@dataclass
class Result:
    """One scenario for one revision: ``ok``, ``fail``, ``warn``, ``not checked`` or ``not run``.

    A failure carries its ``cause``: ``guard`` (an op the rewrite guarded, or a
    guard itself), ``unguarded`` (an op the rewrite left unguarded, with its
    reason), ``baseline`` (the original fails the same way) or ``other``.
    """

    status: str
    detail: str = ""
    cause: str = ""


@dataclass
class RevisionReport:
    revision: Revision
    results: dict[str, Result] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(result.status == "fail" for result in self.results.values())


def _defines(source: str, function: str) -> bool:
    """Whether ``source`` defines ``function`` at its top level (a file that does not parse is left to its run)."""
    try:
        tree = _parsed(source)
    except SyntaxError:
        return True
    return any(isinstance(node, ast.FunctionDef) and node.name == function for node in tree.body)


def _statements(sql: str) -> list[str]:
    """Offline SQL as a sorted list of statements: SQLAlchemy emits a table's indexes from a set."""
    return sorted(statement.strip() for statement in sql.split(";\n") if statement.strip())


def _ran_again(function: str, diff: list[str]) -> str:
    """How a second run of ``function`` that left ``diff`` is said: it changed rows, or the schema."""
    changed = "rows" if all(difference.startswith(ROWS) for difference in diff) else "the schema"
    return f"{function} run again changed {changed}: "


def _crashed(crash_after: int, ops: int) -> str:
    return f"after a crash after op {crash_after} of {ops}: "


# One crash point's outcome: the state it reached, the tables whose rows that state holds and what the run of the
# file on disk inserted (its lines), or its failure.
_CrashState = tuple[Snapshot, frozenset[str], Inserted] | Result


@dataclass
class _CrashStates:
    """The crash points run before the trial (held databases): as many as the baseline's ops."""

    ops: int
    states: list[_CrashState]

    def fit(self, ops: int, inserted: Inserted) -> bool:
        """Whether they are the crash points of a trial that ran ``ops`` ops and inserted into ``inserted``:
        as many, each with the rows of those tables."""
        return self.ops == ops and all(
            isinstance(state, Result) or inserted.keys() <= state[1] for state in self.states
        )


class _TrialFailed(Exception):
    """The trial's upgrade failed on a held database: everything the revision ran is rolled back."""

    def __init__(self, failure: _Failed) -> None:
        super().__init__(failure.detail)
        self.failure = failure


class _Failed(Exception):
    """A run failed; ``detail`` says where and why, ``line`` is the revision file's line it failed at, ``error``
    the error alone (scratch database names left out): what two runs that fail the same way share."""

    def __init__(self, detail: str, line: int | None = None, in_guard: bool = False, error: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.line = line
        self.in_guard = in_guard
        self.error = _SCRATCH_NAME.sub("<scratch>", error)


_SCRATCH_NAME = re.compile(r"idempotify_scratch_\w+")


def _as_the_original_fails(ours: _Failed, original: _Failed) -> tuple[bool, str]:
    """Whether the original fails as ``ours`` does, and the words that say how it fails."""
    if original.error == ours.error:
        return True, f"the original fails the same way: {original.detail}"
    return False, f"the original fails too, otherwise: {original.detail}"


# What brought a scratch database to its state: each revision with the source run for it (None: none ran).
History = list[tuple[Revision, "str | None"]]


class ChainVerifier:
    """Walks a chain on scratch databases and reports every scenario of every revision.

    A revision whose upgrade fails does not end the walk: the databases are
    brought to the baseline's state at that revision (or left before it when
    the baseline fails too) and the next revision is verified from there.
    """

    def __init__(
        self,
        server: ScratchServer,
        naming_convention: dict[str, str] | None = None,
        x_arguments: Sequence[str] = (),
        initial_schema: sa.MetaData | None = None,
        project: ProjectEnvironment | None = None,
    ) -> None:
        self.server = server
        self.project = project
        self.naming_convention = naming_convention
        self.x_arguments = tuple(x_arguments)
        self.initial_schema = initial_schema
        self.disk_history: History = []
        self.inserted: Inserted = {}  # the tables the revision being verified inserts rows into
        self.original_history: History = []
        self._transactions_off = False  # set once env.py is seen to run revisions on a connection of its own
        # The chain's database as a kept trial left it: its name, its runs then, its schema (the next before).
        self._kept: tuple[str, int, Snapshot] | None = None

    def verify(
        self,
        chain: list[Revision],
        progress: Callable[[Revision], None] | None = None,
        selected: Collection[str] | None = None,
        done: Callable[[RevisionReport], None] | None = None,
    ) -> list[RevisionReport]:
        """Reports for the revisions of ``chain`` (those in ``selected``, if given; the others only run)."""
        reports = []
        self.disk, self.original = self._fresh(), self._fresh()
        last = len(chain) - 1
        if selected is not None:
            last = max((index for index, revision in enumerate(chain) if revision.id in selected), default=-1)
        for revision in chain[: last + 1]:
            if selected is not None and revision.id not in selected:
                self._advance(revision)
                continue
            if progress is not None:
                progress(revision)
            report = RevisionReport(revision)
            self._verify_revision(report)
            if report.results["equivalence"].status == "fail":
                # Compare what follows from here on, rather than report this difference again and again.
                self._resync_original()
            reports.append(report)
            if done is not None:
                done(report)
        return reports

    def _advance(self, revision: Revision) -> None:
        """Run a revision outside the range on both databases, as a deploy would have."""
        if self._holds(revision):
            try:
                self._advance_on(revision, held=True)
                return
            except LeftTransaction as left:
                self._left(left)
        self._advance_on(revision, held=False)

    def _advance_on(self, revision: Revision, *, held: bool) -> None:
        """``_advance`` in a transaction on the held database (a failure rolls back), else on a copy that
        becomes the chain's database when the revision runs."""
        try:
            if held:
                with self.disk.database.held():
                    self._run(self.disk, revision, revision.source, "upgrade")
            else:
                trial = self._clone(self.disk, self.disk_history)
                try:
                    self._run(trial, revision, revision.source, "upgrade")
                except _Failed:
                    self.server.drop(trial)
                    raise
                self.server.drop(self.disk)
                self.disk = trial
        except _Failed:
            self._recover(revision)
            return
        self.disk_history.append((revision, revision.source))
        if self._run_original(revision):
            self._resync_original()

    def _holds(self, revision: Revision) -> bool:
        """Whether ``revision`` is verified in transactions, rolled back, on the two databases held (not on
        copies): where DDL is transactional, unless the revision or env.py may leave the transaction."""
        return (
            not self._transactions_off
            and self.disk.database.can_hold
            and not any(may_leave_transaction(source) for source in {revision.source, revision.original})
        )

    def _left(self, left: LeftTransaction) -> None:
        """A run left the transaction it was held in: what it committed is undone by rebuilding the databases,
        and the revision runs again on copies. After a commit no scan of the text foresaw (env.py may commit
        every run), or an env.py with a connection of its own, the rest of the chain runs on copies too."""
        if left.every_revision or left.committed:
            self._transactions_off = True
        if left.committed:
            for name, history in (("disk", self.disk_history), ("original", self.original_history)):
                self.server.drop(getattr(self, name))
                setattr(self, name, self._replay(history))

    def _run_original(self, revision: Revision) -> str:
        """Upgrade the baseline's database by the baseline of ``revision``; the error, or ""."""
        try:
            self._upgrade_original(revision)
        except _Failed as failure:
            return failure.detail
        return ""

    def _upgrade_original(self, revision: Revision, inserted: Inserted | None = None) -> int:
        """``_run_original``, raising its failure; the number of ops it ran."""
        ops = self._run(self.original, revision, revision.original, "upgrade", inserted=inserted)
        self.original_history.append((revision, revision.original))
        return ops

    def _resync_original(self) -> None:
        """The baseline's database becomes a copy of the chain's."""
        self.server.drop(self.original)
        self.original = self._clone(self.disk, self.disk_history)
        self.original_history = list(self.disk_history)

    def _recover(self, revision: Revision) -> str | None:
        """After the revision's upgrade failed (the chain's database is still before it): the baseline's error
        ("" when it runs; None without a baseline). The chain's database goes to the baseline's state at the
        revision, or, when the baseline fails too, stays before it, and the baseline's follows."""
        baseline_error = self._run_original(revision) if revision.baseline is not None else None
        if baseline_error == "":
            self.server.drop(self.disk)
            self.disk = self._clone(self.original, self.original_history)
            self.disk_history = list(self.original_history)
        else:
            self.disk_history.append((revision, None))
            self._resync_original()
        return baseline_error

    def _verify_revision(self, report: RevisionReport) -> None:
        """Every scenario of the revision: in transactions on the held databases where it can, else on copies."""
        if self._holds(report.revision):
            try:
                self._scenarios(report, held=True)
                return
            except LeftTransaction as left:
                self._left(left)
                report.results.clear()
        self._scenarios(report, held=False)

    def _scenarios(self, report: RevisionReport, *, held: bool) -> None:
        """The revision is tried on ``trial`` (a copy of the chain's database, or a savepoint of it when
        ``held``), where its result is re-run and downgraded; the crash scenarios start from the chain's
        database, still before the revision; then the chain's database moves past it (the trial becomes it,
        or, held, the trial's savepoint is kept).

        Held, the baseline's upgrade and the crash points run first, while the chain's database is still
        before the revision (``_crash_first``), so that the trial's result can be kept rather than rolled back
        and made again. When the trial does not run as many ops as the baseline, or inserts into a table whose
        rows the crash points did not read, its savepoint is rolled back and the crash points run again after
        it, as on copies, followed by the revision's upgrade."""
        revision = report.revision
        failure: _Failed | None = None
        baseline_error = ""
        holding = self._holding() if held else nullcontext()
        try:
            with holding:
                before = self._schema_before()
                early = self._crash_first(revision) if held else None
                trial = self._clone(self.disk, self.disk_history) if not held else self.disk
                try:
                    with self.disk.database.savepoint() if held else nullcontext(SavepointBlock()) as block:
                        ops, expected, baseline_error = self._trial(report, trial, before, early, block)
                except _Failed as failed:
                    if held:  # the baseline's upgrade ran first: rolled back with the rest
                        raise _TrialFailed(failed) from failed
                    failure = failed
                    self.server.drop(trial)
                if failure is None:
                    if "crash" not in report.results:
                        crashing = revision.source if baseline_error else revision.original
                        states = self._crash_states(self.disk, revision, crashing, ops, self.inserted)
                        report.results["crash"] = self._crash_result(revision, states, ops, expected)
                        if held:
                            try:
                                self._run(self.disk, revision, revision.source, "upgrade")
                            except _Failed as failed:  # it did on the trial: a revision that fails one run in two
                                failure = failed
                    if not held:
                        self.server.drop(self.disk)
                        self.disk = trial
                if failure is None:
                    self.disk_history.append((revision, revision.source))
                    if "downgrade" not in report.results:
                        report.results["downgrade"] = self._downgrade(revision, before, baseline_error)
            if block.keep:  # all that ran on it since the trial was rolled back: it is as the trial left it
                self._kept = (self.disk.name, self.disk.database.runs, schema_only(expected))
        except _TrialFailed as trial_failed:
            failure = trial_failed.failure
        if failure is not None:
            self._upgrade_failed(report, failure)
            return
        report.results["offline"] = self._offline(revision)
        report.results = {name: report.results[name] for name in SCENARIOS}

    def _trial(
        self,
        report: RevisionReport,
        trial: Scratch,
        before: Snapshot,
        early: _CrashStates | None,
        block: SavepointBlock,
    ) -> tuple[int, Snapshot, str]:
        """In the trial's ``block``: the upgrade, equivalence, re-run and downgrade, and the crash scenario from
        the ``early`` crash points when they fit (the block then keeps the trial's result). The trial's ops,
        its schema, and the baseline's error ("" when it runs)."""
        revision = report.revision
        inserted: Inserted = {}
        ops = self._run(trial, revision, revision.source, "upgrade", inserted=inserted)
        report.results["upgrade"] = Result("ok")
        self.inserted = inserted
        expected = self._snapshot(trial, inserted)
        baseline_error = self._run_original(revision) if early is None else ""
        report.results["equivalence"] = self._baseline_equivalence(revision, baseline_error, expected)
        after = [*self.disk_history, (revision, revision.source)]
        if baseline_error:
            self._resync_to(trial, after)
        with self._copy(trial, after) as again:
            report.results["re-run"] = self._rerun(again, revision, expected)
            if report.results["re-run"].status == "ok":  # again holds the result: one copy fewer
                report.results["downgrade"] = self._downgrade(revision, before, baseline_error, again)
        if early is not None and early.fit(ops, inserted):
            report.results["crash"] = self._crash_result(revision, early.states, ops, expected)
            block.keep = True
        return ops, expected, baseline_error

    def _schema_before(self) -> Snapshot:
        """The chain's database's schema: as the last revision's kept trial was read, when nothing has run on
        the database since (the schema read again would be the same), else read."""
        kept, self._kept = self._kept, None
        if kept is not None and kept[:2] == (self.disk.name, self.disk.database.runs):
            return kept[2]
        return self._snapshot(self.disk)

    def _crash_first(self, revision: Revision) -> _CrashStates:
        """Held, before the trial: the baseline's upgrade on its database (a baseline that fails leaves the
        transaction: its database then follows the chain's copy), then the crash points, as many as the
        baseline's ops, reading the rows of the tables the baseline and the crash runs insert into."""
        inserted: Inserted = {}
        try:
            ops = self._upgrade_original(revision, inserted)
        except _Failed as failure:
            raise LeftTransaction("the baseline fails here: its database follows the chain's copy") from failure
        return _CrashStates(ops, self._crash_states(self.disk, revision, revision.original, ops, inserted))

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """Both databases held, each in one transaction; rolled back, what the histories gained is forgotten."""
        histories = list(self.disk_history), list(self.original_history)
        try:
            with self.disk.database.held(), self.original.database.held():
                yield
        except BaseException:
            self.disk_history, self.original_history = histories
            raise

    def _baseline_equivalence(self, revision: Revision, baseline_error: str, expected: Snapshot) -> Result:
        if baseline_error:
            detail = f"the baseline fails to upgrade here, the revision on disk does not: {baseline_error}"
            return Result("warn", detail, "baseline")
        return self._equivalence(revision, self._snapshot(self.original, self.inserted), expected)

    def _resync_to(self, state: Scratch, history: History) -> None:
        """The baseline's database becomes a copy of ``state``."""
        self.server.drop(self.original)
        self.original = self._clone(state, history)
        self.original_history = list(history)

    def _upgrade_failed(self, report: RevisionReport, failure: _Failed) -> None:
        """The revision's upgrade fails: say whose fault it is, then go on from the baseline's state."""
        revision = report.revision
        baseline_error = self._recover(revision)
        report.results = {name: Result("not run", "its upgrade fails") for name in SCENARIOS}
        if baseline_error:
            detail = f"{failure.detail} (the baseline fails too: {baseline_error})"
            report.results["upgrade"] = Result("fail", detail, "baseline")
        elif baseline_error == "":
            report.results["upgrade"] = self._failure(revision, failure, suffix=" (the baseline's upgrade succeeds)")
        else:
            report.results["upgrade"] = self._failure(revision, failure)

    def _failure(self, revision: Revision, failure: _Failed, prefix: str = "", suffix: str = "") -> Result:
        """A failing scenario, with its cause read off the op it failed at."""
        cause, why = op_cause(revision.source, failure.line, in_guard=failure.in_guard)
        return Result("fail", prefix + failure.detail + suffix + why, cause)

    def _fresh(self) -> Scratch:
        """A new database holding the initial schema, if the chain starts from one."""
        scratch = self.server.create()
        if self.initial_schema is not None:
            scratch.database.run(self.initial_schema.create_all)
        return scratch

    @staticmethod
    def _snapshot(scratch: Scratch, inserted: Collection[str] = ()) -> Snapshot:
        """The schema, and the rows of the tables in ``inserted`` (those the revision inserts into)."""
        return scratch.database.read(lambda connection: snapshot_of(connection) | rows_of(connection, inserted))

    def _equivalence(self, revision: Revision, original: Snapshot, actual: Snapshot) -> Result:
        if revision.baseline is None:
            return Result("not checked", "no baseline (no --baseline, and the file is not a modified git file)")
        diff = differences(original, actual)
        if not diff:
            return Result("ok")
        # The op to blame is the first to name a table that differs ("t.columns: ...", "rows of t: ...").
        tables = {re.split(r"[.:]", line.removeprefix(ROWS), maxsplit=1)[0] for line in diff}
        line = line_naming(revision.source, tables)
        cause, why = op_cause(revision.source, line)
        place = f"{revision.path.name}:{line}" if line else revision.path.name
        return Result("fail", f"{place}: schema differs from the baseline's: " + "; ".join(diff) + why, cause)

    def _rerun(self, scratch: Scratch, revision: Revision, expected: Snapshot) -> Result:
        inserted: Inserted = {}
        try:
            self._run(scratch, revision, revision.source, "upgrade", inserted=inserted)
        except _Failed as failure:
            same, how = self._original_rerun(revision, failure)
            result = self._failure(revision, failure, "upgrade run again: ", how)
            if same and result.cause == "other":  # not at an op: the file as the original had it fails alike
                return Result("warn", result.detail, "baseline")
            return result
        diff = differences(expected, self._snapshot(scratch, self.inserted))
        if diff:
            return self._changed(revision, _ran_again("upgrade", diff), diff, inserted)
        return Result("ok")

    @staticmethod
    def _changed(revision: Revision, what: str, diff: list[str], inserted: Inserted) -> Result:
        """A run of the revision on disk that left ``diff``: a change of rows alone is blamed on the ops that
        inserted into them as it ran (``rows_cause``), anything else is ``other``."""
        cause, line, why = rows_cause(revision.source, diff, inserted)
        place = f"{revision.path.name}:{line}: " if line else ""
        return Result("fail", place + what + "; ".join(diff) + why, cause)

    def _original_rerun(self, revision: Revision, ours: _Failed) -> tuple[bool, str]:
        """Whether the original's upgrade, run again on its own result, fails as ``ours`` does, and how it fares
        (said with a re-run failure)."""
        if revision.baseline is None or revision.baseline == revision.source:
            return False, ""
        with self._copy(self.original, self.original_history) as scratch:
            try:
                self._run(scratch, revision, revision.original, "upgrade")
            except _Failed as failure:
                same, how = _as_the_original_fails(ours, failure)
                return same, f" ({how})"
        return False, " (the original's re-run succeeds)"

    def _crash_states(
        self, pre: Scratch, revision: Revision, original: str, ops: int, inserted: Collection[str]
    ) -> list[_CrashState]:
        """The original stopped after each of its first k ops, then the file on disk run in full, from ``pre``
        (the chain's database before the revision): the state each reaches, with the rows of ``inserted`` and
        of the tables its runs insert into; a run of the file on disk that fails ends the list."""
        states: list[_CrashState] = []
        for crash_after in range(1, ops):
            with self._copy(pre, self.disk_history) as scratch:
                crashed: Inserted = {}
                with suppress(Crash, _Failed):  # stopped either way
                    self._run(scratch, revision, original, "upgrade", crash_after=crash_after, inserted=crashed)
                completed: Inserted = {}
                try:
                    self._run(scratch, revision, revision.source, "upgrade", inserted=completed)
                except _Failed as failure:
                    states.append(self._failure(revision, failure, _crashed(crash_after, ops)))
                    break
                rows = frozenset([*inserted, *crashed, *completed])
                states.append((self._snapshot(scratch, rows), rows, completed))
        return states

    def _crash_result(self, revision: Revision, states: list[_CrashState], ops: int, expected: Snapshot) -> Result:
        """The crash scenario: each state against the trial's (``expected``), on the rows of the tables the
        trial inserts into, the first difference or failure reported."""
        if ops < 2:
            return Result("not checked", "fewer than two ops: nothing to stop half-way")
        for crash_after, state in enumerate(states, start=1):
            if isinstance(state, Result):
                return state
            diff = differences(expected, rows_only_of(state[0], self.inserted))
            if diff:
                return self._changed(revision, _crashed(crash_after, ops), diff, state[2])
        return Result("ok", f"stopped after each of ops 1..{ops - 1}, then completed")

    def _downgrade(
        self, revision: Revision, before: Snapshot, baseline_error: str, start: Scratch | None = None
    ) -> Result:
        """Downgrade twice from the revision's result (``start``, a copy of it, else a new copy of the chain's)."""
        if not _defines(revision.source, "downgrade"):  # many chains have none: said once for the chain
            return Result("not checked", NO_DOWNGRADE)
        # An unchanged file is its own original: nothing to compare, and its failures are the chain's.
        unchanged = revision.baseline is not None and revision.baseline == revision.source
        copied = nullcontext(start) if start is not None else self._copy(self.disk, self.disk_history)
        with copied as scratch:
            baseline: Snapshot | None = None
            original_failure: _Failed | None = None
            if unchanged:
                baseline_error = baseline_error or "the file is unchanged"
            elif not baseline_error:
                with self._copy(self.original, self.original_history) as reference:
                    try:
                        self._run(reference, revision, revision.original, "downgrade")
                        baseline = self._snapshot(reference, self.inserted)
                    except _Failed as failure:
                        original_failure = failure
                        baseline_error = f"the original's downgrade fails: {failure.detail}"
            try:
                ops = self._run(scratch, revision, revision.source, "downgrade")
                first = self._snapshot(scratch, self.inserted)
            except _Failed as failure:
                if original_failure is not None:
                    same, how = _as_the_original_fails(failure, original_failure)
                    if same:
                        return Result("warn", f"{how}; so does this one: {failure.detail}", "baseline")
                    return self._failure(revision, failure, "downgrade: ", f" ({how})")
                if unchanged:
                    detail = f"the downgrade of this unchanged file fails: {failure.detail}"
                    return Result("warn", detail, "baseline")
                return self._failure(revision, failure, "downgrade: ")
            if ops == 0:
                return Result("not checked", NO_DOWNGRADE)
            inserted: Inserted = {}
            try:
                self._run(scratch, revision, revision.source, "downgrade", inserted=inserted)
            except _Failed as failure:
                return self._failure(revision, failure, "downgrade run again: ")
            diff = differences(first, self._snapshot(scratch, self.inserted))
            if diff:
                return self._changed(revision, _ran_again("downgrade", diff), diff, inserted)
        if baseline is None:
            left = differences(before, schema_only(first))
            note = f"not compared with the baseline ({baseline_error})"
            if left:
                return Result("warn", f"{note}; it does not restore the schema before the revision: " + "; ".join(left))
            return Result("ok", note)
        diff = differences(baseline, first)
        if diff:
            return Result("fail", "downgrade ends elsewhere than the original's: " + "; ".join(diff), "other")
        left = differences(before, schema_only(first))
        if left:
            return Result("warn", "downgrade does not restore the schema before the revision: " + "; ".join(left))
        return Result("ok")

    def _offline(self, revision: Revision) -> Result:
        if revision.baseline is None:
            return Result("not checked", "no baseline")
        if revision.baseline == revision.source:  # SQL holding datetime.now() differs run to run: not a finding
            return Result("ok", "the file is unchanged")
        for function in ("upgrade", "downgrade"):
            original = made_at_run_time(self._sql(revision, revision.original, function))
            rewritten = made_at_run_time(self._sql(revision, revision.source, function))
            if original == rewritten:
                continue
            if _statements(original) == _statements(rewritten):
                return Result(
                    "ok", f"{function}: the same statements; the indexes a create_table emits may change order"
                )
            return Result("fail", f"{revision.path.name}: {function} --sql output differs from the baseline's", "other")
        return Result("ok")

    def _sql(self, revision: Revision, source: str, function: str) -> str:
        return offline_sql_or_error(
            source,
            self.server.dialect,
            function,
            path=revision.path,
            naming_convention=self.project.naming_convention if self.project else self.naming_convention,
            x_arguments=self.x_arguments,
        )

    def _run(
        self,
        scratch: Scratch,
        revision: Revision,
        source: str,
        function: str,
        crash_after: int | None = None,
        inserted: Inserted | None = None,
    ) -> int:
        """Run ``function`` of ``source`` on ``scratch``: through the project's env.py, else the bare harness."""
        # Errors in the baseline name it, since its line numbers are not those of the file on disk.
        path = revision.path if source == revision.source else revision.baseline_path or f"{revision.path} (baseline)"
        project = self.project

        def work(connection: sa.Connection) -> int:
            module = load_migration(source, path)
            if crash_after is not None:  # each op commits as it goes, not in a transaction env.py's SQL begins
                connection.info[EACH_STATEMENT_COMMITS] = True
            try:
                if project is not None:
                    return project.run(connection, module, function, crash_after, inserted)
                return run_on_connection(
                    connection, module, function, self.naming_convention, crash_after, self.x_arguments, inserted
                )
            finally:
                connection.info.pop(EACH_STATEMENT_COMMITS, None)

        try:
            return scratch.database.run(work, autocommit=crash_after is not None)
        except (Crash, EnvPyRefused, LeftTransaction):
            raise
        except Exception as error:  # any failure of the migration is a finding
            if carries_interrupt(error):
                raise
            frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == str(path)]
            alone = f"{type(error).__name__}: {error}".splitlines()[0]
            line = frames[-1].lineno if frames else None
            in_guard = any(is_helper_name(frame.name) for frame in frames)
            raise _Failed(f"{where(error, path)}: {alone}", line, in_guard, alone) from error

    @contextmanager
    def _copy(self, state: Scratch, replay: History) -> Iterator[Scratch]:
        """A scratch copy of ``state``, dropped afterwards; on a held database, ``state`` itself in a savepoint."""
        if state.database.is_held:
            with state.database.savepoint():
                yield state
            return
        scratch = self._clone(state, replay)
        try:
            yield scratch
        finally:
            self.server.drop(scratch)

    def _clone(self, state: Scratch, replay: History) -> Scratch:
        """A copy of ``state``: copied where cheap, else rebuilt by replaying what built it."""
        if self.server.can_copy(state):
            return self.server.create(template=state)
        return self._replay(replay)

    def _replay(self, replay: History) -> Scratch:
        """A new database built by running what built a state."""
        scratch = self._fresh()
        for revision, source in replay:
            if source is not None:
                self._run(scratch, revision, source, "upgrade")
        return scratch
