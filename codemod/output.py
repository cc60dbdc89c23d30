"""What the rewrite prints: for people (text, coloured on a terminal), for machines (JSON), for CI (GitHub).

Text: one message per file and per op left unguarded, then a summary, on
stderr; the diff on stdout. Colour only on a terminal, never with
``NO_COLOR`` set. ``--verbose`` adds every op, whatever became of it, and
every file skipped; ``--quiet`` keeps errors only.
JSON: one document on stdout, written at the end: every file with its status
and ops, and the totals.
GitHub: workflow commands (``::error file=...,line=...::``) on stdout, which
GitHub Actions shows as annotations on the pull request; the summary on stderr.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

from rich.console import Console
from rich.text import Text

from codemod import __version__
from codemod.results import FileResult, OpReport, Outcome, Status


def relative_to_cwd(path: Path) -> Path:
    """``path`` relative to the working directory when it is below it, as a person would type it."""
    try:
        return path.absolute().relative_to(Path.cwd())
    except ValueError:
        return path


def console(*, stderr: bool) -> Console:
    """A rich console: colour and styles on a terminal only, none at all when ``NO_COLOR`` is set."""
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(stderr=stderr, highlight=False, soft_wrap=True, color_system=None if plain else "auto")


class Format(str, Enum):
    TEXT = "text"
    JSON = "json"
    GITHUB = "github"


def unified_diff(result: FileResult, *, created: bool = False) -> str:
    """The change as a patch; a ``created`` file's comes from ``/dev/null``, as ``git apply`` takes a new file."""
    assert result.rewritten is not None
    before = result.original.decode("utf-8", errors="replace").splitlines(keepends=True)
    after = result.rewritten.decode("utf-8", errors="replace").splitlines(keepends=True)
    name = str(result.path)
    return "".join(difflib.unified_diff(before, after, fromfile="/dev/null" if created else name, tofile=name))


def summary_line(results: Sequence[FileResult], *, written: bool) -> str:
    statuses = Counter(result.status for result in results)
    outcomes = Counter(report.outcome for result in results for report in result.reports)
    files = [
        f"{statuses[Status.CHANGED]} {'rewritten' if written else 'would be rewritten'}",
        f"{statuses[Status.UNCHANGED]} unchanged",
    ]
    if statuses[Status.SKIPPED]:
        files.append(f"{statuses[Status.SKIPPED]} skipped (not revision files)")
    if statuses[Status.FAILED]:
        files.append(f"{statuses[Status.FAILED]} failed")
    ops = [f"{outcomes[outcome]} {outcome.value}" for outcome in Outcome]
    return f"idempotify: files: {', '.join(files)}; ops: {', '.join(ops)}"


def reason_counts(results: Sequence[FileResult]) -> list[tuple[str, int]]:
    """Each outcome but guarded, with its reason (``left unguarded: <why>``), and how many ops got it."""
    reasons = Counter(
        f"{report.outcome.value}: {report.reason}"
        for result in results
        for report in result.reports
        if report.outcome is not Outcome.GUARDED
    )
    return reasons.most_common()


