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

Copies of a state are cheap on SQLite (file copy) and PostgreSQL (template);
on MariaDB they are rebuilt by replaying the chain.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field

import sqlalchemy as sa

from codemod.guards import is_helper_name
from codemod.verify.causes import op_cause
from codemod.verify.chain import Revision
from codemod.verify.database import Scratch, ScratchServer
from codemod.verify.environment import EnvPyRefused, ProjectEnvironment
from codemod.verify.execution import Crash, load_migration, offline_sql_or_error, run_on_connection, where
from codemod.verify.schema import Snapshot, differences, rows_of, schema_only, snapshot_of

NO_DOWNGRADE = "no downgrade: it runs no op"
SCENARIOS = ("upgrade", "equivalence", "re-run", "crash", "downgrade", "offline")


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


def _statements(sql: str) -> list[str]:
    """Offline SQL as a sorted list of statements: SQLAlchemy emits a table's indexes from a set."""
    return sorted(statement.strip() for statement in sql.split(";\n") if statement.strip())


class _Failed(Exception):
    """A run failed; ``detail`` says where and why, ``line`` is the revision file's line it failed at."""

    def __init__(self, detail: str, line: int | None = None, in_guard: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.line = line
        self.in_guard = in_guard


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
        self.inserted: set[str] = set()  # the tables the revision being verified inserts rows into
        self.original_history: History = []

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
        with self._copy(self.disk, self.disk_history) as pre:
            try:
                self._run(self.disk, revision, revision.source, "upgrade")
            except _Failed:
                self._recover(revision, pre)
                return
            self.disk_history.append((revision, revision.source))
        if self._run_original(revision):
            self._resync_original()

    def _run_original(self, revision: Revision) -> str:
        """Upgrade the baseline's database by the baseline of ``revision``; the error, or ""."""
        try:
            self._run(self.original, revision, revision.original, "upgrade")
        except _Failed as failure:
            return failure.detail
        self.original_history.append((revision, revision.original))
        return ""

    def _resync_original(self) -> None:
        """The baseline's database becomes a copy of the chain's."""
        self.server.drop(self.original)
        self.original = self._clone(self.disk, self.disk_history)
        self.original_history = list(self.disk_history)

    def _recover(self, revision: Revision, pre: Scratch) -> str | None:
        """After the revision's upgrade failed on the chain's database: the baseline's error ("" when it runs;
        None without a baseline). The chain's database goes to the baseline's state at the revision, or, when
        the baseline fails too, back to the state before it, and the baseline's follows."""
        baseline_error = self._run_original(revision) if revision.baseline is not None else None
        self.server.drop(self.disk)
        if baseline_error == "":
            self.disk = self._clone(self.original, self.original_history)
            self.disk_history = list(self.original_history)
        else:
            self.disk = self._clone(pre, self.disk_history)
            self.disk_history.append((revision, None))
            self._resync_original()
        return baseline_error

    def _verify_revision(self, report: RevisionReport) -> None:
        revision = report.revision
        disk = self.disk
        before = self._snapshot(disk)
        with self._copy(disk, self.disk_history) as pre:
            try:
                inserted: set[str] = set()
                ops = self._run(disk, revision, revision.source, "upgrade", inserted=inserted)
            except _Failed as failure:
                self._upgrade_failed(report, failure, pre)
                return
            replay_before = list(self.disk_history)
            self.disk_history.append((revision, revision.source))
            report.results["upgrade"] = Result("ok")
            self.inserted = inserted
            expected = self._snapshot(disk, inserted)
            baseline_error = self._run_original(revision)
            if baseline_error:
                self._resync_original()
                detail = f"the baseline fails to upgrade here, the revision on disk does not: {baseline_error}"
                report.results["equivalence"] = Result("warn", detail, "baseline")
            else:
                report.results["equivalence"] = self._equivalence(
                    revision, self._snapshot(self.original, inserted), expected
                )
            with self._copy(disk, self.disk_history) as again:
                report.results["re-run"] = self._rerun(again, revision, expected)
                if report.results["re-run"].status == "ok":  # again holds the revision's result: one copy fewer
                    report.results["downgrade"] = self._downgrade(revision, before, baseline_error, again)
            crashing = revision.source if baseline_error else revision.original
            report.results["crash"] = self._crash(pre, replay_before, revision, crashing, ops, expected)
        if "downgrade" not in report.results:
            report.results["downgrade"] = self._downgrade(revision, before, baseline_error)
        report.results["offline"] = self._offline(revision)
        report.results = {name: report.results[name] for name in SCENARIOS}

    def _upgrade_failed(self, report: RevisionReport, failure: _Failed, pre: Scratch) -> None:
        """The revision's upgrade fails: say whose fault it is, then go on from the baseline's state."""
        revision = report.revision
        baseline_error = self._recover(revision, pre)
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
        return scratch.database.run(lambda connection: snapshot_of(connection) | rows_of(connection, inserted))

    def _equivalence(self, revision: Revision, original: Snapshot, actual: Snapshot) -> Result:
        if revision.baseline is None:
            return Result("not checked", "no baseline (no --baseline, and the file is not a modified git file)")
        diff = differences(original, actual)
        if diff:
            return Result(
                "fail", f"{revision.path.name}: schema differs from the baseline's: " + "; ".join(diff), "other"
            )
        return Result("ok")

    def _rerun(self, scratch: Scratch, revision: Revision, expected: Snapshot) -> Result:
        try:
            self._run(scratch, revision, revision.source, "upgrade")
        except _Failed as failure:
            return self._failure(revision, failure, "upgrade run again: ", self._original_rerun(revision))
        diff = differences(expected, self._snapshot(scratch, self.inserted))
        if diff:
            return Result("fail", "upgrade run again changed the schema: " + "; ".join(diff), "other")
        return Result("ok")

    def _original_rerun(self, revision: Revision) -> str:
        """Whether the original's upgrade, run again on its own result, fails too (said with a re-run failure)."""
        if revision.baseline is None or revision.baseline == revision.source:
            return ""
        with self._copy(self.original, self.original_history) as scratch:
            try:
                self._run(scratch, revision, revision.original, "upgrade")
            except _Failed as failure:
                return f" (the original fails the same way: {failure.detail})"
        return " (the original's re-run succeeds)"

    def _crash(
        self, pre: Scratch, replay: History, revision: Revision, original: str, ops: int, expected: Snapshot
    ) -> Result:
        if ops < 2:
            return Result("not checked", "fewer than two ops: nothing to stop half-way")
        for crash_after in range(1, ops):
            with self._copy(pre, replay) as scratch:
                with suppress(Crash, _Failed):  # stopped either way
                    self._run(scratch, revision, original, "upgrade", crash_after=crash_after)
                prefix = f"after a crash after op {crash_after} of {ops}: "
                try:
                    self._run(scratch, revision, revision.source, "upgrade")
                except _Failed as failure:
                    return self._failure(revision, failure, prefix)
                diff = differences(expected, self._snapshot(scratch, self.inserted))
                if diff:
                    return Result("fail", prefix + "; ".join(diff), "other")
        return Result("ok", f"stopped after each of ops 1..{ops - 1}, then completed")

    def _downgrade(
        self, revision: Revision, before: Snapshot, baseline_error: str, start: Scratch | None = None
    ) -> Result:
        """Downgrade twice from the revision's result (``start``, a copy of it, else a new copy of the chain's)."""
        # An unchanged file is its own original: nothing to compare, and its failures are the chain's.
        unchanged = revision.baseline is not None and revision.baseline == revision.source
        copied = nullcontext(start) if start is not None else self._copy(self.disk, self.disk_history)
        with copied as scratch:
            baseline: Snapshot | None = None
            original_fails = False
            if unchanged:
                baseline_error = baseline_error or "the file is unchanged"
            elif not baseline_error:
                with self._copy(self.original, self.original_history) as reference:
                    try:
                        self._run(reference, revision, revision.original, "downgrade")
                        baseline = self._snapshot(reference, self.inserted)
                    except _Failed as failure:
                        baseline_error, original_fails = f"the original's downgrade fails: {failure.detail}", True
            try:
                ops = self._run(scratch, revision, revision.source, "downgrade")
                first = self._snapshot(scratch, self.inserted)
            except _Failed as failure:
                if original_fails:
                    return Result("warn", f"{baseline_error}; so does this one: {failure.detail}", "baseline")
                if unchanged:
                    detail = f"the downgrade of this unchanged file fails: {failure.detail}"
                    return Result("warn", detail, "baseline")
                return self._failure(revision, failure, "downgrade: ")
            if ops == 0:
                return Result("not checked", NO_DOWNGRADE)
            try:
                self._run(scratch, revision, revision.source, "downgrade")
            except _Failed as failure:
                return self._failure(revision, failure, "downgrade run again: ")
            diff = differences(first, self._snapshot(scratch, self.inserted))
            if diff:
                return Result("fail", "downgrade run again changed the schema: " + "; ".join(diff), "other")
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
            original = self._sql(revision, revision.original, function)
            rewritten = self._sql(revision, revision.source, function)
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
        inserted: set[str] | None = None,
    ) -> int:
        """Run ``function`` of ``source`` on ``scratch``: through the project's env.py, else the bare harness."""
        # Errors in the baseline name it, since its line numbers are not those of the file on disk.
        path = revision.path if source == revision.source else revision.baseline_path or f"{revision.path} (baseline)"
        project = self.project

        def work(connection: sa.Connection) -> int:
            module = load_migration(source, path)
            if project is not None:
                return project.run(connection, module, function, crash_after, inserted)
            return run_on_connection(
                connection, module, function, self.naming_convention, crash_after, self.x_arguments, inserted
            )

        try:
            return scratch.database.run(work, autocommit=crash_after is not None)
        except (Crash, EnvPyRefused):
            raise
        except Exception as error:  # any failure of the migration is a finding
            frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == str(path)]
            detail = f"{where(error, path)}: {type(error).__name__}: {error}".splitlines()[0]
            line = frames[-1].lineno if frames else None
            in_guard = any(is_helper_name(frame.name) for frame in frames)
            raise _Failed(detail, line, in_guard) from error

    @contextmanager
    def _copy(self, state: Scratch, replay: History) -> Iterator[Scratch]:
        """A scratch copy of ``state``, dropped afterwards."""
        scratch = self._clone(state, replay)
        try:
            yield scratch
        finally:
            self.server.drop(scratch)

    def _clone(self, state: Scratch, replay: History) -> Scratch:
        """A copy of ``state``: copied where cheap, else rebuilt by replaying what built it."""
        if self.server.can_copy(state):
            return self.server.create(template=state)
        scratch = self._fresh()
        for revision, source in replay:
            if source is not None:
                self._run(scratch, revision, source, "upgrade")
        return scratch
