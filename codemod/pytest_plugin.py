"""idempotify in the project's own test suite: a pytest plugin (entry point ``pytest11``).

A test module that imports the two tests of ``idempotify.testing`` gets
``test_idempotify_check``, which fails while ``idempotify --check`` would (a
revision not rewritten; with strict, an op left unguarded), and
``test_idempotify_verify[<revision>]``, one item per revision of the chain,
which reports that revision of ``idempotify verify``: it passes, fails (the
rewrite's defect, or a failure the rewrite did not announce), is an expected
failure (only at ops the rewrite left unguarded, with its reason; strict makes
it a failure), or is skipped (outside ``--revisions``); a verify warning is an
``IdempotifyWarning``.

The Alembic project is the one at or above the test module (``alembic.ini`` or
``[tool.alembic]``, as the rewrite finds it; ``$ALEMBIC_CONFIG``), or the file
``--idempotify-config`` / ``idempotify_config`` names. Both commands run as
``python -m idempotify`` in a subprocess beside that file, so the project's
``env.py`` (its ``fileConfig``, what it prints, an event loop) never touches
pytest's process; verify runs once per session, when the first revision's item
runs, and the revision ids are read at collection in a subprocess of their own.

Under pytest-xdist, workers share both: the first to need one runs it, under
a lock, and the others read its result from a directory the controller makes
for the test run and removes at its end (on a system without ``fcntl`` each
worker runs its own).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from codemod.config import ConfigError, find_alembic_project

try:
    import fcntl
except ImportError:  # Windows: each xdist worker runs its own commands
    fcntl = None  # type: ignore[assignment]

# The key of xdist's workerinput naming the directory where workers share what they ran.
_SHARED = "idempotify_shared"


class IdempotifyWarning(UserWarning):
    """A verify warning for a revision (a downgrade that does not restore the schema, a baseline that fails)."""


@dataclass(frozen=True)
class Settings:
    """The plugin's options: command line first, then the ini file."""

    url: str | None
    config_file: Path | None
    strict: bool
    verify_args: tuple[str, ...]

    @classmethod
    def of(cls, config: pytest.Config) -> Settings:
        url = config.getoption("idempotify_url") or config.getini("idempotify_url") or None
        config_file = None
        if config.getoption("idempotify_config"):  # relative to where pytest runs
            config_file = config.invocation_params.dir / config.getoption("idempotify_config")
        elif config.getini("idempotify_config"):  # relative to the ini file
            beside = config.inipath.parent if config.inipath is not None else config.rootpath
            config_file = beside / config.getini("idempotify_config")
        strict = bool(config.getoption("idempotify_strict") or config.getini("idempotify_strict"))
        return cls(url, config_file, strict, tuple(config.getini("idempotify_verify_args")))


@dataclass(frozen=True)
class Verified:
    """``idempotify verify --format json``: each revision's scenarios, or why verify could not run."""

    revisions: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    error: str | None = None


