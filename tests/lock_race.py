"""Several ``alembic upgrade head`` processes started at once on one database; ``python -m tests.lock_race``.

``tests/test_lock.py`` runs them through an env.py holding the migration lock
(``codemod/lock.py``) and asserts each revision runs once. Run as a module,
this runs the same race through Alembic's stock generic env.py, without the
lock, a few times on PostgreSQL and MariaDB, and prints what happened: it
depends on timing, so it is evidence, not a test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from tests.databases import scratch_database

PROJECT = Path(__file__).parent / "lock_project"
REVISIONS = ("l1", "l2", "l3", "l4")
ALEMBIC = str(Path(sys.executable).parent / "alembic")
WAITING = "another process holds the migration lock; waiting for it"
_RUNNING = re.compile(r"Running upgrade \S* ?-> (\w+)")
_RAISED = re.compile(r"(?m)^([\w.]+(?:Error|Exception|Detected)): (?:\(([\w.]+)\)(?: \((\d+),)?)?")


@dataclass(frozen=True)
class Race:
    """What the processes of one race printed and how they ended."""

    returncodes: tuple[int, ...]
    outputs: tuple[str, ...]

    @property
    def runs(self) -> Counter[str]:
        """How many processes started each revision, from Alembic's "Running upgrade" lines."""
        return Counter(match[1] for output in self.outputs for match in _RUNNING.finditer(output))

    @property
    def waited(self) -> int:
        """How many processes found the lock taken and waited."""
        return sum(WAITING in output for output in self.outputs)

    def errors(self) -> list[str]:
        """The exception each failing process died of (the driver's, when SQLAlchemy wraps one)."""
        found = []
        for returncode, output in zip(self.returncodes, self.outputs, strict=True):
            if returncode:
                raised = _RAISED.findall(output)
                wrapper, driver, code = raised[-1] if raised else (output.strip().splitlines()[-1], "", "")
                found.append(f"{driver or wrapper} {code}".strip())
        return found


def project_on(directory: Path, url: sa.URL, env_py: Path | None = None) -> Path:
    """A copy of the test project migrating the database ``url`` names; ``env_py`` replaces its env.py."""
    project = directory / "project"
    shutil.copytree(PROJECT, project)
    if env_py is not None:
        shutil.copyfile(env_py, project / "env.py")
    ini = project / "alembic.ini"
    rendered = url.render_as_string(hide_password=False).replace("%", "%%")
    text = re.sub(r"(?m)^sqlalchemy\.url = .*$", lambda _: f"sqlalchemy.url = {rendered}", ini.read_text("utf-8"))
    ini.write_text(text, encoding="utf-8")
    return project


def upgrade_together(project: Path, processes: int, *options: str) -> Race:
    """``alembic upgrade head`` in ``processes`` processes, all started before any is waited for."""
    command = [ALEMBIC, "-c", str(project / "alembic.ini"), *options, "upgrade", "head"]
    started = [
        subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(processes)
    ]
    outputs = tuple(process.communicate()[0] for process in started)
    return Race(tuple(process.returncode for process in started), outputs)


def stock_env_py(directory: Path) -> Path:
    """The env.py of ``alembic init`` (the generic template), as a project starts with it."""
    subprocess.run([ALEMBIC, "init", "-t", "generic", "stock"], cwd=directory, check=True, capture_output=True)
    return directory / "stock" / "env.py"


def log_rows(engine: sa.Engine) -> Counter[str]:
    """The rows each revision wrote to ``migration_log`` (a revision run twice writes two)."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("migration_log"):
            return Counter()
        return Counter(connection.execute(sa.text("SELECT revision FROM migration_log")).scalars())


def _race_without_the_lock(dialect: str, processes: int) -> str:
    with tempfile.TemporaryDirectory() as temporary, scratch_database(dialect) as engine:
        directory = Path(temporary)
        race = upgrade_together(project_on(directory, engine.url, stock_env_py(directory)), processes)
        failed = sum(1 for code in race.returncodes if code)
        rows = log_rows(engine)
        with engine.connect() as connection:
            heads = sa.inspect(connection).has_table("alembic_version") and list(
                connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
            )
    errors = Counter(race.errors())
    started = ", ".join(f"{revision} x{race.runs[revision]}" for revision in REVISIONS)
    logged = ", ".join(f"{revision} x{rows[revision]}" for revision in REVISIONS)
    return (
        f"{dialect}: {failed}/{processes} exited non-zero {dict(errors)}; revisions started {started}; "
        f"log rows {logged}; alembic_version {heads}"
    )


def main() -> None:
    for dialect in ("postgresql", "mariadb"):
        for _ in range(5):
            print(_race_without_the_lock(dialect, 5), flush=True)


if __name__ == "__main__":
    main()
