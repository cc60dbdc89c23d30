"""``make corpus``: idempotify over the Alembic revisions that public packages ship.

Downloads pinned wheels into a cache outside the repository (``$XDG_CACHE_HOME``
or ``~/.cache``, ``idempotify-corpus/``), takes only their revision files, and
rewrites each in memory. Reports per package and in total: files, ops guarded,
ops left by reason, the share of ops left unguarded (in total, and without the data
changes, which are reported by design and never guarded), files that failed, outputs that do not compile, files a
second run would change, and lines outside the guarded statements that changed.
The target for the last four is zero. Nothing from the packages is committed.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from codemod.formatting import Style
from codemod.results import Outcome
from codemod.runner import is_revision_file, rewrite_source
from codemod.transformer import DATA_CHANGE_REASONS

PACKAGES = [
    "apache-superset==6.1.0",
    "apache-airflow-core==3.3.2",
    "mlflow-skinny==3.17.2",
    "optuna==5.0.0",
    "zenml==0.98.0",
    "indico==3.2.9",
]
DATA = "data change"  # a count kept beside the outcomes: the ops left unguarded because they change data
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "idempotify-corpus"


@dataclass
class Tally:
    files: int = 0
    ops: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    sql: Counter[str] = field(default_factory=Counter)  # SQL ops (execute calls): outcome and reason
    helper_lines: list[int] = field(default_factory=list)  # per rewritten file: lines of the generated block
    growth: list[int] = field(default_factory=list)  # per rewritten file: lines added
    failed: list[str] = field(default_factory=list)
    not_compiling: list[str] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.files += other.files
        self.ops += other.ops
        self.outcomes += other.outcomes
        self.reasons += other.reasons
        self.sql += other.sql
        self.helper_lines += other.helper_lines
        self.growth += other.growth
        for name in ("failed", "not_compiling", "unstable", "touched"):
            getattr(self, name).extend(getattr(other, name))


def cached_wheel(requirement: str) -> Path | None:
    """The wheel of ``requirement`` if it is already in the cache."""
    name, version = requirement.split("==")
    prefix = f"{name.replace('-', '_')}-{version}-"
    found = [path for path in CACHE.glob("*.whl") if path.name.lower().startswith(prefix.lower())]
    return found[0] if found else None


def wheel(requirement: str) -> Path:
    """The wheel of ``requirement``, downloaded into the cache the first time."""
    found = cached_wheel(requirement)
    if found is None:
        CACHE.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(CACHE), requirement]
        subprocess.run(pip, check=True)
        found = cached_wheel(requirement)
        assert found is not None, f"pip downloaded no wheel for {requirement}"
    return found


def revisions(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [
            (member, data)
            for member in archive.namelist()
            if member.endswith(".py") and is_revision_file(data := archive.read(member))
        ]


def untouched_lines_changed(before: bytes, after: bytes) -> bool:
    """True when a line of ``before`` is missing from ``after`` other than re-indented under a guard."""
    old = before.decode("utf-8", "replace").splitlines()
    new = after.decode("utf-8", "replace").splitlines()
    added = {line.strip() for line in new}
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag in ("replace", "delete") and any(line.strip() not in added for line in old[i1:i2]):
            return True
    return False


def check(name: str, source: bytes) -> Tally:
    tally = Tally(files=1)
    try:
        output, reports = rewrite_source(source, Style())
    except Exception as error:  # noqa: BLE001 - every failure is counted and shown
        tally.failed.append(f"{name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        return tally
    for report in reports:
        tally.outcomes[report.outcome.value] += 1
        tally.ops += 1
        if report.outcome is not Outcome.GUARDED:
            tally.reasons[report.reason.split(":")[0][:90]] += 1
        if report.outcome is Outcome.UNGUARDED and report.reason.startswith(DATA_CHANGE_REASONS):
            tally.outcomes[DATA] += 1
        if report.call.endswith((".execute", ".exec_driver_sql")):
            tally.sql[f"{report.outcome.value:<15} {report.reason.split(':')[0][:80]}"] += 1
    if output != source:
        lines = output.decode("utf-8", "replace").splitlines()
        header = next((i for i, line in enumerate(lines) if line.startswith("# idempotify: generated guards")), None)
        tally.helper_lines.append(0 if header is None else len(lines) - header)
        tally.growth.append(len(lines) - len(source.decode("utf-8", "replace").splitlines()))
    try:
        compile(output, name, "exec")
    except SyntaxError as error:
        tally.not_compiling.append(f"{name}: {error}")
    again, reports_again = rewrite_source(output, Style())
    left = [report for report in reports if report.outcome is Outcome.UNGUARDED]
    left_again = [report for report in reports_again if report.outcome is Outcome.UNGUARDED]
    # Stable: the same bytes, and the same ops left unguarded (its guards make the rest "already safe" then),
    # for the same reasons (their lines moved by the rewrite aside).
    reasons, reasons_again = ([re.sub(r"line \d+", "line", r.reason) for r in each] for each in (left, left_again))
    if again != output or reasons != reasons_again:
        tally.unstable.append(name)
    if untouched_lines_changed(source, output):
        tally.touched.append(name)
    return tally


def main() -> int:
    total = Tally()
    print(
        f"{'package':<28} {'files':>6} {'guarded':>8} {'safe':>6} {'skipped':>8} {'unguarded':>10} "
        f"{'unguarded%':>10} {'non-data%':>9} {'failed':>7} {'!compile':>9} {'unstable':>9} {'touched':>8}"
    )
    for requirement in PACKAGES:
        tally = Tally()
        for member, source in revisions(wheel(requirement)):
            tally.add(check(f"{requirement}:{member}", source))
        total.add(tally)
        row(requirement, tally)
    row("total", total)
    unguarded, data = total.outcomes[Outcome.UNGUARDED.value], total.outcomes[DATA]
    print(f"\nleft unguarded: {unguarded} of {total.ops} ops ({_share(unguarded, total.ops)})")
    print(f"  data changes (UPDATE, DELETE, INSERT; reported, never guarded): {data} ({_share(data, total.ops)})")
    print(f"  everything else: {unguarded - data} ({_share(unguarded - data, total.ops)})")
    for title, values in (
        ("generated helper lines per rewritten file", total.helper_lines),
        ("lines added per rewritten file", total.growth),
    ):
        spread = f"median {_percentile(values, 50)}, 90th percentile {_percentile(values, 90)}"
        print(f"\n{title}: {spread}, max {max(values, default=0)}")
    print("\nSQL ops (execute, exec_driver_sql), by outcome and reason:")
    for kind, count in sorted(total.sql.items(), key=lambda item: (item[0][:15], -item[1])):
        print(f"{count:>6}  {kind}")
    print("\nleft alone, by reason:")
    for reason, count in total.reasons.most_common():
        print(f"{count:>6}  {reason}")
    for title, items in (
        ("failed", total.failed),
        ("outputs that do not compile", total.not_compiling),
        ("files a second run would change", total.unstable),
        ("files with untouched lines changed", total.touched),
    ):
        if items:
            print(f"\n{title}:")
            for item in items[:30]:
                print(f"  {item}")
    return 1 if total.failed or total.not_compiling or total.unstable or total.touched else 0


def _percentile(values: list[int], percent: int) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, len(ordered) * percent // 100)] if ordered else 0


def _share(count: int, ops: int) -> str:
    return f"{100 * count / max(1, ops):.1f}%"


def row(name: str, tally: Tally) -> None:
    outcomes = tally.outcomes
    unguarded = outcomes[Outcome.UNGUARDED.value]
    print(
        f"{name:<28} {tally.files:>6} {outcomes['guarded']:>8} {outcomes['already safe']:>6} "
        f"{outcomes['skipped by marker']:>8} {unguarded:>10} {_share(unguarded, tally.ops):>10} "
        f"{_share(unguarded - outcomes[DATA], tally.ops):>9} {len(tally.failed):>7} "
        f"{len(tally.not_compiling):>9} {len(tally.unstable):>9} {len(tally.touched):>8}"
    )


if __name__ == "__main__":
    sys.exit(main())
