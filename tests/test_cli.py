"""The command line contract: one test per flag and per exit code."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from codemod import __version__
from codemod.cli import app
from codemod.formatting import style_for
from codemod.runner import ChangedOnDiskError, process_files, write_result
from codemod.specs import SPECS
from tests.fixtures import FIXTURES, read_golden, sample_versions

INCIDENT = read_golden(FIXTURES / "add_column" / "incident.py")
UNCHANGED = read_golden(FIXTURES / "no_change" / "unsupported_ops.py")


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    """A versions directory with the incident migration, a revision that needs nothing, and env.py."""
    directory = sample_versions(tmp_path)
    (tmp_path / "env.py").write_text("from alembic import context\n", encoding="utf-8")
    return directory


def test_rewrites_in_place(versions: Path) -> None:
    result = run(versions)
    assert result.exit_code == 0, result.stderr
    assert (versions / "4f2a9c1d7e3b_add_updated_at.py").read_text(encoding="utf-8") == INCIDENT.output
    assert (versions / "4c5d6e7f8a9b_alter.py").read_text(encoding="utf-8") == UNCHANGED.input
    assert f"Rewrote {versions / '4f2a9c1d7e3b_add_updated_at.py'}" in result.stderr
    assert "files: 1 rewritten, 1 unchanged; ops: 2 guarded, 2 already safe, 0 skipped by marker, 2 left unguarded" in (
        result.stderr
    )
    assert result.stdout == ""


def test_check_writes_nothing_and_exits_1(versions: Path) -> None:
    before = {path: path.read_bytes() for path in versions.iterdir()}
    result = run("--check", versions)
    assert result.exit_code == 1
    assert f"Would rewrite {versions / '4f2a9c1d7e3b_add_updated_at.py'}" in result.stderr
    assert {path: path.read_bytes() for path in versions.iterdir()} == before


def test_check_passes_once_rewritten(versions: Path) -> None:
    assert run(versions).exit_code == 0
    result = run("--check", versions)
    assert result.exit_code == 0, result.stderr
    assert "Would rewrite" not in result.stderr


def test_diff_prints_a_unified_diff_and_writes_nothing(versions: Path) -> None:
    path = versions / "4f2a9c1d7e3b_add_updated_at.py"
    result = run("--diff", versions)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"--- {path}\n+++ {path}\n@@ ")
    guard = '+    if _idempotify("op.add_column: no column", "player_wellness_state", "updated_at"):\n'
    assert guard in result.stdout
    assert path.read_text(encoding="utf-8") == INCIDENT.input


def test_diff_is_empty_when_nothing_changes(versions: Path) -> None:
    run(versions)
    result = run("--diff", versions)
    assert (result.exit_code, result.stdout) == (0, "")


def test_unparsable_file_is_reported_left_alone_and_others_still_processed(versions: Path) -> None:
    broken = versions / "0000_broken.py"
    broken_bytes = b"revision = 'x'\n\ndef upgrade():\n    op.drop_table('t'\n\ndef downgrade():\n    pass\n"
    broken.write_bytes(broken_bytes)
    result = run(versions)
    assert result.exit_code == 2
    assert f"error: {broken}: line 4: invalid Python: '(' was never closed" in result.stderr
    assert broken.read_bytes() == broken_bytes
    assert (versions / "4f2a9c1d7e3b_add_updated_at.py").read_text(encoding="utf-8") == INCIDENT.output


def test_directory_skips_files_that_are_not_revisions(tmp_path: Path, versions: Path) -> None:
    (versions / "__init__.py").write_text("", encoding="utf-8")
    (versions / "helpers.py").write_text("from alembic import op\n\ndef drop(): op.drop_table('t')\n", encoding="utf-8")
    result = run(tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "3 skipped (not revision files)" in result.stderr
    assert (versions / "helpers.py").read_text(encoding="utf-8").endswith("op.drop_table('t')\n")


def test_a_named_file_that_is_not_a_revision_is_said_to_be_skipped(versions: Path) -> None:
    helper = versions / "helpers.py"
    helper.write_text("from alembic import op\n", encoding="utf-8")
    result = run(helper)
    assert result.exit_code == 0
    assert f"skipped {helper}: not an Alembic revision file" in result.stderr


def test_a_directory_without_revision_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "env.py").write_text("from alembic import context\n", encoding="utf-8")
    result = run("--check", tmp_path)
    assert result.exit_code == 2
    assert f"error: {tmp_path}: no Alembic revision files below it" in result.stderr


def test_strict_fails_while_ops_are_left_unguarded(versions: Path) -> None:
    assert run(versions).exit_code == 0
    assert run("--check", versions).exit_code == 0
    result = run("--check", "--strict", versions)
    assert result.exit_code == 1
    assert "left unguarded: op.create_table_comment" in result.stderr


def test_line_length_below_40_is_refused(versions: Path) -> None:
    result = run("--line-length", "0", versions)
    assert result.exit_code == 2
    assert (versions / "4f2a9c1d7e3b_add_updated_at.py").read_text(encoding="utf-8") == INCIDENT.input


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    result = run(tmp_path / "nope")
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'nope'}: no such file or directory" in result.stderr


def test_left_unguarded_ops_are_listed_with_file_and_line(versions: Path) -> None:
    result = run("--check", versions)
    path = versions / "4c5d6e7f8a9b_alter.py"
    assert f"{path}:20: left unguarded: op.create_table_comment: no guard for create_table_comment yet" in result.stderr
    assert f"{path}:26: left unguarded: op.drop_table_comment: no guard for drop_table_comment yet" in result.stderr


def test_write_keeps_the_mode_and_leaves_no_temporary_file(versions: Path) -> None:
    path = versions / "4f2a9c1d7e3b_add_updated_at.py"
    path.chmod(0o640)
    assert run(versions).exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in versions.iterdir()) == ["4c5d6e7f8a9b_alter.py", "4f2a9c1d7e3b_add_updated_at.py"]


def test_a_file_changed_on_disk_after_reading_is_not_overwritten(versions: Path) -> None:
    path = versions / "4f2a9c1d7e3b_add_updated_at.py"
    (result,) = process_files([(path, style_for(path))])
    path.write_text(INCIDENT.input + "# edited meanwhile\n", encoding="utf-8")
    with pytest.raises(ChangedOnDiskError):
        write_result(result)
    assert path.read_text(encoding="utf-8").endswith("# edited meanwhile\n")


def test_line_length_comes_from_the_projects_tool_black(tmp_path: Path, versions: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.black]\nline-length = 60\n", encoding="utf-8")
    assert run(versions).exit_code == 0
    text = (versions / "4f2a9c1d7e3b_add_updated_at.py").read_text(encoding="utf-8")
    guard = '    if _idempotify(\n        "op.add_column: no column",\n        "player_wellness_state",\n'
    assert guard in text


def test_line_length_option_overrides_the_project(tmp_path: Path, versions: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.black]\nline-length = 60\n", encoding="utf-8")
    assert run("--line-length", "120", versions).exit_code == 0
    text = (versions / "4f2a9c1d7e3b_add_updated_at.py").read_text(encoding="utf-8")
    assert '    if _idempotify("op.add_column: no column", "player_wellness_state", "updated_at"):\n' in text


def test_crlf_line_endings_and_other_bytes_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "0001_crlf.py"
    source = INCIDENT.input.replace("\n", "\r\n").replace("# revision identifiers", "# révision identifiers")
    path.write_bytes(source.encode("utf-8"))
    assert run(path).exit_code == 0
    data = path.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n")
    assert (
        data
        == INCIDENT.output.replace("\n", "\r\n").replace("# revision identifiers", "# révision identifiers").encode()
    )


def test_a_declared_encoding_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "0001_latin1.py"
    source = "# -*- coding: latin-1 -*-\n# caf\xe9\n" + INCIDENT.input
    path.write_bytes(source.encode("latin-1"))
    assert run(path).exit_code == 0
    assert path.read_bytes() == ("# -*- coding: latin-1 -*-\n# caf\xe9\n" + INCIDENT.output).encode("latin-1")


def test_tabs_indent_the_new_lines_with_tabs(tmp_path: Path) -> None:
    path = tmp_path / "0001_tabs.py"
    path.write_text(INCIDENT.input.replace("    op.", "\top."), encoding="utf-8")
    assert run(path).exit_code == 0
    text = path.read_text(encoding="utf-8")
    guard = '\tif _idempotify(\n\t    "op.add_column: no column", "player_wellness_state", "updated_at"\n\t):\n'
    assert guard + "\t\top.add_column(" in text
    generated = text.split("def _idempotify(")[1]
    assert "\n\t" in generated and "\n    " not in generated


def test_version() -> None:
    result = run("--version")
    assert (result.exit_code, result.stdout) == (0, f"idempotify {__version__}\n")


def test_list_ops_names_every_op_kind() -> None:
    result = run("--list-ops")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == list(SPECS)


def test_a_symlinked_file_is_written_through_and_said_so(tmp_path: Path, versions: Path) -> None:
    link = tmp_path / "linked.py"
    target = versions / "4f2a9c1d7e3b_add_updated_at.py"
    os.symlink(target, link)
    result = run(link)
    assert result.exit_code == 0
    assert f"Rewrote {link} (a symlink: wrote {target.resolve()})" in result.stderr
    assert link.is_symlink()
    assert target.read_text(encoding="utf-8") == INCIDENT.output


def test_a_symlinked_directory_is_not_entered_and_said_so(tmp_path: Path, versions: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "9a9a9a9a9a9a_other.py").write_text(INCIDENT.input, encoding="utf-8")
    os.symlink(elsewhere, versions / "linked")
    result = run("--check", versions)
    assert f"not followed: {versions / 'linked'} is a symlinked directory" in result.stderr
    assert "9a9a9a9a9a9a_other.py" not in result.stderr


def test_a_broken_symlink_is_an_error_that_says_so(tmp_path: Path, versions: Path) -> None:
    os.symlink(tmp_path / "gone.py", versions / "0000_gone.py")
    result = run("--check", versions)
    assert result.exit_code == 2
    assert f"error: {versions / '0000_gone.py'}: a broken symlink (to {tmp_path / 'gone.py'})" in result.stderr
    assert "Would rewrite" in result.stderr, "the other files are still processed"


# The bad-input matrix: each gets a clear message, its file is left as it was, and the exit code says so.


def test_a_byte_order_mark_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "0001_bom.py"
    path.write_bytes(b"\xef\xbb\xbf" + INCIDENT.input.encode())
    assert run(path).exit_code == 0
    assert path.read_bytes() == b"\xef\xbb\xbf" + INCIDENT.output.encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (INCIDENT.input.encode().replace(b"add updated_at", b"add \xff updated_at"), "line 1: "),
        (
            INCIDENT.input.encode().replace(b"def downgrade", b"# caf\xe9\ndef downgrade"),
            f"line {INCIDENT.input.splitlines().index('def downgrade():') + 1}: not valid text",
        ),
    ],
    ids=["first-line", "later-line"],
)
def test_invalid_utf8_is_reported_with_its_line_and_left_alone(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "0001_latin.py"
    path.write_bytes(data)
    result = run(path)
    assert result.exit_code == 2
    assert f"error: {path}: {message}" in result.stderr
    assert path.read_bytes() == data


def test_an_empty_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "empty.py"
    path.write_bytes(b"")
    result = run(path)
    assert result.exit_code == 0
    assert f"skipped {path}: not an Alembic revision file" in result.stderr


def test_a_very_large_file_is_rewritten(tmp_path: Path) -> None:
    ops = "".join(f"    op.add_column('users', sa.Column('c{i}', sa.Integer()))\n" for i in range(3000))
    path = tmp_path / "0001_large.py"
    path.write_text(f"from alembic import op\nimport sqlalchemy as sa\n\nrevision = 'x'\n\n\ndef upgrade():\n{ops}")
    result = run(path)
    assert result.exit_code == 0, result.stderr
    assert "ops: 3000 guarded" in result.stderr


def test_a_read_only_file_is_not_written(versions: Path) -> None:
    path = versions / "4f2a9c1d7e3b_add_updated_at.py"
    path.chmod(0o444)
    result = run(versions)
    assert result.exit_code == 2
    assert f"error: {path}: cannot write: the file is read-only" in result.stderr
    assert path.read_text(encoding="utf-8") == INCIDENT.input


def test_an_unreadable_file_is_reported_and_the_others_processed(
    versions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreadable = versions / "4c5d6e7f8a9b_alter.py"
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == unreadable:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    result = run(versions)
    assert result.exit_code == 2
    assert f"error: {unreadable}: cannot read: Permission denied" in result.stderr
    assert (versions / "4f2a9c1d7e3b_add_updated_at.py").read_text(encoding="utf-8") == INCIDENT.output


def test_a_failure_between_reading_and_writing_leaves_the_original(
    versions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = versions / "4f2a9c1d7e3b_add_updated_at.py"

    def broken_replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("codemod.runner.os.replace", broken_replace)
    result = run(versions)
    assert result.exit_code == 2
    assert "cannot write: No space left on device" in result.stderr
    assert path.read_text(encoding="utf-8") == INCIDENT.input
    assert sorted(p.name for p in versions.iterdir()) == ["4c5d6e7f8a9b_alter.py", "4f2a9c1d7e3b_add_updated_at.py"]


def test_a_helper_block_changed_by_hand_is_refused_and_kept(versions: Path) -> None:
    """A rewrite writes the generated helpers anew: over a change made by hand, it would lose it. The block's
    header holds the fingerprint of its code; a file whose block no longer matches it is refused, untouched,
    and the other files are still rewritten."""
    assert run(versions).exit_code == 0
    edited = versions / "4f2a9c1d7e3b_add_updated_at.py"
    source = edited.read_text(encoding="utf-8")
    header = next(number for number, line in enumerate(source.splitlines(), 1) if "generated guards" in line)
    changed = source.replace(
        "    if op.get_context().as_sql:\n", "    print('mine')\n    if op.get_context().as_sql:\n"
    )
    assert changed != source
    edited.write_text(changed, encoding="utf-8")
    other = versions / "5e6f7a8b9c0d_other.py"
    other.write_text(INCIDENT.input.replace("4f2a9c1d7e3b", "5e6f7a8b9c0d"), encoding="utf-8")
    result = run(versions)
    assert result.exit_code == 2
    assert f"{edited}: line {header}: the generated guard helpers below this line were changed by hand" in (
        result.stderr
    )
    assert edited.read_text(encoding="utf-8") == changed
    assert other.read_text(encoding="utf-8") != INCIDENT.input.replace("4f2a9c1d7e3b", "5e6f7a8b9c0d")


def test_a_helper_block_only_laid_out_anew_is_rewritten(versions: Path) -> None:
    """The fingerprint is of the code, not its layout: a block a project's formatter re-wrapped (here: another
    line length), or one from before fingerprints, is written again as usual."""
    assert run(versions).exit_code == 0
    path = versions / "4f2a9c1d7e3b_add_updated_at.py"
    written = path.read_text(encoding="utf-8")
    assert run("--line-length", "60", versions).exit_code == 0
    assert path.read_text(encoding="utf-8") != written
    assert run(versions).exit_code == 0
    assert path.read_text(encoding="utf-8") == written
    old = re.sub(r"do not edit \[[0-9a-f]{8}\]", "do not edit.", written).replace("    import sqlalchemy\n", "", 1)
    path.write_text(old, encoding="utf-8")
    result = run(versions)
    assert result.exit_code == 0, result.stderr
    assert path.read_text(encoding="utf-8") == written
