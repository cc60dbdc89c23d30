"""``idempotify verify`` past a failure: the revisions after it are still verified, a range verifies only its
revisions, and each failure says whose fault it is (``cause``). On SQLite: the walk does not depend on the server."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codemod.cli import app
from codemod.formatting import Style
from codemod.runner import rewrite_source
from codemod.verify.causes import line_naming, op_cause, rows_cause
from codemod.verify.scenarios import NO_DOWNGRADE
from tests.fixtures import FIXTURES
from tests.test_verify import REVISIONS, statuses, verify

DEMO = FIXTURES / "demo" / "versions"
SECOND = "2b7d4c8e0a22_wellness_state.py"
THIRD = "3c9e6a0b1d33_add_updated_at.py"
FOURTH = "4d1f7b2c3e44_drop_legacy_score.py"
BROKEN = '    op.execute("UPDATE no_such_table SET x = x + 1")\n'  # data: the rewrite leaves it unguarded


def chains(tmp_path: Path) -> tuple[Path, Path]:
    original, rewritten = tmp_path / "original", tmp_path / "rewritten"
    shutil.copytree(DEMO, original)
    shutil.copytree(DEMO, rewritten)
    assert CliRunner().invoke(app, ["-q", str(rewritten)]).exit_code == 0
    return original, rewritten


def append_to_upgrade(path: Path, line: str) -> None:
    text = path.read_text(encoding="utf-8")
    head, marker, tail = text.partition("\n\ndef downgrade")
    assert marker
    path.write_text(head.rstrip("\n") + "\n" + line + marker + tail, encoding="utf-8")


def test_a_failing_middle_revision_does_not_hide_the_ones_after_it(tmp_path: Path) -> None:
    original, rewritten = chains(tmp_path)
    append_to_upgrade(rewritten / SECOND, BROKEN)
    result, report = verify("sqlite", rewritten, "--baseline", str(original))
    assert result.exit_code == 0, "failing only at an op the rewrite left unguarded is what it announced"
    assert not report["ok"]
    found = statuses(report)
    assert list(found) == REVISIONS
    assert found[REVISIONS[1]]["upgrade"] == "fail"
    second = report["revisions"][1]["scenarios"]["upgrade"]
    assert second["cause"] == "unguarded"
    assert f"{SECOND}:" in second["detail"]
    assert "op `op.execute(" in second["detail"]
    assert "(the baseline's upgrade succeeds)" in second["detail"]
    for revision in REVISIONS[2:]:  # verified from the baseline's state at the failing revision
        assert "fail" not in found[revision].values(), report["revisions"]
        assert found[revision]["upgrade"] == "ok"
    assert "[2/4] 2b7d4c8e0a22" in result.stderr  # a line per revision on stderr when piped


def test_a_revision_whose_baseline_fails_too_is_the_baselines_fault(tmp_path: Path) -> None:
    original, rewritten = chains(tmp_path)
    append_to_upgrade(rewritten / SECOND, BROKEN)
    append_to_upgrade(original / SECOND, BROKEN)
    result, report = verify("sqlite", rewritten, "--baseline", str(original))
    assert result.exit_code == 1
    upgrade = report["revisions"][1]["scenarios"]["upgrade"]
    assert upgrade["cause"] == "baseline"
    assert "(the baseline fails too:" in upgrade["detail"]
    assert [revision["revision"] for revision in report["revisions"]] == REVISIONS


def test_a_broken_guard_is_the_rewrites_defect_and_is_printed_first(tmp_path: Path) -> None:
    original, rewritten = chains(tmp_path)
    append_to_upgrade(rewritten / SECOND, BROKEN)  # an unguarded failure earlier in the chain
    path = rewritten / THIRD
    text = path.read_text(encoding="utf-8")
    wrong = text.replace(
        '"op.add_column: no column", "player_wellness_state", "updated_at"',
        '"op.add_column: no column", "player_wellness_state", "created_at"',
    )
    assert wrong != text
    path.write_text(wrong, encoding="utf-8")
    result, report = verify("sqlite", rewritten, "--baseline", str(original))
    assert result.exit_code == 1
    rerun = report["revisions"][2]["scenarios"]["re-run"]
    assert rerun["cause"] == "guard"
    assert "guarded by the rewrite: the rewrite's defect" in rerun["detail"]
    assert "op `op.add_column(" in rerun["detail"]
    assert "(the original fails the same way: " in rerun["detail"]
    text_result = CliRunner().invoke(app, ["verify", str(rewritten), "--baseline", str(original)])
    findings = [line for line in text_result.stdout.splitlines() if ": fail (" in line]
    assert findings[0].startswith("3c9e6a0b1d33 re-run: fail (guard)"), findings
    assert any(line.startswith("2b7d4c8e0a22 upgrade: fail (unguarded)") for line in findings[1:])
    github = CliRunner().invoke(app, ["verify", str(rewritten), "--baseline", str(original), "--format", "github"])
    annotations = [line for line in github.stdout.splitlines() if line.startswith("::error ")]
    assert any(THIRD in line and "re-run (guard)::" in line for line in annotations), annotations


def test_a_failure_the_original_shares_only_in_part_says_how_the_original_fails(tmp_path: Path) -> None:
    """Run again, the original fails at its add_column, the rewritten file later, at a table both create; each
    downgrade drops a different missing table: "fails too, otherwise", never "the same way" (nor a warning)."""
    original, rewritten = chains(tmp_path)
    for side, missing in ((original, "gone_a"), (rewritten, "gone_b")):
        append_to_upgrade(side / THIRD, '    op.execute("CREATE TABLE extra (id INTEGER)")\n')
        text = (side / THIRD).read_text(encoding="utf-8")
        last = "        op.drop_column('player_wellness_state', 'updated_at')\n"  # the rewritten file's
        last = last if last in text else last[4:]
        text = text.replace(last, last + f'    op.execute("DROP TABLE {missing}")\n')
        (side / THIRD).write_text(text, encoding="utf-8")
    _, report = verify("sqlite", rewritten, "--baseline", str(original))
    scenarios = report["revisions"][2]["scenarios"]
    rerun, downgrade = scenarios["re-run"], scenarios["downgrade"]
    assert rerun["status"] == "fail"
    assert "table extra already exists (the original fails too, otherwise: " in rerun["detail"]
    assert "duplicate column name: updated_at" in rerun["detail"]
    assert downgrade["status"] == "fail", downgrade
    assert "no such table: gone_b (the original fails too, otherwise: " in downgrade["detail"]
    assert "no such table: gone_a)" in downgrade["detail"]
    same = (rewritten / THIRD).read_text(encoding="utf-8").replace("gone_b", "gone_a")
    (rewritten / THIRD).write_text(same, encoding="utf-8")
    _, report = verify("sqlite", rewritten, "--baseline", str(original))
    downgrade = report["revisions"][2]["scenarios"]["downgrade"]
    assert (downgrade["status"], downgrade["cause"]) == ("warn", "baseline")
    assert "the original fails the same way: " in downgrade["detail"]


def test_a_rerun_both_sides_fail_alike_elsewhere_than_at_an_op_is_the_baselines(tmp_path: Path) -> None:
    """mlflow 75868b020152 reads a column of a reflected table that its upgrade then drops: run again, the original
    and the rewritten file fail alike, at code the rewrite cannot guard. A warning, not a failure of the rewrite."""
    original, rewritten = chains(tmp_path)
    read = '    sa.Table("player_wellness_state", sa.MetaData(), autoload_with=op.get_bind()).c.legacy_score\n'
    for side in (original, rewritten):
        text = (side / FOURTH).read_text(encoding="utf-8")
        (side / FOURTH).write_text(text.replace("def upgrade():\n", "def upgrade():\n" + read, 1), encoding="utf-8")
    result, report = verify("sqlite", rewritten, "--baseline", str(original))
    rerun = report["revisions"][3]["scenarios"]["re-run"]
    assert (rerun["status"], rerun["cause"]) == ("warn", "baseline"), rerun
    assert "AttributeError: legacy_score (the original fails the same way: " in rerun["detail"]
    assert result.exit_code == 0, result.stdout


def test_a_range_verifies_only_its_revisions(tmp_path: Path) -> None:
    original, rewritten = chains(tmp_path)
    result, report = verify("sqlite", rewritten, "--baseline", str(original), "--revisions", "2b7d:3c9e")
    assert result.exit_code == 0, result.stdout
    assert list(statuses(report)) == REVISIONS[1:3]
    assert statuses(report)[REVISIONS[2]]["equivalence"] == "ok"
    result, report = verify("sqlite", rewritten, "--revisions", "3c9e:")
    assert list(statuses(report)) == REVISIONS[2:]
    result, _ = verify("sqlite", rewritten, "--revisions", "3c9e:2b7d")
    assert result.exit_code == 2
    assert "comes after" in result.stdout


def test_an_unchanged_revision_whose_sql_holds_the_clock_is_not_a_failure(tmp_path: Path) -> None:
    original, rewritten = chains(tmp_path)
    path = rewritten / "1a0c5e2f9b11_create_players.py"
    append_to_upgrade(path, "    op.execute(f\"UPDATE players SET team = '{datetime.datetime.now().isoformat()}'\")\n")
    path.write_text("import datetime\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    shutil.copy(path, original / path.name)  # the same file on both sides
    result, report = verify("sqlite", rewritten, "--baseline", str(original))
    assert statuses(report)[REVISIONS[0]]["offline"] == "ok", report["revisions"][0]
    assert result.exit_code == 0, result.stdout


def test_a_lost_seed_row_is_a_difference(tmp_path: Path) -> None:
    original, rewritten = chains(tmp_path)
    path = rewritten / SECOND
    text = path.read_text(encoding="utf-8")
    fewer = text.replace(', {"code": "injured", "label": "Injured"}', "")
    assert fewer != text
    path.write_text(fewer, encoding="utf-8")
    result, report = verify("sqlite", rewritten, "--baseline", str(original))
    assert result.exit_code == 1
    equivalence = report["revisions"][1]["scenarios"]["equivalence"]
    assert equivalence["status"] == "fail"
    assert "rows of wellness_statuses: expected" in equivalence["detail"]


@pytest.mark.parametrize("body", ["    pass\n\n\n", None], ids=["pass", "no-downgrade-function"])
def test_a_chain_without_downgrades_says_so_once(tmp_path: Path, body: str | None) -> None:
    """Bodies of ``pass``, or no ``downgrade()`` at all (OpenStack's chains have none), in both versions."""
    original, rewritten = chains(tmp_path)
    for path in [*original.glob("*.py"), *rewritten.glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        start = lines.index("def downgrade():\n") + 1
        end = next((i for i in range(start, len(lines)) if lines[i][:1] not in ("", " ", "\n")), len(lines))
        kept = [*lines[:start], body, *lines[end:]] if body is not None else [*lines[: start - 1], *lines[end:]]
        path.write_text("".join(kept), encoding="utf-8")
    args = ["verify", str(rewritten), "--baseline", str(original)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.stdout
    assert f"downgrade not checked for 4 of 4 revisions: {NO_DOWNGRADE}" in result.stdout
    per_revision = [line for line in result.stdout.splitlines() if " downgrade: " in line and NO_DOWNGRADE not in line]
    assert per_revision == []
    assert "offline" in result.stdout and "…" not in result.stdout  # a narrow terminal does not cut the table


def test_what_a_revision_prints_goes_to_stderr_not_into_the_report(tmp_path: Path) -> None:
    _, rewritten = chains(tmp_path)
    append_to_upgrade(rewritten / SECOND, '    print("seeding statuses")\n')
    result, report = verify("sqlite", rewritten)
    assert result.exit_code == 0, result.stdout
    assert report["ok"] is True  # stdout is the JSON report alone
    assert "seeding statuses" in result.stderr


def test_an_equivalence_failure_names_the_file_line_and_op(tmp_path: Path) -> None:
    original, rewritten = chains(tmp_path)
    path = rewritten / THIRD
    text = path.read_text(encoding="utf-8")
    skipping = text.replace(  # a guard that finds the column already there skips the op
        '"op.add_column: no column", "player_wellness_state", "updated_at"',
        '"op.add_column: no column", "player_wellness_state", "id"',
    )
    assert skipping != text
    path.write_text(skipping, encoding="utf-8")
    result, report = verify("sqlite", rewritten, "--baseline", str(original))
    assert result.exit_code == 1
    (third,) = (found for found in report["revisions"] if found["revision"] == "3c9e6a0b1d33")
    equivalence = third["scenarios"]["equivalence"]
    assert equivalence["status"] == "fail"
    assert equivalence["cause"] == "guard", equivalence["detail"]
    line = next(number for number, text in enumerate(skipping.splitlines(), 1) if "op.add_column(" in text)
    assert equivalence["detail"].startswith(f"{THIRD}:{line}: schema differs from the baseline's: ")
    assert "[op `op.add_column(" in equivalence["detail"]


def test_failures_only_at_unguarded_ops_exit_0_and_1_with_strict(tmp_path: Path) -> None:
    original, rewritten = chains(tmp_path)
    append_to_upgrade(rewritten / SECOND, BROKEN)
    arguments = ["verify", str(rewritten), "--baseline", str(original)]
    text = CliRunner().invoke(app, arguments)
    assert text.exit_code == 0
    assert "1 of 4 revisions fail, only at ops the rewrite left unguarded, as it said (exit 0; --strict exits 1)" in (
        text.stdout
    )
    assert CliRunner().invoke(app, [*arguments, "--strict"]).exit_code == 1


def test_a_schema_difference_is_blamed_on_a_guarded_batch_op_whose_guard_alone_names_the_table() -> None:
    """Found on mlflow's chain: a batch op names its table only in its guard (the block is opened through a
    helper of the project's), and the first plain mention of the table is the block; the guard is the
    difference between the files, so its op is the one to blame."""
    source = textwrap.dedent(
        """\
        def upgrade():
            with batch("orders") as batch_op:
                if _idempotify("batch_op.drop_constraint: constraint", "orders", "uq_orders_code", "unique"):
                    batch_op.drop_constraint("uq_orders_code", type_="unique")
                batch_op.create_unique_constraint("uq_orders_code", ["code", "user_id"])
        """
    )
    line = line_naming(source, {"orders"})
    assert line == 4
    cause, why = op_cause(source, line)
    assert cause == "guard"
    assert 'batch_op.drop_constraint("uq_orders_code"' in why
    assert line_naming(source.replace('"orders", "uq_orders_code"', '"customers", "uq"'), {"orders"}) == 2


def test_a_change_of_rows_alone_is_blamed_on_the_ops_that_inserted_into_them() -> None:
    """A re-run that inserts a seed row again changes rows without failing: the op that inserted into the table
    whose rows differ is to blame, as the rewrite classed it; a difference beyond rows, or rows no op of the
    run inserted into, stays ``other``."""
    source = textwrap.dedent(
        """\
        def upgrade():
            op.bulk_insert(notes, [{"body": "welcome"}])
            if _idempotify("op.create_table: no table", "tags"):
                tags = op.create_table("tags", sa.Column("name", sa.String(8)))
            if _idempotify("op.bulk_insert: no row", "tags"):
                op.bulk_insert(tags, [{"name": "a"}])
        """
    )
    notes = "rows of notes: expected [1 row], got [2 rows]"
    cause, line, why = rows_cause(source, [notes], {"notes": {2}})
    assert (cause, line) == ("unguarded", 2)
    assert why.startswith(" [op `op.bulk_insert(notes, ")
    assert "left unguarded by the rewrite: data change;" in why
    assert rows_cause(source, [notes, "notes.columns: pinned missing"], {"notes": {2}}) == ("other", None, "")
    assert rows_cause(source, [notes], {"tags": {6}}) == ("other", None, ""), "no op of the run inserted into it"
    cause, line, why = rows_cause(source, ["rows of tags: ...", notes], {"tags": {6}, "notes": {2}})
    assert (cause, line) == ("guard", 6), "one guarded op among them: the rewrite's defect"
    assert "guarded by the rewrite: the rewrite's defect" in why


def test_a_failure_at_a_guarded_op_the_rewrite_reports_at_risk_is_expected() -> None:
    """Its guard stays, but the rewrite said a re-run may fail there as the original does: not its defect."""
    source = textwrap.dedent(
        """\
        from alembic import op

        revision = "r"


        def upgrade():
            for name in ("a", "b"):
                op.drop_index("ix_" + name, table_name=name)
            for old, new in [("a", "a2")]:
                op.rename_table(old, new)
        """
    )
    rewritten, _ = rewrite_source(source.encode(), Style())
    text = rewritten.decode()
    line = next(number for number, row in enumerate(text.splitlines(), 1) if "op.drop_index(" in row)
    cause, why = op_cause(text, line)
    assert cause == "unguarded"
    assert "at risk: guarded, but `op.rename_table(old, ...)`" in why