class Runs:
    """What the session has run, by Alembic project: each command runs once per project."""

    def __init__(self, settings: Settings, shared: Path | None = None) -> None:
        self.settings = settings
        self.shared = shared  # where xdist workers share what they ran, else None
        self._projects: dict[Path, Path | str] = {}
        self._chains: dict[Path, list[str] | str] = {}
        self._checks: dict[Path, subprocess.CompletedProcess[str]] = {}
        self._verified: dict[Path, Verified] = {}

    def project(self, test_file: Path) -> Path:
        """The Alembic configuration file of the project the test module at ``test_file`` belongs to."""
        folder = test_file.parent
        if folder not in self._projects:
            self._projects[folder] = self._find(folder)
        found = self._projects[folder]
        if isinstance(found, str):
            raise LookupError(found)
        return found

    def _find(self, folder: Path) -> Path | str:
        named = self.settings.config_file
        if named is not None:
            return named.resolve() if named.is_file() else f"the Alembic configuration {named}: no such file"
        try:
            project = find_alembic_project(folder)
        except ConfigError as error:
            return str(error)
        if project is None:
            return (
                f"no alembic.ini or pyproject.toml with [tool.alembic] in {folder} or above; "
                "name it with idempotify_config (pytest.ini) or --idempotify-config"
            )
        return project.config_file

    def revision_ids(self, project: Path) -> list[str]:
        """The chain's revision ids in upgrade order, loaded with Alembic in a subprocess."""
        if project not in self._chains:
            code = "from codemod.pytest_plugin import print_chain; print_chain()"
            result = self._once(project, "chain", ["-c", code])
            try:
                self._chains[project] = json.loads(result.stdout)
            except json.JSONDecodeError:
                self._chains[project] = result.stderr.strip() or result.stdout.strip()
        found = self._chains[project]
        if isinstance(found, str):
            raise LookupError(f"cannot list the revisions of {project}: {found}")
        return found

    def check(self, project: Path) -> subprocess.CompletedProcess[str]:
        if project not in self._checks:
            strict = ["--strict"] if self.settings.strict else []
            self._checks[project] = _idempotify(project, ["-m", "idempotify", "--check", *strict])
        return self._checks[project]

    def verify(self, project: Path) -> Verified:
        if project not in self._verified:
            url = ["--url", self.settings.url] if self.settings.url else []
            command = ["-m", "idempotify", "verify", "--format", "json", "--config", str(project), *url]
            result = self._once(project, "verify", [*command, *self.settings.verify_args])
            self._verified[project] = _verified(result)
        return self._verified[project]

    def _once(self, project: Path, what: str, arguments: list[str]) -> subprocess.CompletedProcess[str]:
        """``_idempotify(project, arguments)``, run by one xdist worker of the test run, read by the others."""
        if self.shared is None or fcntl is None:
            return _idempotify(project, arguments)
        key = hashlib.sha256(f"{project}\0{arguments}".encode()).hexdigest()[:16]
        stored = self.shared / f"{what}-{key}.json"
        with (self.shared / f"{what}-{key}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if stored.exists():
                said = json.loads(stored.read_text(encoding="utf-8"))
                return subprocess.CompletedProcess(arguments, said["returncode"], said["stdout"], said["stderr"])
            result = _idempotify(project, arguments)
            said = {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}
            written = stored.with_suffix(".part")
            written.write_text(json.dumps(said), encoding="utf-8")
            written.replace(stored)
            return result


def _idempotify(project: Path, arguments: list[str]) -> subprocess.CompletedProcess[str]:
    """``python ARGUMENTS`` beside the project's configuration, which ``$ALEMBIC_CONFIG`` names."""
    environment = {**os.environ, "ALEMBIC_CONFIG": str(project), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=project.parent,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def _verified(result: subprocess.CompletedProcess[str]) -> Verified:
    try:
        report: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()[-20:]
        return Verified(error=f"exit {result.returncode}:\n" + "\n".join(said))
    if "revisions" not in report:
        return Verified(error=str(report.get("error", report)))
    return Verified(
        revisions={entry["revision"]: entry["scenarios"] for entry in report["revisions"]},
        paths={entry["revision"]: entry["path"] for entry in report["revisions"]},
    )


def print_chain() -> None:
    """Print the revision ids of the Alembic project here as JSON, in upgrade order (the listing subprocess)."""
    from codemod.verify.chain import ChainError, load_chain  # noqa: PLC0415 - only in the listing subprocess

    try:
        project = find_alembic_project(Path.cwd())
        if project is None:
            raise ConfigError(f"no Alembic project in {Path.cwd()}")
        sys.path[:0] = [entry for entry in (*project.sys_path, str(Path.cwd())) if entry not in sys.path]
        with redirect_stdout(sys.stderr):  # what a revision prints when it is imported
            chain = load_chain([path for path in project.versions if path.is_dir()])
    except (ConfigError, ChainError) as error:
        raise SystemExit(str(error)) from None  # the message alone, on stderr
    print(json.dumps([revision.id for revision in chain]))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("idempotify", "idempotify: every revision rewritten and re-runnable")
    group.addoption(
        "--idempotify-url",
        metavar="URL",
        help="PostgreSQL or MariaDB server (SQLAlchemy URL) for verify's scratch databases [default: SQLite files].",
    )
    group.addoption(
        "--idempotify-config",
        metavar="FILE",
        help="The Alembic project's alembic.ini or pyproject.toml [default: the one at or above the test module].",
    )
    group.addoption(
        "--idempotify-strict",
        action="store_true",
        default=False,
        help="Fail, not xfail, a revision that fails only at ops the rewrite left unguarded; --check --strict.",
    )
    parser.addini("idempotify_url", "as --idempotify-url")
    parser.addini("idempotify_config", "as --idempotify-config, relative to this ini file")
    parser.addini("idempotify_strict", "as --idempotify-strict", type="bool", default=False)
    parser.addini("idempotify_verify_args", "more arguments for idempotify verify, e.g. --baseline DIR", type="args")


def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})  # set on an xdist worker
    shared = workerinput.get(_SHARED)
    config.stash[_RUNS] = Runs(Settings.of(config), Path(shared) if shared else None)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's controller, before it starts a worker: the directory where the workers share what they ran."""
    config: pytest.Config = node.config
    if _SHARED_DIRECTORY not in config.stash:
        config.stash[_SHARED_DIRECTORY] = Path(tempfile.mkdtemp(prefix="idempotify-pytest-"))
    node.workerinput[_SHARED] = str(config.stash[_SHARED_DIRECTORY])


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SHARED_DIRECTORY in config.stash:
        shutil.rmtree(config.stash[_SHARED_DIRECTORY], ignore_errors=True)


