"""The pytest plugin, run as a project runs it: the demo project with ``tests/test_migrations.py`` importing the
two tests from ``idempotify.testing``, and pytest run inside it (``pytester``). Each revision is one item that
passes, fails (the rewrite's defect), is an expected failure (only at ops the rewrite left unguarded), or is
skipped (outside ``--revisions``), on each database."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codemod.cli import app
from tests.conftest import require_dialect
from tests.databases import DIALECTS, SERVERS
from tests.fixtures import FIXTURES
from tests.test_verify import REVISIONS
from tests.test_verify_failures import BROKEN, SECOND, THIRD, append_to_upgrade

pytest_plugins = ["pytester"]

TEST_MODULE = "from idempotify.testing import test_idempotify_check, test_idempotify_verify\n"
ITEMS = ["test_idempotify_check", *(f"test_idempotify_verify[{revision}]" for revision in REVISIONS)]


def demo_project(folder: Path, *, rewritten: bool = True) -> Path:
    """The demo Alembic project in ``folder`` (its revisions rewritten), ``old_versions/`` from before, and the
    test module a user adds."""
    shutil.copytree(FIXTURES / "demo", folder, dirs_exist_ok=True)
    shutil.copytree(folder / "versions", folder / "old_versions")
    if rewritten:
        assert CliRunner().invoke(app, ["-q", str(folder / "versions")]).exit_code == 0
    (folder / "tests").mkdir(exist_ok=True)
    (folder / "tests" / "test_migrations.py").write_text(TEST_MODULE, encoding="utf-8")
    return folder


def ini(pytester: pytest.Pytester, settings: str) -> None:
    """The project's ``pytest.ini``."""
    pytester.makefile(".ini", pytest="[pytest]\n" + settings)


def run(pytester: pytest.Pytester, dialect: str, *arguments: str) -> pytest.RunResult:
    """pytest in the project, verify's scratch databases on ``dialect``'s server."""
    url = [] if dialect == "sqlite" else ["--idempotify-url", SERVERS[dialect]]
    if url:
        require_dialect(dialect)
    # In-process, codemod is imported before the plugin is registered: pytest warns it cannot rewrite its asserts.
    quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    return pytester.runpytest("-v", "-p", "no:cacheprovider", *quiet, *url, *arguments)


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Each item's outcome as ``-v`` prints it, by item name."""
    found = {}
    for line in result.outlines:
        head, separator, rest = line.partition("::")
        if separator and head == "tests/test_migrations.py" and " " in rest:
            name, outcome = rest.split(" ")[:2]
            found[name] = outcome
    return found


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_rewritten_project_has_an_item_per_revision_and_passes(pytester: pytest.Pytester, dialect: str) -> None:
    demo_project(pytester.path)
    ini(pytester, "idempotify_verify_args = --baseline old_versions\n")
    result = run(pytester, dialect)
    assert outcomes(result) == dict.fromkeys(ITEMS, "PASSED"), result.stdout.str()
    assert result.ret == pytest.ExitCode.OK


def test_a_project_not_rewritten_fails_the_check_and_its_revisions(pytester: pytest.Pytester) -> None:
    demo_project(pytester.path, rewritten=False)
    result = run(pytester, "sqlite")
    assert outcomes(result) == dict.fromkeys(ITEMS, "FAILED"), result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "`idempotify --check` exits 1 in *:",
            "Would rewrite versions/1a0c5e2f9b11_create_players.py",
            "*run `idempotify` there to rewrite the revisions",
            "re-run: fail (other): upgrade run again: versions/3c9e6a0b1d33_add_updated_at.py:20: *duplicate column*",
        ]
    )


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_broken_guard_fails_its_revision(pytester: pytest.Pytester, dialect: str) -> None:
    demo_project(pytester.path)
    path = pytester.path / "versions" / THIRD
    text = path.read_text(encoding="utf-8")
    wrong = text.replace('"player_wellness_state", "updated_at"', '"player_wellness_state", "created_at"')
    assert wrong != text
    path.write_text(wrong, encoding="utf-8")
    ini(pytester, "idempotify_verify_args = --baseline old_versions\n")
    result = run(pytester, dialect)
    failed = {"test_idempotify_check": "FAILED", f"test_idempotify_verify[{REVISIONS[2]}]": "FAILED"}
    expected = dict.fromkeys(ITEMS, "PASSED") | failed  # --check: the rewrite would write the guard it should be
    assert outcomes(result) == expected, result.stdout.str()
    result.stdout.fnmatch_lines([f"versions/{THIRD}:", "re-run: fail (guard): *guarded by the rewrite*"])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_failure_only_at_an_unguarded_op_is_expected_unless_strict(pytester: pytest.Pytester, dialect: str) -> None:
    demo_project(pytester.path)
    append_to_upgrade(pytester.path / "versions" / SECOND, BROKEN)  # an UPDATE: the rewrite leaves it unguarded
    ini(pytester, "idempotify_verify_args = --baseline old_versions\n")
    second = f"test_idempotify_verify[{REVISIONS[1]}]"
    result = run(pytester, dialect, "-rx")
    assert outcomes(result) == dict.fromkeys(ITEMS, "PASSED") | {second: "XFAIL"}, result.stdout.str()
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [f"XFAIL *{REVISIONS[1]}* - *only at ops the rewrite left unguarded*upgrade: fail (unguarded): *no_such_table*"]
    )
    strict = run(pytester, dialect, "--idempotify-strict")
    failed = {"test_idempotify_check": "FAILED", second: "FAILED"}  # --check --strict: an op left unguarded
    assert outcomes(strict) == dict.fromkeys(ITEMS, "PASSED") | failed, strict.stdout.str()
    strict.stdout.fnmatch_lines(["*left unguarded: op.execute*"])


