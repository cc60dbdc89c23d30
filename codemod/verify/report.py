"""The verify report: a table of revisions by scenario, then every finding in words; or JSON."""

from __future__ import annotations

import json

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from codemod import __version__
from codemod.output import escape_data, escape_property, relative_to_cwd
from codemod.verify.scenarios import NO_DOWNGRADE, SCENARIOS, Result, RevisionReport

_STYLE = {"ok": "green", "fail": "bold red", "warn": "yellow", "not checked": "dim", "not run": "dim"}


def _routine(detail: str) -> bool:
    """A "not checked" that needs no explanation line: no baseline given, or one op only."""
    return detail.startswith(("no baseline", "fewer than two ops", NO_DOWNGRADE))


def fails(reports: list[RevisionReport], *, strict: bool = False) -> bool:
    """Whether verify exits 1: a scenario fails at a guard, or elsewhere than at an op the rewrite left
    unguarded (with ``strict``, there too). A failure at an unguarded op is the one the rewrite announced when
    it listed the op: a chain with seed data always has one, and failing CI for it would teach users to
    ignore verify; ``--strict`` is for those who want every re-run to hold, as the rewrite's ``--strict``."""
    failures = [result for report in reports for result in report.results.values() if result.status == "fail"]
    return any(strict or result.cause != "unguarded" for result in failures)


def render_json(reports: list[RevisionReport]) -> str:
    return json.dumps(
        {
            "version": __version__,
            "ok": not any(report.failed for report in reports),
            "revisions": [
                {
                    "revision": report.revision.id,
                    "path": str(relative_to_cwd(report.revision.path)),
                    "scenarios": {
                        name: {"status": result.status, "detail": result.detail}
                        | ({"cause": result.cause} if result.cause else {})
                        for name, result in report.results.items()
                    },
                }
                for report in reports
            ],
        },
        indent=2,
    )


def print_text(reports: list[RevisionReport], console: Console, *, strict: bool = False) -> None:
    """The table (coloured on a terminal), then one line per finding that is not ``ok``."""
    table = Table(
        title="idempotify verify", title_justify="left", box=box.HEAVY_HEAD if console.is_terminal else box.ASCII
    )
    table.add_column("revision", no_wrap=True)
    for name in SCENARIOS:
        table.add_column(name, no_wrap=True)
    for report in reports:
        cells = []
        for name in SCENARIOS:
            result = report.results.get(name)
            status = result.status if result is not None else "not run"
            cells.append(f"[{_STYLE[status]}]{'-' if status == 'not checked' else status}[/]")
        table.add_row(report.revision.id, *cells)
    # Never cut: as wide as the table needs, whatever the terminal's width.
    needed = table.__rich_measure__(console, console.options.update_width(10_000)).maximum
    width = console.width
    console.width = max(width, needed)
    console.print(table, crop=False)
    console.width = width
    findings = [
        (report, name, result)
        for report in reports
        for name, result in report.results.items()
        if not (result.status in ("ok", "not run") or (result.status == "not checked" and _routine(result.detail)))
    ]
    # The rewrite's defects first: those are what to fix in idempotify's output.
    findings.sort(key=lambda finding: finding[2].cause != "guard" or finding[2].status != "fail")
    for report, name, result in findings:
        cause = f" ({result.cause})" if result.cause and result.status == "fail" else ""
        status = f"[{_STYLE[result.status]}]{result.status}[/]{cause}"
        console.print(
            f"{report.revision.id} {name}: {status}: {escape(result.detail)}", highlight=False, soft_wrap=True
        )
    without = sum(report.results.get("downgrade", Result("ok")).detail == NO_DOWNGRADE for report in reports)
    if without:  # said once, not once per revision: many chains have no downgrades at all
        console.print(f"[dim]downgrade not checked for {without} of {len(reports)} revisions: {NO_DOWNGRADE}[/]")
    if any(result.status == "not checked" for report in reports for result in report.results.values()):
        legend = "-: not checked (no baseline to compare with, fewer than two ops to stop between, or no downgrade)"
        console.print(f"[dim]{legend}[/]", highlight=False, soft_wrap=True)
    failed = sum(report.failed for report in reports)
    if failed and not fails(reports, strict=strict):
        expected = "only at ops the rewrite left unguarded, as it said (exit 0; --strict exits 1)"
        console.print(f"[yellow]{failed} of {len(reports)} revisions fail, {expected}[/]", highlight=False)
    elif failed:
        console.print(f"[bold red]{failed} of {len(reports)} revisions fail[/]", highlight=False)
    else:
        held = "the revision holds" if len(reports) == 1 else f"all {len(reports)} revisions hold"
        console.print(f"[green]{held}[/]", highlight=False)


def print_github(reports: list[RevisionReport]) -> None:
    """GitHub Actions workflow commands: an error per failing scenario, a warning per warning, on its file."""
    for report in reports:
        path = escape_property(str(relative_to_cwd(report.revision.path)))
        for name, result in report.results.items():
            if result.status in ("fail", "warn"):
                level = "error" if result.status == "fail" else "warning"
                cause = f" ({result.cause})" if result.cause else ""
                title = escape_property(f"idempotify verify: {name}{cause}")
                print(f"::{level} file={path},title={title}::{escape_data(result.detail)}")
