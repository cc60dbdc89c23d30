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

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import sqlalchemy as sa

from codemod.verify.chain import Revision
from codemod.verify.database import Scratch, ScratchServer
from codemod.verify.environment import EnvPyRefused, ProjectEnvironment
from codemod.verify.execution import Crash, load_migration, offline_sql_or_error, run_on_connection, where
from codemod.verify.schema import Snapshot, differences, snapshot_of

SCENARIOS = ("upgrade", "equivalence", "re-run", "crash", "downgrade", "offline")


@dataclass
class Result:
    """One scenario for one revision: ``ok``, ``fail``, ``warn``, ``not checked`` or ``not run``."""

    status: str
    detail: str = ""


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
    """A run failed; ``detail`` says where and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ChainVerifier:
    """Walks a chain on scratch databases and reports every scenario of every revision."""

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
        self.original_broken = ""

    def verify(self, chain: list[Revision], progress: Callable[[Revision], None] | None = None) -> list[RevisionReport]:
        reports = [RevisionReport(revision) for revision in chain]
        disk = self._fresh()
        original = self._fresh()
        broken = ""
        for index, report in enumerate(reports):
            if progress is not None:
                progress(report.revision)
            if broken:
                report.results = {name: Result("not run", broken) for name in SCENARIOS}
                continue
            try:
                self._verify_revision(chain, index, report, disk, original)
            except _Failed as failure:
                report.results = {name: Result("not run", "its upgrade fails") for name in SCENARIOS}
                report.results["upgrade"] = Result("fail", failure.detail)
                broken = f"{report.revision.id} fails to upgrade"
                continue
            if report.results["equivalence"].status == "fail":
                # Compare what follows from here on, rather than report this difference again and again.
                self.server.drop(original)
                original = self._clone(disk, chain[: index + 1])
        return reports

    def _verify_revision(
        self, chain: list[Revision], index: int, report: RevisionReport, disk: Scratch, original: Scratch
    ) -> None:
        revision = report.revision
        before = self._snapshot(disk)
        with self._copy(disk, chain[:index]) as pre:
            try:
                ops = self._run(disk, revision, revision.source, "upgrade")
            except _Failed as failure:
                raise _Failed(failure.detail + self._baseline_verdict(pre, chain[:index], revision)) from failure
            report.results["upgrade"] = Result("ok")
            expected = self._snapshot(disk)
            if not self.original_broken:
                try:
                    ops = self._run(original, revision, revision.original, "upgrade")
                except _Failed as failure:
                    self.original_broken = f"the baseline of {revision.id} fails to upgrade: {failure.detail}"
            if self.original_broken:
                report.results["equivalence"] = Result("not checked", self.original_broken)
            else:
                report.results["equivalence"] = self._equivalence(revision, self._snapshot(original), expected)
            with self._copy(disk, chain[: index + 1]) as again:
                report.results["re-run"] = self._rerun(again, revision, expected)
            crashing = revision.source if self.original_broken else revision.original
            report.results["crash"] = self._crash(pre, chain[:index], revision, crashing, ops, expected)
        report.results["downgrade"] = self._downgrade(chain[: index + 1], revision, disk, original, before)
        report.results["offline"] = self._offline(revision)

    def _fresh(self) -> Scratch:
        """A new database holding the initial schema, if the chain starts from one."""
        scratch = self.server.create()
        if self.initial_schema is not None:
            scratch.database.run(self.initial_schema.create_all)
        return scratch

    @staticmethod
    def _snapshot(scratch: Scratch) -> Snapshot:
        return scratch.database.run(snapshot_of)

    def _baseline_verdict(self, pre: Scratch, replay: list[Revision], revision: Revision) -> str:
        """Whether the baseline fails the same upgrade: the chain's fault, or the rewrite's."""
        if revision.baseline is None:
            return ""
        with self._copy(pre, replay) as scratch:
            try:
                self._run(scratch, revision, revision.baseline, "upgrade")
            except _Failed as failure:
                return f" (the baseline fails too: {failure.detail})"
        return " (the baseline's upgrade succeeds here)"

    def _equivalence(self, revision: Revision, original: Snapshot, actual: Snapshot) -> Result:
        if revision.baseline is None:
            return Result("not checked", "no baseline (no --baseline, and the file is not a modified git file)")
        diff = differences(original, actual)
        return Result("fail", "schema differs from the baseline's: " + "; ".join(diff)) if diff else Result("ok")

    def _rerun(self, disk: Scratch, revision: Revision, expected: Snapshot) -> Result:
        try:
            self._run(disk, revision, revision.source, "upgrade")
        except _Failed as failure:
            return Result("fail", f"upgrade run again: {failure.detail}")
        diff = differences(expected, self._snapshot(disk))
        return Result("fail", "upgrade run again changed the schema: " + "; ".join(diff)) if diff else Result("ok")

    def _crash(
        self, pre: Scratch, replay: list[Revision], revision: Revision, original: str, ops: int, expected: Snapshot
    ) -> Result:
        if ops < 2:
            return Result("not checked", "fewer than two ops: nothing to stop half-way")
        for crash_after in range(1, ops):
            with self._copy(pre, replay) as scratch:
                with suppress(Crash, _Failed):  # stopped either way
                    self._run(scratch, revision, original, "upgrade", crash_after=crash_after)
                try:
                    self._run(scratch, revision, revision.source, "upgrade")
                except _Failed as failure:
                    return Result("fail", f"after a crash after op {crash_after} of {ops}: {failure.detail}")
                diff = differences(expected, self._snapshot(scratch))
                if diff:
                    return Result("fail", f"after a crash after op {crash_after} of {ops}: " + "; ".join(diff))
        return Result("ok", f"stopped after each of ops 1..{ops - 1}, then completed")

    def _downgrade(
        self, replay: list[Revision], revision: Revision, disk: Scratch, original: Scratch, before: Snapshot
    ) -> Result:
        with self._copy(disk, replay) as scratch:
            baseline: Snapshot | None = None
            baseline_error = self.original_broken
            if not self.original_broken:
                with self._copy(original, replay, baseline=True) as reference:
                    try:
                        self._run(reference, revision, revision.original, "downgrade")
                        baseline = self._snapshot(reference)
                    except _Failed as failure:
                        baseline_error = f"the original's downgrade fails: {failure.detail}"
            try:
                self._run(scratch, revision, revision.source, "downgrade")
                first = self._snapshot(scratch)
            except _Failed as failure:
                if baseline is None and baseline_error.startswith("the original's downgrade fails"):
                    return Result("warn", f"{baseline_error}; so does this one: {failure.detail}")
                return Result("fail", f"downgrade: {failure.detail}")
            try:
                self._run(scratch, revision, revision.source, "downgrade")
            except _Failed as failure:
                return Result("fail", f"downgrade run again: {failure.detail}")
            diff = differences(first, self._snapshot(scratch))
            if diff:
                return Result("fail", "downgrade run again changed the schema: " + "; ".join(diff))
        if baseline is None:
            left = differences(before, first)
            note = f"not compared with the baseline ({baseline_error})"
            if left:
                return Result("warn", f"{note}; it does not restore the schema before the revision: " + "; ".join(left))
            return Result("ok", note)
        diff = differences(baseline, first)
        if diff:
            return Result("fail", "downgrade ends elsewhere than the original's: " + "; ".join(diff))
        left = differences(before, first)
        if left:
            return Result("warn", "downgrade does not restore the schema before the revision: " + "; ".join(left))
        return Result("ok")

    def _offline(self, revision: Revision) -> Result:
        if revision.baseline is None:
            return Result("not checked", "no baseline")
        for function in ("upgrade", "downgrade"):
            original = self._sql(revision, revision.original, function)
            rewritten = self._sql(revision, revision.source, function)
            if original == rewritten:
                continue
            if _statements(original) == _statements(rewritten):
                return Result(
                    "ok", f"{function}: the same statements; the indexes a create_table emits may change order"
                )
            return Result("fail", f"{function} --sql output differs from the baseline's")
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
        self, scratch: Scratch, revision: Revision, source: str, function: str, crash_after: int | None = None
    ) -> int:
        """Run ``function`` of ``source`` on ``scratch``: through the project's env.py, else the bare harness."""
        # Errors in the baseline name it, since its line numbers are not those of the file on disk.
        path = revision.path if source == revision.source else revision.baseline_path or f"{revision.path} (baseline)"
        project = self.project

        def work(connection: sa.Connection) -> int:
            module = load_migration(source, path)
            if project is not None:
                return project.run(connection, module, function, crash_after)
            return run_on_connection(
                connection, module, function, self.naming_convention, crash_after, self.x_arguments
            )

        try:
            return scratch.database.run(work, autocommit=crash_after is not None)
        except (Crash, EnvPyRefused):
            raise
        except Exception as error:  # any failure of the migration is a finding
            raise _Failed(f"{where(error, path)}: {type(error).__name__}: {error}".splitlines()[0]) from error

    @contextmanager
    def _copy(self, state: Scratch, replay: list[Revision], *, baseline: bool = False) -> Iterator[Scratch]:
        """A scratch copy of ``state``, dropped afterwards."""
        scratch = self._clone(state, replay, baseline=baseline)
        try:
            yield scratch
        finally:
            self.server.drop(scratch)

    def _clone(self, state: Scratch, replay: list[Revision], *, baseline: bool = False) -> Scratch:
        """A copy of ``state``: copied where cheap, else rebuilt by replaying ``replay``."""
        if self.server.can_copy:
            return self.server.create(template=state)
        scratch = self._fresh()
        for revision in replay:
            self._run(scratch, revision, revision.original if baseline else revision.source, "upgrade")
        return scratch