def test_strict_from_the_ini_file(pytester: pytest.Pytester) -> None:
    demo_project(pytester.path)
    append_to_upgrade(pytester.path / "versions" / SECOND, BROKEN)
    ini(pytester, "idempotify_strict = true\n")
    result = run(pytester, "sqlite", "-k", REVISIONS[1])
    assert outcomes(result) == {f"test_idempotify_verify[{REVISIONS[1]}]": "FAILED"}, result.stdout.str()


def test_a_verify_warning_is_an_idempotify_warning(pytester: pytest.Pytester) -> None:
    demo_project(pytester.path)
    first = "1a0c5e2f9b11_create_players.py"
    for folder in ("versions", "old_versions"):  # the same downgrade on both sides: it leaves the table
        path = pytester.path / folder / first
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("op.drop_table('players')", "pass"), encoding="utf-8")
    ini(pytester, "idempotify_verify_args = --baseline old_versions\n")
    result = run(pytester, "sqlite")
    assert outcomes(result) == dict.fromkeys(ITEMS, "PASSED"), result.stdout.str()
    result.stdout.fnmatch_lines(
        [f"*/versions/{first}:1: IdempotifyWarning: downgrade: downgrade does not restore the schema*players*"]
    )
    result = run(pytester, "sqlite", "-W", "error::idempotify.testing.IdempotifyWarning")
    expected = dict.fromkeys(ITEMS, "PASSED") | {f"test_idempotify_verify[{REVISIONS[0]}]": "FAILED"}
    assert outcomes(result) == expected, result.stdout.str()


def test_a_revision_that_does_not_import_is_a_collection_error(pytester: pytest.Pytester) -> None:
    demo_project(pytester.path)
    with (pytester.path / "versions" / THIRD).open("a", encoding="utf-8") as file:
        file.write("import no_such_module\n")
    result = run(pytester, "sqlite")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [f"idempotify: cannot list the revisions of *alembic.ini: */{THIRD}:*No module named 'no_such_module'"]
    )


def test_revisions_outside_the_range_are_skipped(pytester: pytest.Pytester) -> None:
    demo_project(pytester.path)
    ini(pytester, "idempotify_verify_args = --revisions 3c9e:\n")
    result = run(pytester, "sqlite", "-k", "verify")
    skipped = {f"test_idempotify_verify[{revision}]": "SKIPPED" for revision in REVISIONS[:2]}
    passed = {f"test_idempotify_verify[{revision}]": "PASSED" for revision in REVISIONS[2:]}
    assert outcomes(result) == skipped | passed, result.stdout.str()


def test_the_project_is_found_above_the_test_module_or_named(pytester: pytest.Pytester) -> None:
    demo_project(pytester.path / "db")
    shutil.move(pytester.path / "db" / "tests", pytester.path / "tests")  # tests/ beside db/, not below it
    result = run(pytester, "sqlite")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*idempotify: no alembic.ini or pyproject.toml with [[]tool.alembic] in *idempotify_config*"]
    )
    result = run(pytester, "sqlite", "--idempotify-config", "db/no_such.ini", "-k", "check")
    result.stdout.fnmatch_lines(["*idempotify: the Alembic configuration */db/no_such.ini: no such file*"])
    result = run(pytester, "sqlite", "--idempotify-config", "db/alembic.ini", "-k", "check")
    assert outcomes(result) == {"test_idempotify_check": "PASSED"}, result.stdout.str()
    ini(pytester, "idempotify_config = db/alembic.ini\n")
    result = run(pytester, "sqlite")
    assert outcomes(result) == dict.fromkeys(ITEMS, "PASSED"), result.stdout.str()


def test_a_verify_that_cannot_run_fails_every_revision_with_its_reason(pytester: pytest.Pytester) -> None:
    demo_project(pytester.path)
    result = run(pytester, "sqlite", "--idempotify-url", "nosuchdriver://localhost/x")
    assert outcomes(result) == dict.fromkeys(ITEMS, "FAILED") | {"test_idempotify_check": "PASSED"}
    result.stdout.fnmatch_lines(["*idempotify verify could not run: *nosuchdriver*"])


COUNTING_CONFTEST = """
from pathlib import Path

import codemod.pytest_plugin as plugin

_run = plugin._idempotify


def counted(project, arguments):
    with (Path(__file__).parent / "runs.log").open("a") as log:
        log.write(" ".join(arguments[:3]) + "\\n")
    return _run(project, arguments)


plugin._idempotify = counted
"""


def test_xdist_workers_share_one_verify(pytester: pytest.Pytester) -> None:
    """Each worker collects the revisions and may get a revision's item: the chain is listed and verified once
    for the test run, not once per worker, and the directory they shared it in is gone afterwards."""
    demo_project(pytester.path)
    ini(pytester, "idempotify_verify_args = --baseline old_versions\n")
    (pytester.path / "conftest.py").write_text(COUNTING_CONFTEST, encoding="utf-8")
    before = set(Path(tempfile.gettempdir()).glob("idempotify-pytest-*"))
    result = run(pytester, "sqlite", "-n", "2")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert sorted(result.parseoutcomes().items()) == [("passed", len(ITEMS))]
    runs = (pytester.path / "runs.log").read_text(encoding="utf-8").splitlines()
    assert sum("verify" in line for line in runs) == 1, runs
    assert sum(line.startswith("-c ") for line in runs) == 1, runs  # the listing of the revisions
    assert set(Path(tempfile.gettempdir()).glob("idempotify-pytest-*")) == before