_RUNS = pytest.StashKey[Runs]()
_SHARED_DIRECTORY = pytest.StashKey[Path]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One ``test_idempotify_verify`` item per revision of the chain."""
    if "idempotify_revision" not in metafunc.fixturenames:
        return
    runs = metafunc.config.stash[_RUNS]
    try:
        ids = runs.revision_ids(runs.project(metafunc.definition.path))
    except LookupError as error:
        raise pytest.Collector.CollectError(f"idempotify: {error}") from None
    metafunc.parametrize("idempotify_revision", ids, ids=ids)


@pytest.fixture
def idempotify_project(request: pytest.FixtureRequest) -> Path:
    """The Alembic configuration file (alembic.ini or pyproject.toml) of the project under test."""
    try:
        return request.config.stash[_RUNS].project(request.path)
    except LookupError as error:
        pytest.fail(f"idempotify: {error}", pytrace=False)


def test_idempotify_check(idempotify_project: Path, pytestconfig: pytest.Config) -> None:
    """Every revision is rewritten: ``idempotify --check`` passes (``--strict`` with idempotify_strict)."""
    runs = pytestconfig.stash[_RUNS]
    result = runs.check(idempotify_project)
    if result.returncode != 0:
        strict = " --strict" if runs.settings.strict else ""
        said = result.stderr.strip() or result.stdout.strip()
        pytest.fail(
            f"`idempotify --check{strict}` exits {result.returncode} in {idempotify_project.parent}:\n{said}\n"
            "run `idempotify` there to rewrite the revisions",
            pytrace=False,
        )


def test_idempotify_verify(idempotify_revision: str, idempotify_project: Path, pytestconfig: pytest.Config) -> None:
    """This revision holds under ``idempotify verify``: the same schema as its baseline, re-runnable, crash-safe."""
    runs = pytestconfig.stash[_RUNS]
    verified = runs.verify(idempotify_project)
    if verified.error is not None:
        pytest.fail(f"idempotify verify could not run: {verified.error}", pytrace=False)
    scenarios = verified.revisions.get(idempotify_revision)
    if scenarios is None:
        if "--revisions" in " ".join(runs.settings.verify_args):
            pytest.skip("outside the --revisions of idempotify_verify_args")
        pytest.fail(f"idempotify verify did not report revision {idempotify_revision}", pytrace=False)
    path = verified.paths[idempotify_revision]
    for name, result in scenarios.items():
        if result["status"] == "warn":
            # Shown at the revision file, not at this line.
            message = IdempotifyWarning(f"{name}: {result['detail']}")
            warnings.warn_explicit(message, IdempotifyWarning, str(idempotify_project.parent / path), 1)
    failing = {name: result for name, result in scenarios.items() if result["status"] == "fail"}
    if not failing:
        return
    lines = "\n".join(
        f"{name}: fail ({result.get('cause', 'other')}): {result['detail']}" for name, result in failing.items()
    )
    if runs.settings.strict or any(result.get("cause") != "unguarded" for result in failing.values()):
        pytest.fail(f"{path}:\n{lines}", pytrace=False)
    pytest.xfail(f"fails only at ops the rewrite left unguarded, as it said (idempotify_strict fails it): {lines}")