class Printer:
    """Prints the rewrite's findings in one ``Format``; ``file`` as each result comes, ``finish`` at the end."""

    def __init__(self, output_format: Format, *, check: bool, diff: bool, quiet: bool, verbose: bool) -> None:
        self.format = output_format
        self.check = check
        self.diff = diff
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self.strict = False  # under --strict an op left unguarded is an error: shown even when quiet
        self.stderr = console(stderr=True)
        self.stdout = console(stderr=False)
        self._json_files: list[dict[str, object]] = []
        self._json_errors: list[str] = []

    @property
    def written(self) -> bool:
        return not (self.check or self.diff)

    def note(self, message: str, *, verbose_only: bool = False) -> None:
        """A remark about the run itself (which configuration was used), unless quiet or for machines."""
        if not self.quiet and self.format is not Format.JSON and (self.verbose or not verbose_only):
            self._say(Text(message, style="dim"))

    def error(self, message: str) -> None:
        if self.format is Format.JSON:
            self._json_errors.append(message)
        elif self.format is Format.GITHUB:
            sys.stdout.write(f"::error title=idempotify::{escape_data(message)}\n")
        else:
            self._say(Text.assemble(("error: ", "bold red"), message))

    def file(self, result: FileResult, *, named: bool) -> None:
        if self.format is Format.JSON:
            self._json_file(result)
        elif self.format is Format.GITHUB:
            self._github_file(result)
        else:
            self._text_file(result, named=named)

    def helpers_module(self, result: FileResult, *, created: bool) -> None:
        """The shared helpers module: its diff (a new file's from /dev/null), and what is done with it."""
        if self.format is Format.JSON:
            self._json_file(result, created=created)
            return
        if self.format is Format.GITHUB and result.status is Status.CHANGED and not self.written:
            message = "the shared helpers module lacks what the migrations import from it; run idempotify"
            self._annotate("error", str(result.path), None, "idempotify: helpers module out of date", message)
            return
        if self.format is Format.GITHUB or result.status is not Status.CHANGED:
            self.file(result, named=True)
            return
        if self.diff:
            self._print_diff(unified_diff(result, created=created))
        if not self.quiet:
            verb = (
                ("Created " if created else "Rewrote ")
                if self.written
                else ("Would create " if created else "Would rewrite ")
            )
            self._say(Text.assemble((verb, "bold"), str(result.path), ": the helpers the migrations import"))

    def finish(self, results: Sequence[FileResult], exit_code: int) -> None:
        if self.format is Format.JSON:
            statuses = Counter(result.status.value for result in results)
            outcomes = Counter(report.outcome.value for result in results for report in result.reports)
            document = {
                "version": __version__,
                "exit_code": exit_code,
                "files": self._json_files,
                "errors": self._json_errors,
                "totals": {
                    "files": {status.value: statuses[status.value] for status in Status},
                    "ops": {outcome.value: outcomes[outcome.value] for outcome in Outcome},
                },
            }
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
            return
        if self.quiet:
            return
        self._say(Text(summary_line(results, written=self.written), style="bold"))
        for reason, count in reason_counts(results):
            self._say(f"  {count} x {reason}")

    def _say(self, text: Text | str) -> None:
        """One line on stderr: through rich on a terminal (colour, a live progress bar), else as it is.

        Rich costs about a millisecond a line, which on 2,000 files is seconds of the main process.
        """
        if self.stderr.is_terminal:
            self.stderr.print(text if isinstance(text, Text) else Text(text))  # never read as markup
        else:
            sys.stderr.write((text.plain if isinstance(text, Text) else text) + "\n")

    # Text.

    def _text_file(self, result: FileResult, *, named: bool) -> None:
        path = str(result.path)
        if result.status is Status.FAILED:
            self.error(f"{path}: {result.message}")
            return
        if result.status is Status.SKIPPED and (named or self.verbose) and not self.quiet:
            self._say(f"skipped {path}: {result.message} (it must assign `revision` and define upgrade())")
        if self.diff and result.status is Status.CHANGED:
            self._print_diff(unified_diff(result))
        if result.status is Status.CHANGED and not self.quiet:
            through = ""
            if result.path.is_symlink():
                through = f" (a symlink: {'wrote' if self.written else 'would write'} {result.path.resolve()})"
            verb = "Rewrote " if self.written else "Would rewrite "
            self._say(Text.assemble((verb, "bold"), path, through))
        for report in result.reports:
            if (report.outcome is Outcome.UNGUARDED and (self.strict or not self.quiet)) or self.verbose:
                colour = "yellow" if report.outcome is Outcome.UNGUARDED else "green"
                reason = f": {report.reason}" if report.reason else ""
                where = f"{path}:{report.line}: "
                self._say(Text.assemble(where, (report.outcome.value, colour), f": {report.call}{reason}"))

    def _print_diff(self, diff: str) -> None:
        if not self.stdout.is_terminal or self.stdout.no_color:
            sys.stdout.write(diff)
            sys.stdout.flush()
            return
        for line in diff.splitlines():
            style = (
                "bold"
                if line.startswith(("+++", "---"))
                else "cyan"
                if line.startswith("@@")
                else "green"
                if line.startswith("+")
                else "red"
                if line.startswith("-")
                else ""
            )
            self.stdout.print(Text(line, style=style))

    # JSON.

    def _json_file(self, result: FileResult, *, created: bool = False) -> None:
        if result.status is Status.SKIPPED and not self.verbose:
            return
        entry: dict[str, object] = {
            "path": str(result.path),
            "status": result.status.value,
            "message": result.message,
            "ops": [_json_op(report) for report in result.reports],
        }
        if self.diff and result.status is Status.CHANGED:
            entry["diff"] = unified_diff(result, created=created)
        self._json_files.append(entry)

    # GitHub.

    def _github_file(self, result: FileResult) -> None:
        path = str(result.path)
        if result.status is Status.FAILED:
            self._annotate("error", path, _line_of(result.message), "idempotify: cannot process", result.message)
            return
        if result.status is Status.CHANGED and not self.written:
            guarded = [report for report in result.reports if report.outcome is Outcome.GUARDED]
            line = guarded[0].line if guarded else None
            message = f"{len(guarded)} op(s) to guard; run idempotify on this file"
            if not guarded:
                message = "its generated helper block is out of date (settings or version changed); run idempotify"
            self._annotate("error", path, line, "idempotify: not idempotent", message)
        for report in result.reports:
            if report.outcome is Outcome.UNGUARDED:
                level = "error" if self.strict else "warning"
                message = f"{report.call}: {report.reason}"
                self._annotate(level, path, report.line, "idempotify: left unguarded", message)

    def _annotate(self, level: str, path: str, line: int | None, title: str, message: str) -> None:
        properties = f"file={escape_property(path)}"
        if line is not None:
            properties += f",line={line}"
        properties += f",title={escape_property(title)}"
        sys.stdout.write(f"::{level} {properties}::{escape_data(message)}\n")


def _json_op(report: OpReport) -> dict[str, object]:
    return {"line": report.line, "call": report.call, "outcome": report.outcome.value, "reason": report.reason}


def _line_of(message: str) -> int | None:
    """N for messages that start ``line N``; None for the others."""
    if message.startswith("line "):
        number = message[5:].partition(":")[0].split(",")[0]
        if number.isdigit():
            return int(number)
    return None


def escape_data(text: str) -> str:
    """Text safe as the message of a GitHub workflow command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Text safe as a property (file=, title=) of a GitHub workflow command."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")
