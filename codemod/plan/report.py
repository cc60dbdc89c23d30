"""The plan as people read it (a table per revision), as JSON, or as GitHub annotations."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from codemod import __version__
from codemod.output import escape_data, escape_property, relative_to_cwd
from codemod.plan.planner import FAILS, RUN, SKIP, UNGUARDED, Plan, RevisionPlan

_STYLE = {RUN: "green", SKIP: "cyan", UNGUARDED: "yellow", FAILS: "bold red"}


def _path(path: object) -> str:
    return str(relative_to_cwd(Path(str(path)))) if path else ""


def render_json(plan: Plan) -> str:
    return json.dumps(
        {
            "version": __version__,
            "ok": not plan.failed,
            "url": plan.url,
            "dialect": plan.dialect,
            "heads": list(plan.heads),
            "copy": {"method": plan.method, "not_carried": plan.not_carried, "rows_not_copied": plan.rows_not_copied},
            "revisions": [
                {
                    "revision": revision.id,
                    "path": _path(revision.path),
                    "rewritten_in_memory": revision.rewritten_in_memory,
                    "ops": [
                        {
                            "line": op.line,
                            "rewritten_line": op.rewritten_line,
                            "op": op.call,
                            "action": op.action,
                            "detail": op.detail,
                            "drift": op.drift,
                            "approximate": op.approximate,
                        }
                        for op in revision.ops
                    ],
                    "rewritten_error": revision.rewritten_error,
                    "original": {
                        "status": revision.original,
                        "error": revision.original_error,
                        "path": _path(revision.original_path),
                        "line": revision.original_line,
                        "op": revision.original_call,
                    },
                }
                for revision in plan.revisions
            ],
        },
        indent=2,
    )


def print_text(plan: Plan, console: Console) -> None:
    """A header, then per revision its ops (line, op, action, detail) and the original's outcome; a verdict."""
    at = ", ".join(plan.heads) or "base (no alembic_version rows)"
    count = len(plan.revisions)
    pending = f"{count} revision{'s' if count != 1 else ''} pending" if count else "nothing pending"
    say = console.print
    say(f"idempotify plan: {escape(plan.url)} is at {at}; {pending}", highlight=False)
    if not count:
        return
    say(f"schema copied with {plan.method}", style="dim", highlight=False)
    for caveat in plan.not_carried:
        say(f"not copied: {escape(caveat)}; decisions that depend on them are approximate", style="yellow")
    if plan.rows_not_copied:
        say(f"rows not copied: {', '.join(plan.rows_not_copied)}", style="dim", highlight=False)
    for revision in plan.revisions:
        _print_revision(revision, console)
    say(escape(_verdict(plan)), style="bold red" if plan.failed else "green", highlight=False)


def _print_revision(revision: RevisionPlan, console: Console) -> None:
    memory = " (rewritten in memory; lines are the file's)" if revision.rewritten_in_memory else ""
    console.print(f"\n{revision.id} {escape(_path(revision.path))}{memory}", style="bold", highlight=False)
    rows = [(f"{op.line if op.line is not None else '-'}", op.call, op.action, op.detail) for op in revision.ops]
    widths = [max((len(row[column]) for row in rows), default=0) for column in range(3)]
    for op, (line, call, action, detail) in zip(revision.ops, rows, strict=True):
        shown = f"{action.ljust(widths[2])}  {detail}" if detail else action
        styled = f"[{_STYLE.get(action, 'dim')}]{escape(action)}[/]{escape(shown[len(action) :])}"
        console.print(f"  {line.rjust(widths[0])}  {escape(call.ljust(widths[1]))}  {styled}", highlight=False)
        for line_of_drift in op.drift:
            console.print(f"      [bold red]drift[/]: {escape(line_of_drift)}", highlight=False)
        if op.approximate:
            console.print(f"      [yellow]approximate[/]: {escape(op.approximate)}", highlight=False)
    if not revision.ops:
        console.print("  (no ops)", style="dim")
    if revision.rewritten_error:
        console.print(f"  [bold red]the rewritten revision fails[/]: {escape(revision.rewritten_error)}")
    console.print(f"  original: {escape(_original(revision))}", highlight=False)


def _original(revision: RevisionPlan) -> str:
    if revision.original == "fails":
        where = f"line {revision.original_line}" if revision.original_line is not None else "a line outside the file"
        call = f" ({revision.original_call})" if revision.original_call else ""
        return f"fails at {where}{call}: {revision.original_error}"
    if revision.original == "not known":
        return "not known (the file is already rewritten and has no baseline: --baseline DIR)"
    if revision.original == "not reached":
        return "not reached (the original chain fails before it)"
    return "runs"


def _verdict(plan: Plan) -> str:
    parts = []
    failing = next((revision for revision in plan.revisions if revision.original == "fails"), None)
    if failing is not None:
        parts.append(f"the original chain fails at {failing.id}")
    broken = next((revision for revision in plan.revisions if revision.rewritten_error), None)
    parts.append(f"the rewritten chain fails at {broken.id}" if broken else "the rewritten chain runs")
    drifted = sum(len(op.drift) for revision in plan.revisions for op in revision.ops)
    if drifted:
        parts.append(f"{drifted} object{'s' if drifted != 1 else ''} drifted")
    return "; ".join(parts)


def print_github(plan: Plan) -> None:
    """An error where the original fails, where the rewritten one fails and per drift; a notice per skip."""

    def annotate(level: str, path: object, line: int | None, title: str, message: str) -> None:
        place = f"file={escape_property(_path(path))}" + (f",line={line}" if line is not None else "")
        print(f"::{level} {place},title={escape_property('idempotify plan: ' + title)}::{escape_data(message)}")

    for revision in plan.revisions:
        if revision.original == "fails":
            message = f"{revision.id}: {revision.original_call or 'the revision'}: {revision.original_error}"
            annotate("error", revision.original_path, revision.original_line, "the original fails here", message)
        for op in revision.ops:
            if op.action == FAILS:
                annotate("error", revision.path, op.line, "the rewritten revision fails here", op.detail)
            for line_of_drift in op.drift:
                annotate("error", revision.path, op.line, "drift", f"{op.call} is skipped: {line_of_drift}")
            if op.action == SKIP and not op.drift:
                annotate("notice", revision.path, op.line, SKIP, f"{op.call}: {op.detail}")
        if revision.rewritten_error and not any(op.action == FAILS for op in revision.ops):
            annotate("error", revision.path, None, "the rewritten revision fails", revision.rewritten_error)
