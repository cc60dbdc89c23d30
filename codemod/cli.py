"""The ``idempotify`` command: options, messages and exit codes.

``idempotify PATH...`` rewrites (the ``rewrite`` command, the default);
``idempotify verify PATH`` proves a chain on scratch databases; ``idempotify
plan`` says what the next deploy runs and skips on a live database. Diffs and
reports go to stdout; every message and the summary go to stderr.
Exit codes: 0 ok, 1 changes needed (``--check`` / ``--diff``) or a verify
scenario failed, 2 errors.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import itertools
import json
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec

import typer
from rich.progress import Progress
from typer.core import TyperGroup
from typer.exceptions import TyperException

from codemod import __version__
from codemod.cache import ResultCache
from codemod.config import Config, ConfigError, find_alembic_project, is_module_name, load_config
from codemod.formatting import Style, style_for
from codemod.interrupts import carries_interrupt
from codemod.output import Format, Printer, console, relative_to_cwd, unified_diff
from codemod.results import FileResult, Outcome, Status
from codemod.runner import (
    ChangedOnDiskError,
    default_jobs,
    find_files,
    lines_after_rewrite,
    process_files,
    write_result,
)
from codemod.shared_helpers import HelpersModule, create_module, locate, module_result
from codemod.specs import SPECS

if TYPE_CHECKING:
    import sqlalchemy as sa

    from codemod.verify.environment import ProjectEnvironment

EXIT_OK = 0
EXIT_CHANGES = 1
EXIT_ERROR = 2
P = ParamSpec("P")
_PROGRESS_FROM = 50  # files; shorter runs finish before a bar would be read
_ARGUMENTS = "idempotify.arguments"


class _RewriteByDefault(TyperGroup):
    """``idempotify PATH...`` is ``idempotify rewrite PATH...``; other commands are named."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's click Context
        ctx.meta[_ARGUMENTS] = list(args)  # as given: --python runs the same command again
        if not args or args[0] not in self.commands:
            args = ["rewrite", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_RewriteByDefault, add_completion=False, rich_markup_mode=None)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"idempotify {__version__}")
        raise typer.Exit()


def _list_ops(value: bool) -> None:
    if value:
        width = max(len(spec.name) for spec in SPECS.values())
        for spec in SPECS.values():
            typer.echo(f"{spec.name:<{width}}  ({spec.forms}): runs when {spec.description}")
        raise typer.Exit()


def _unexpected_is_an_error(command: Callable[P, None]) -> Callable[P, None]:
    """An unexpected exception exits 2 (an error) with its traceback, never 1 ("changes needed")."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except (typer.Exit, typer.Abort, TyperException):  # typer's own: usage errors, exits
            raise
        except Exception:  # noqa: BLE001 - shown with its traceback; the exit code says "error"
            traceback.print_exc()
            print("idempotify: internal error (above); please report it", file=sys.stderr)
            raise typer.Exit(EXIT_ERROR) from None

    return run


# Arguments the commands share: the chain, the Alembic project that runs it, and the report's format.
_Versions = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="VERSIONS",
        show_default=False,
        help="The directories holding the revision files [default: the versions directories of the "
        "Alembic project here (alembic.ini or [tool.alembic])].",
    ),
]
_AlembicConfig = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The Alembic project's alembic.ini (or pyproject.toml) whose env.py runs the revisions "
        "[default: the one at or above VERSIONS].",
    ),
]
_ReportFormat = Annotated[
    Format, typer.Option("--format", help="text for people, json for machines, github for CI annotations.")
]
_ProjectPython = Annotated[
    Path | None,
    typer.Option(
        "--python",
        metavar="PATH",
        help="Run under the project's Python (its virtualenv's bin/python) without installing idempotify "
        "there: its own modules, Alembic, SQLAlchemy and drivers come first; idempotify's fill in the rest. "
        "It must be the Python version idempotify runs on.",
    ),
]


def _fail(printer: Printer, message: str, error: BaseException | None = None) -> NoReturn:
    """End a verify or plan run that could not run: the message (a JSON object when asked for JSON), exit 2."""
    if printer.format is Format.JSON:
        typer.echo(json.dumps({"ok": False, "error": message}, indent=2))
    else:
        printer.error(message)
    raise typer.Exit(EXIT_ERROR) from error


def _switch_to(context: typer.Context, python: Path | None, printer: Printer) -> None:
    """``--python``: go on under the project's interpreter (``codemod.interpreter``); exit 2 if it cannot."""
    if python is None:
        return
    from codemod.interpreter import InterpreterError, switch_to  # noqa: PLC0415

    try:
        switch_to(python, context.meta[_ARGUMENTS])
    except InterpreterError as error:
        _fail(printer, str(error), error)


