"""The result cache and parallel processing: same answers as a cold serial run, invalidated by any input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from codemod import cache as cache_module
from codemod import runner
from codemod.cache import ResultCache, default_directory
from codemod.cli import app
from codemod.formatting import Style
from codemod.results import FileResult, Status
from codemod.runner import process_files
from tests.fixtures import FIXTURES, read_golden

INCIDENT = read_golden(FIXTURES / "add_column" / "incident.py")


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def entries(directory: Path) -> list[Path]:
    return sorted(path for path in (directory / "results").rglob("*") if path.is_file())


@pytest.fixture
def revision(tmp_path: Path) -> Path:
    path = tmp_path / "versions" / "4f2a9c1d7e3b_add_updated_at.py"
    path.parent.mkdir()
    path.write_text(INCIDENT.input, encoding="utf-8")
    return path


def cached_run(path: Path, cache: ResultCache, style: Style | None = None) -> FileResult:
    (result,) = process_files([(path, style or Style())], cache=cache)
    return result


def test_warm_run_answers_from_the_cache(revision: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ResultCache(tmp_path / "cache")
    cold = cached_run(revision, cache)
    assert cold.status is Status.CHANGED and entries(tmp_path / "cache")

    def refuse(source: bytes, style: Style) -> None:
        raise AssertionError("parsed a file the cache should have answered for")

    monkeypatch.setattr(runner, "rewrite_source", refuse)
    warm = cached_run(revision, cache)
    assert warm == cold


def test_a_changed_file_is_parsed_again(revision: Path, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    cached_run(revision, cache)
    revision.write_text(INCIDENT.output, encoding="utf-8")
    result = cached_run(revision, cache)
    assert result.status is Status.UNCHANGED, "the cached CHANGED answer for the old content was used"
    assert len(entries(tmp_path / "cache")) == 2


def test_other_settings_are_other_entries(revision: Path, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    wide = cached_run(revision, cache, Style(line_length=120))
    narrow = cached_run(revision, cache, Style(line_length=40))
    assert wide.rewritten != narrow.rewritten
    assert cache.key(revision.read_bytes(), Style(line_length=40)) != cache.key(revision.read_bytes(), Style())
    assert len(entries(tmp_path / "cache")) == 2


def test_a_new_version_of_idempotify_misses(revision: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ResultCache(tmp_path / "cache")
    before = cache.key(revision.read_bytes(), Style())
    monkeypatch.setattr(cache_module, "__version__", "99.0.0")
    cache_module.tool_fingerprint.cache_clear()
    try:
        assert cache.key(revision.read_bytes(), Style()) != before
    finally:
        monkeypatch.undo()
        cache_module.tool_fingerprint.cache_clear()
    assert cache.key(revision.read_bytes(), Style()) == before


def test_a_damaged_entry_is_a_miss(revision: Path, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    first = cached_run(revision, cache)
    for entry in entries(tmp_path / "cache"):
        entry.write_text('{"status": "changed", "rewrit', encoding="utf-8")
    assert cached_run(revision, cache) == first
    (entry,) = entries(tmp_path / "cache")
    assert json.loads(entry.read_text(encoding="utf-8"))["status"] == "changed", "the entry was not repaired"


def test_the_cli_uses_xdg_cache_home_and_no_cache_bypasses_it(
    revision: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_directory() == tmp_path / "xdg" / "idempotify"
    assert run("--check", "--no-cache", revision).exit_code == 1
    assert not (tmp_path / "xdg").exists()
    assert run("--check", revision).exit_code == 1
    assert entries(tmp_path / "xdg" / "idempotify")


def test_cached_failures_keep_their_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text('revision = "x"\n\ndef upgrade():\n    op.add_column("t", \n', encoding="utf-8")
    cache = ResultCache(tmp_path / "cache")
    cold = cached_run(broken, cache)

    def refuse(source: bytes, style: Style) -> None:
        raise AssertionError("parsed a file the cache should have answered for")

    monkeypatch.setattr(runner, "rewrite_source", refuse)
    warm = cached_run(broken, cache)
    assert cold.status is Status.FAILED and "line" in cold.message
    assert warm == cold


def test_parallel_results_match_serial_ones_in_order(tmp_path: Path) -> None:
    goldens = sorted(FIXTURES.rglob("*.py"))
    files = [(path, Style()) for path in goldens if path.parent.name != "demo"]
    assert len(files) > 16, "enough files to use worker processes"
    serial = list(process_files(files, jobs=1))
    parallel = list(process_files(files, jobs=2))
    assert [result.path for result in parallel] == [path for path, _ in files]
    assert parallel == serial


def test_a_warm_run_starts_no_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [(path, Style()) for path in sorted(FIXTURES.rglob("*.py")) if path.parent.name != "demo"]
    cache = ResultCache(tmp_path / "cache")
    cold = list(process_files(files, jobs=2, cache=cache))

    def refuse(workers: int) -> None:
        raise AssertionError("started worker processes with nothing to parse")

    monkeypatch.setattr(runner, "ProcessPoolExecutor", refuse)
    assert list(process_files(files, jobs=2, cache=cache)) == cold


def test_a_warm_check_does_not_import_libcst(revision: Path, tmp_path: Path) -> None:
    environment = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "PATH": "/usr/bin:/bin"}
    check = ["--check", "-q", str(revision)]
    assert subprocess.run([sys.executable, "-m", "codemod", *check], env=environment, check=False).returncode == 1
    probe = (
        "import runpy, sys\n"
        "try:\n    runpy.run_module('codemod', run_name='__main__')\n"
        "except SystemExit as exit:\n    print(exit.code, sorted({name.partition('.')[0] for name in sys.modules}))"
    )
    warm = subprocess.run(
        [sys.executable, "-c", probe, *check], env=environment, capture_output=True, text=True, check=False
    )
    code, modules = warm.stdout.split(" ", 1)
    assert code == "1", warm.stderr
    assert "'libcst'" not in modules and "'black'" not in modules, "a cache hit should need neither"


def test_concurrent_runs_share_one_cache_safely(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    for index in range(40):
        (versions / f"r{index:03d}.py").write_text(INCIDENT.input.replace("4f2a9c1d7e3b", f"r{index:03d}"), "utf-8")
    command = [sys.executable, "-m", "codemod", "--check", "-q", "-j", "2", str(versions)]
    environment = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "PATH": "/usr/bin:/bin"}
    runs = [subprocess.Popen(command, env=environment) for _ in range(4)]
    assert [process.wait(timeout=300) for process in runs] == [1, 1, 1, 1]
    found = entries(tmp_path / "xdg" / "idempotify")
    assert len(found) == 40
    for entry in found:
        assert json.loads(entry.read_text(encoding="utf-8"))["status"] == "changed"
    assert not [path for path in (tmp_path / "xdg").rglob(".*") if path.is_file()], "temporary files left behind"