@app.command()
@_unexpected_is_an_error
def rewrite(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="PATH",
            show_default=False,
            help="Revision files, or directories searched for them [default: the versions directories of "
            "the Alembic project here (alembic.ini or [tool.alembic])].",
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if any file would change (for CI).")
    ] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff; write nothing; exit 1 if any.")] = False,
    strict: Annotated[
        bool | None,
        typer.Option(
            "--strict/--no-strict",
            show_default=False,
            help="Also exit 1 while any op is left unguarded (see the list printed) [default: [tool.idempotify] "
            "strict, else no].",
        ),
    ] = None,
    line_length: Annotated[
        int | None,
        typer.Option(
            min=40,
            help="Line length for the code idempotify writes [default: [tool.idempotify] line-length, "
            "else the project's [tool.black], else 88].",
        ),
    ] = None,
    helpers: Annotated[
        str | None,
        typer.Option(
            metavar="PACKAGE.MODULE",
            help="Write the generated helpers once, into this module of the project, and make each migration "
            "import them from it, instead of a block in each file [default: [tool.idempotify] helpers, else "
            "a block in each file]. It must be importable as Alembic imports the migrations "
            "(prepend_sys_path, PYTHONPATH).",
        ),
    ] = None,
    output_format: _ReportFormat = Format.TEXT,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print every op guarded or safe, and every file skipped.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", min=1, help="Processes to parse files on [default: [tool.idempotify] jobs, else every CPU]."
        ),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache", help="Neither read nor write the result cache ($XDG_CACHE_HOME/idempotify on Linux)."
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    list_ops: Annotated[
        bool,
        typer.Option("--list-ops", callback=_list_ops, is_eager=True, help="Print the op kinds guarded and exit."),
    ] = False,
) -> None:
    """Guard every Alembic schema op so a migration can run again on a database that already has its changes.

    Each op.X / batch_op.X statement in the migration's functions is wrapped in
    an `if` that asks the live database whether it is needed. Without --check or
    --diff, files are rewritten in place. Settings come from [tool.idempotify]
    in the nearest pyproject.toml; flags override them.

    Exit codes: 0 ok, 1 changes needed (--check, --diff; with --strict also ops
    left unguarded), 2 errors. To prove the result on a database, see
    `idempotify verify --help`.
    """
    if quiet and verbose:
        raise typer.BadParameter("choose one of them", param_hint="--quiet / --verbose")
    printer = Printer(output_format, check=check, diff=diff, quiet=quiet, verbose=verbose)
    try:
        paths = paths or _alembic_versions(printer)
        config = load_config(paths[0])
        printer.strict = strict if strict is not None else config.strict
        if config.source is not None:
            printer.note(f"idempotify: settings from {config.source} [tool.idempotify]", verbose_only=True)
        module = _helpers_module(helpers or config.helpers, paths[0])
        selection = _select(paths, config, line_length or config.line_length, printer, module)
    except ConfigError as error:
        printer.error(str(error))
        printer.finish([], EXIT_ERROR)
        raise typer.Exit(EXIT_ERROR) from error
    cache = None if no_cache else ResultCache()
    results: list[FileResult] = list(selection.unreadable)
    for failure in selection.unreadable:
        printer.file(failure, named=True)
    processed = process_files(selection.files, jobs=jobs or config.jobs or default_jobs(), cache=cache)
    first = next(processed, None)  # workers are forked here, before the progress bar starts its thread
    shared: FileResult | None = None
    created = False
    with _progress(printer, len(selection.files)) as advance:
        outcomes: Iterable[FileResult] = itertools.chain([first] if first is not None else [], processed)
        if module is not None:  # written first, so that no migration imports a helper it does not hold yet
            outcomes = list(outcomes)
            shared, created = _shared_module(module, outcomes, line_length or config.line_length, printer.written)
        for outcome in outcomes:
            write = outcome.status is Status.CHANGED and not (check or diff)
            if write and shared is not None and shared.status is Status.FAILED:
                result = FileResult(outcome.path, Status.FAILED, message="not written: the helpers module was not")
            else:
                result = _write(outcome) if write else outcome
            printer.file(result, named=result.path in paths)
            results.append(dataclasses.replace(result, original=b"", rewritten=None))  # the summary needs no bytes
            advance()
    for given in paths:
        if not given.is_dir() or any(
            result.status is not Status.SKIPPED and result.path.is_relative_to(given) for result in results
        ):
            continue
        if any(path.is_relative_to(given) for path in selection.excluded):
            printer.note(f"nothing to do in {given}: every file below it is excluded by {config.source}")
            continue
        message = "no Alembic revision files below it (files that assign `revision` and define upgrade())"
        results.append(FileResult(given, Status.FAILED, message=message))
        printer.file(results[-1], named=True)
    if shared is not None:  # told after the migrations: their diffs are what a reviewer reads first
        printer.helpers_module(shared, created=created)
    code = _exit_code([*results, *([shared] if shared else [])], report_changes=check or diff, strict=printer.strict)
    printer.finish(results, code)
    raise typer.Exit(code)


def _helpers_module(name: str | None, start: Path) -> HelpersModule | None:
    """``--helpers`` (else ``[tool.idempotify] helpers``), located; None: a block in each migration."""
    if name is None:
        return None
    if not is_module_name(name):
        raise ConfigError(f"--helpers {name!r} is not a module name (package.module)")
    return locate(name, start)


def _shared_module(
    module: HelpersModule, outcomes: Sequence[FileResult], line_length: int | None, write: bool
) -> tuple[FileResult | None, bool]:
    """The shared helpers module brought up to what ``outcomes`` need (written when ``write``); and whether it is
    new."""
    style = style_for(module.path)
    if line_length is not None:
        style = dataclasses.replace(style, line_length=line_length)
    needed = {name for outcome in outcomes for name in outcome.helpers}
    result = module_result(module, needed, style)
    if result is None:
        return None, False
    created = not module.exists
    shown = dataclasses.replace(result, path=relative_to_cwd(result.path))
    if result.status is Status.CHANGED and write:
        try:
            if created:
                create_module(result)
            else:
                write_result(result)
        except (ChangedOnDiskError, FileExistsError):
            shown = FileResult(shown.path, Status.FAILED, message="changed on disk while idempotify ran; not written")
        except OSError as error:
            shown = FileResult(shown.path, Status.FAILED, message=f"cannot write: {error.strerror or error}")
    return shown, created


@dataclasses.dataclass
class _Selection:
    files: list[tuple[Path, Style]] = dataclasses.field(default_factory=list)
    excluded: list[Path] = dataclasses.field(default_factory=list)
    unreadable: list[FileResult] = dataclasses.field(default_factory=list)


def _select(
    paths: list[Path], config: Config, line_length: int | None, printer: Printer, helpers: HelpersModule | None
) -> _Selection:
    """The files to process under ``paths``, with their style; what was left out, and why, is told."""
    selection = _Selection()
    not_followed: list[Path] = []
    for path in find_files(paths, not_followed, selection.unreadable):
        if not config.selects(path):
            selection.excluded.append(path)
            printer.note(f"excluded {path} by {config.source}", verbose_only=True)
            continue
        style = style_for(path)
        if line_length is not None:  # the line length only: the project's string normalisation stays
            style = dataclasses.replace(style, line_length=line_length)
        if helpers is not None:
            style = dataclasses.replace(style, helpers=helpers.name)
        selection.files.append((path, style))
    for directory in not_followed:
        printer.note(f"not followed: {directory} is a symlinked directory (Alembic does not enter those)")
    return selection


def _alembic_versions(printer: Printer) -> list[Path]:
    """The versions directories of the Alembic project at or above the working directory."""
    return _alembic_project_here(printer)[0]


def _alembic_project_here(printer: Printer) -> tuple[list[Path], Path]:
    """The versions directories of the Alembic project at or above the working directory, and its configuration
    file: the project whose env.py runs them, even where another alembic.ini lies nearer to them (mlflow ships one
    beside its env.py, meant for its site-packages root, that names its script location from there)."""
    project = find_alembic_project(Path.cwd())
    if project is None:
        raise ConfigError(
            f"no PATH given, and no alembic.ini or pyproject.toml with [tool.alembic] in {Path.cwd()} or above"
        )
    existing = [path for path in project.versions if path.is_dir()]
    if not existing:
        raise ConfigError(f"{project.config_file}: its versions directory {project.versions[0]} does not exist")
    relative = [relative_to_cwd(path) for path in existing]
    shown = ", ".join(map(str, relative))
    printer.note(f"idempotify: no PATH given; using {shown} from {relative_to_cwd(project.config_file)}")
    return relative, project.config_file


@contextmanager
def _progress(printer: Printer, total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr for long runs on a terminal; a no-op otherwise."""
    if total < _PROGRESS_FROM or printer.quiet or printer.format is not Format.TEXT or not printer.stderr.is_terminal:
        yield lambda: None
        return
    with Progress(console=printer.stderr, transient=True) as progress:
        task = progress.add_task("idempotify", total=total)
        yield lambda: progress.advance(task)


@app.command()
@_unexpected_is_an_error
def verify(
    context: typer.Context,
    versions: _Versions = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="A PostgreSQL or MariaDB server (SQLAlchemy URL) to make scratch databases on "
            "[default: temporary SQLite files]. Only databases idempotify creates are touched."
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="The versions directory before idempotify, to compare with "
            "[default: the committed version of each modified git-tracked file]."
        ),
    ] = None,
    naming_convention: Annotated[
        str | None,
        typer.Option(
            help="The naming convention env.py gives target_metadata: a JSON object, "
            "or module:attribute naming a MetaData or a dict."
        ),
    ] = None,
    x_arguments: Annotated[
        list[str] | None,
        typer.Option("-x", help="key=value for context.get_x_argument() in the revisions, as `alembic -x`."),
    ] = None,
    initial_schema: Annotated[
        str | None,
        typer.Option(
            help="module:attribute of a MetaData (or an object with .metadata) to create before the first "
            "revision, for chains that start from a schema made by create_all()."
        ),
    ] = None,
    revisions: Annotated[
        str | None,
        typer.Option(
            "--revisions",
            metavar="A:B",
            help="Verify only revisions A to B (both included, in the chain's order; A: to the head, :B from "
            "the base); the revisions before A still run, to reach A's starting schema.",
        ),
    ] = None,
    alembic_config: _AlembicConfig = None,
    no_env_py: Annotated[
        bool,
        typer.Option(
            "--no-env-py",
            help="Run the revisions without the project's env.py (the bare harness; --naming-convention).",
        ),
    ] = False,
    output_format: _ReportFormat = Format.TEXT,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Also exit 1 when the only failures are at ops the rewrite left unguarded (expected ones).",
        ),
    ] = False,
    python: _ProjectPython = None,
) -> None:
    """Prove a revision chain on scratch databases: same schema as the baseline, re-runnable, crash-safe.

    For each revision: equivalence with the baseline, a re-run of its upgrade,
    a crash after each of its ops (each committed, as on MySQL) then a full
    run, a downgrade run twice, and offline (--sql) output. The scratch
    databases are dropped afterwards, also on failure or Ctrl-C.

    Exit codes: 0 every scenario holds (or fails only at ops the rewrite left
    unguarded, as it said it would; --strict: 1), 1 a scenario fails at a guard
    or elsewhere, 2 verify could not run.
    """
    printer = Printer(output_format, check=True, diff=False, quiet=False, verbose=False)
    _switch_to(context, python, printer)
    import sqlalchemy as sa  # noqa: PLC0415 - verify's imports are deferred so a rewrite starts fast

    from codemod.verify.chain import ChainError, load_chain  # noqa: PLC0415
    from codemod.verify.database import ScratchError, scratch_server  # noqa: PLC0415
    from codemod.verify.environment import EnvPyRefused  # noqa: PLC0415
    from codemod.verify.report import fails, print_github, print_text, render_json  # noqa: PLC0415
    from codemod.verify.scenarios import ChainVerifier  # noqa: PLC0415

    fail = functools.partial(_fail, printer)

    try:
        if not versions:
            versions, here = _alembic_project_here(printer)
            alembic_config = alembic_config or here
        config = load_config(versions[0])
        _make_project_importable(alembic_config or versions[0])
        convention = _convention_for(naming_convention, config)
        initial = _metadata(initial_schema) if initial_schema is not None else None
        chain = load_chain(versions, baseline)
        project = None if no_env_py else _project_environment(versions, alembic_config, x_arguments or ())
        selected = _revision_range(revisions, [revision.id for revision in chain]) if revisions else None
    except (ChainError, ValueError, ConfigError) as error:
        fail(str(error), error)
    show, finished = _verify_progress(len(selected) if selected is not None else len(chain))
    with _interrupt_exits_130():  # a CI cancellation still drops the scratch databases
        try:
            # What revisions and env.py print goes to stderr: stdout is the report (and JSON must parse).
            with scratch_server(url) as server, redirect_stdout(sys.stderr):
                reports = ChainVerifier(server, convention, x_arguments or (), initial, project).verify(
                    chain, show, selected, finished
                )
        except (ScratchError, EnvPyRefused) as error:
            fail(str(error), error)
        except sa.exc.DBAPIError as error:
            fail(f"the database failed outside any revision: {error.orig}", error)
    if output_format is Format.JSON:
        typer.echo(render_json(reports))
    elif output_format is Format.GITHUB:
        print_github(reports)
    else:
        print_text(reports, console(stderr=False), strict=strict)
    raise typer.Exit(EXIT_CHANGES if fails(reports, strict=strict) else EXIT_OK)


def _project_environment(
    versions: list[Path], option: Path | None, x_arguments: Sequence[str]
) -> ProjectEnvironment | None:
    """The Alembic project whose env.py runs the chain: ``--config``, else the one whose versions these are."""
    from alembic.util import CommandError  # noqa: PLC0415

    from codemod.verify.environment import ProjectEnvironment  # noqa: PLC0415

    if option is None:
        project = find_alembic_project(versions[0])
        if project is None:
            return None
        folder = project.config_file.parent
        locations = {(folder / location).resolve() for location in project.versions}
        if not all(version.resolve() in locations for version in versions):
            return None  # a copy of the versions elsewhere: the project's env.py is not theirs
        option = project.config_file
    elif not option.is_file():
        raise ConfigError(f"--config {option}: no such file")
    try:
        return ProjectEnvironment(option, x_arguments)
    except CommandError as error:
        raise ConfigError(f"{option}: {error}") from error


def _verify_progress(total: int) -> tuple[Callable[[Any], None], Callable[[Any], None]]:
    """What verify says on stderr: the revision it starts on a terminal; when piped, a line per revision as it
    ends (a long chain is not minutes of silence)."""
    progress = console(stderr=True)
    counted = itertools.count(1)

    def show(revision: Any) -> None:  # a codemod.verify.chain.Revision
        if progress.is_terminal:
            progress.print(f"verifying {revision.id} ({revision.path.name})", style="dim", highlight=False)

    def finished(report: Any) -> None:  # a codemod.verify.scenarios.RevisionReport
        if progress.is_terminal:
            return
        results = report.results.items()
        failing = [f"{name} ({result.cause or 'fail'})" for name, result in results if result.status == "fail"]
        verdict = "fails: " + ", ".join(failing) if failing else "holds"
        typer.echo(f"[{next(counted)}/{total}] {report.revision.id} ({report.revision.path.name}) {verdict}", err=True)

    return show, finished


def _revision_range(option: str, order: list[str]) -> set[str]:
    """``--revisions A:B``: the ids from A to B in chain order; each side an id or a unique prefix of one."""
    first, colon, last = option.partition(":")
    if not colon:
        raise ValueError(f"--revisions {option!r}: expected A:B (A: or :B for an open end)")

    def position(part: str, default: int) -> int:
        if not part:
            return default
        found = [index for index, revision in enumerate(order) if revision.startswith(part)]
        if len(found) != 1:
            raise ValueError(f"--revisions: {'no' if not found else 'more than one'} revision {part!r} in the chain")
        return found[0]

    start, end = position(first.strip(), 0), position(last.strip(), len(order) - 1)
    if start > end:
        raise ValueError(f"--revisions {option!r}: {first} comes after {last} in the chain")
    return set(order[start : end + 1])


def _make_project_importable(versions: Path) -> None:
    """Let revisions and ``module:attribute`` options import the project's modules, as ``alembic`` would.

    The working directory, and the ``prepend_sys_path`` entries of the Alembic
    project at or above ``versions`` (``alembic init`` sets ``.``), go first on
    ``sys.path``.
    """
    entries = [str(Path.cwd())]
    project = find_alembic_project(versions)
    if project is not None:
        entries = [*project.sys_path, *entries]
    sys.path[:0] = [entry for entry in entries if entry not in sys.path]


@contextmanager
def _interrupt_exits_130() -> Iterator[None]:
    """Ctrl-C or SIGTERM ends the run with exit code 130 once the scratch databases are dropped.

    The interrupt can land inside a database call; the clean-up on its way out then fails too (a
    connection "can't reconnect until invalid transaction is rolled back"), and that error, not the
    interrupt, reaches here. Whatever carries the interrupt in its cause or context is the interrupt.
    """
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except BaseException as error:
        if not carries_interrupt(error):
            raise
        typer.echo("interrupted; the scratch databases were dropped", err=True)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _convention_for(option: str | None, config: Config) -> dict[str, str] | None:
    """``--naming-convention``, else ``[tool.idempotify] naming-convention`` (errors name its file)."""
    if option is not None or config.naming_convention is None:
        return _naming_convention(option)
    try:
        return _naming_convention(config.naming_convention)
    except ValueError as error:
        raise ConfigError(f"{config.source}: [tool.idempotify] {error}") from error


def _naming_convention(value: str | None) -> dict[str, str] | None:
    """``--naming-convention``: a JSON object, or ``module:attribute`` naming a MetaData or a dict."""
    if value is None:
        return None
    found: Any
    if value.lstrip().startswith("{"):
        try:
            found = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"--naming-convention is not valid JSON: {error}") from error
    else:
        found = _import(value, "--naming-convention")
    found = getattr(found, "naming_convention", found)
    if not isinstance(found, dict):
        raise ValueError(f"--naming-convention {value!r} is not a naming convention (a dict)")
    return {str(key): str(template) for key, template in found.items() if isinstance(template, str)}


def _metadata(value: str) -> sa.MetaData:
    """``--initial-schema``: ``module:attribute`` naming a MetaData or something with ``.metadata``."""
    import sqlalchemy as sa  # noqa: PLC0415

    found = _import(value, "--initial-schema")
    found = getattr(found, "metadata", found)
    if not isinstance(found, sa.MetaData):
        raise ValueError(f"--initial-schema {value!r} is not a MetaData")
    return found


def _import(value: str, option: str) -> Any:
    module_name, _, attribute = value.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"{option} {value!r}: {error}") from error


@app.command("lock-env")
@_unexpected_is_an_error
def lock_env_command(
    env_py: Annotated[
        Path | None,
        typer.Argument(
            metavar="ENV_PY",
            show_default=False,
            help="The env.py to lock [default: the one of the Alembic project here (alembic.ini or [tool.alembic])].",
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if env.py does not take the lock (for CI).")
    ] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff; write nothing; exit 1 if any.")] = False,
) -> None:
    """Make env.py take a migration lock, so concurrent `alembic upgrade` processes run each revision once.

    Puts the recipe of the README ("Concurrent deploys") before env.py's first
    function, and `with migration_lock(connection):` around each
    context.configure(connection=...) and the `with context.begin_transaction():`
    block after it. An env.py that takes a lock already is left as it is.

    Exit codes: 0 env.py takes the lock (now), 1 it does not (--check, --diff;
    or an env.py lock-env does not recognise, left untouched), 2 errors.
    """
    import libcst as cst  # noqa: PLC0415 - as verify's, deferred

    from codemod.lock import PASTE, EnvPyNotRecognised, lock_env  # noqa: PLC0415 - it imports LibCST

    try:
        path = env_py or _project_env_py()
    except ConfigError as error:
        typer.echo(f"idempotify: {error}", err=True)
        raise typer.Exit(EXIT_ERROR) from error
    try:
        original = path.read_bytes()
        locked = lock_env(original.decode("utf-8")).encode("utf-8")
    except OSError as error:
        typer.echo(f"idempotify: {path}: cannot read: {error.strerror or error}", err=True)
        raise typer.Exit(EXIT_ERROR) from error
    except (UnicodeDecodeError, cst.ParserSyntaxError) as error:
        typer.echo(f"idempotify: {path}: cannot parse: {error}", err=True)
        raise typer.Exit(EXIT_ERROR) from error
    except EnvPyNotRecognised as error:
        typer.echo(f"idempotify: {path}: not changed: lock-env does not recognise it ({error}); {PASTE}", err=True)
        raise typer.Exit(EXIT_CHANGES) from error
    shown = relative_to_cwd(path)
    if locked == original:
        typer.echo(f"{shown} takes a migration lock already", err=True)
        return
    result = FileResult(shown, Status.CHANGED, original, locked)
    if diff:
        sys.stdout.write(unified_diff(result))
    if check or diff:
        typer.echo(f"Would lock {shown}", err=True)
        raise typer.Exit(EXIT_CHANGES)
    written = _write(result)
    if written.status is Status.FAILED:
        typer.echo(f"idempotify: {shown}: {written.message}", err=True)
        raise typer.Exit(EXIT_ERROR)
    typer.echo(f"Locked {shown}: it takes the migration lock before running migrations", err=True)


def _project_env_py() -> Path:
    """The env.py of the Alembic project at or above the working directory."""
    from codemod.lock import env_py_of  # noqa: PLC0415 - it imports LibCST

    project = find_alembic_project(Path.cwd())
    if project is None:
        raise ConfigError(
            f"no ENV_PY given, and no alembic.ini or pyproject.toml with [tool.alembic] in {Path.cwd()} or above"
        )
    return relative_to_cwd(env_py_of(project.config_file))


def _write(result: FileResult) -> FileResult:
    try:
        write_result(result)
        return lines_after_rewrite(result)
    except ChangedOnDiskError:
        message = "changed on disk while idempotify ran; not written"
    except OSError as error:
        message = f"cannot write: {error.strerror or error}"
    return FileResult(result.path, Status.FAILED, result.original, message=message)


def _exit_code(results: list[FileResult], *, report_changes: bool, strict: bool) -> int:
    if any(result.status is Status.FAILED for result in results):
        return EXIT_ERROR
    if report_changes and any(result.status is Status.CHANGED for result in results):
        return EXIT_CHANGES
    if strict and any(report.outcome is Outcome.UNGUARDED for result in results for report in result.reports):
        return EXIT_CHANGES
    return EXIT_OK


@app.command()
@_unexpected_is_an_error
def plan(
    context: typer.Context,
    versions: _Versions = None,
    url: Annotated[
        str | None,
        typer.Option(help="The live database (SQLAlchemy URL), read only [default: the project's sqlalchemy.url]."),
    ] = None,
    scratch_url: Annotated[
        str | None,
        typer.Option(
            help="The server to make the scratch copies on [default: the live database's server, through its "
            "maintenance database; SQLite: temporary files]."
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="The versions directory before idempotify: the original of files already rewritten "
            "[default: the committed version of each modified git-tracked file]."
        ),
    ] = None,
    alembic_config: _AlembicConfig = None,
    no_env_py: Annotated[
        bool, typer.Option("--no-env-py", help="Run the revisions without the project's env.py (the bare harness).")
    ] = False,
    output_format: _ReportFormat = Format.TEXT,
    python: _ProjectPython = None,
) -> None:
    """Say what the next deploy will run and skip on the live database, without touching it.

    Reads the live database's alembic_version and schema in a read-only
    transaction, copies the schema to a scratch database, and runs the pending
    revisions there: the rewritten chain (rewritten in memory when the files
    are not yet) and the original. Each op is run, skip (exists), or
    unguarded (runs unchecked); a skipped create whose existing object differs
    is drift. The scratch databases are dropped afterwards.

    Exit codes: 0 the deploy goes through, 1 the original (or rewritten) chain
    would fail or drift was found, 2 plan could not run.
    """
    printer = Printer(output_format, check=True, diff=False, quiet=False, verbose=False)
    _switch_to(context, python, printer)
    import sqlalchemy as sa  # noqa: PLC0415 - deferred so a rewrite starts fast

    from codemod.plan.live import LiveError  # noqa: PLC0415
    from codemod.plan.planner import PlanError, build_plan  # noqa: PLC0415
    from codemod.plan.report import print_github, print_text, render_json  # noqa: PLC0415
    from codemod.verify.chain import ChainError  # noqa: PLC0415
    from codemod.verify.database import ScratchError  # noqa: PLC0415
    from codemod.verify.environment import EnvPyRefused  # noqa: PLC0415

    fail = functools.partial(_fail, printer)

    with _interrupt_exits_130():  # a CI cancellation still drops the scratch databases
        try:
            if not versions:
                versions, here = _alembic_project_here(printer)
                alembic_config = alembic_config or here
            config = load_config(versions[0])
            _make_project_importable(alembic_config or versions[0])
            project = _project_environment(versions, alembic_config, ())
            live = url or _project_url(project, versions)
            with redirect_stdout(sys.stderr):
                found = build_plan(
                    versions,
                    live,
                    baseline=baseline,
                    project=None if no_env_py else project,
                    naming_convention=_convention_for(None, config),
                    scratch_url=scratch_url,
                )
        except (ChainError, ValueError, ConfigError, LiveError, PlanError, ScratchError, EnvPyRefused) as error:
            fail(str(error), error)
        except sa.exc.DBAPIError as error:
            fail(f"the database failed outside any revision: {error.orig}", error)
    if output_format is Format.JSON:
        typer.echo(render_json(found))
    elif output_format is Format.GITHUB:
        print_github(found)
    else:
        print_text(found, console(stderr=False))
    raise typer.Exit(EXIT_CHANGES if found.failed else EXIT_OK)


def _project_url(project: ProjectEnvironment | None, versions: list[Path]) -> str:
    """The live database plan reads by default: the Alembic project's ``sqlalchemy.url``."""
    found = project.config.get_main_option("sqlalchemy.url") if project is not None else None
    if not found:
        where = project.config_file if project is not None else f"no Alembic project at or above {versions[0]}"
        raise ConfigError(f"no --url, and no sqlalchemy.url to read in {where}: name the live database with --url")
    return found


def main() -> None:
    """Console-script entry point."""
    app()
