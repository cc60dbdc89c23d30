"""Golden fixtures: discovery and the ``# output`` file format.

``fixtures/<op kind>/<case>.py`` holds an input migration, a line ``# output``,
then the expected output. A case without ``# output`` must come out unchanged.
A line ``# dialects: a, b`` in the input limits where it is executed;
``# dialects: none`` marks a case that is only rewritten, never executed.
A line ``# naming convention: {json}`` runs it with a ``target_metadata``
carrying that naming convention, as an ``env.py`` would. A line ``# rows:
{json}`` (rows by table of the base schema) fills those tables before it runs,
so that what its data changes do, run again, shows in the rows compared.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tests.databases import DIALECTS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
OUTPUT_MARKER = "# output\n"

_DIALECTS_LINE = re.compile(r"^# dialects: (.*)$", re.MULTILINE)
_CONVENTION_LINE = re.compile(r"^# naming convention: (.*)$", re.MULTILINE)
_ROWS_LINE = re.compile(r"^# rows: (.*)$", re.MULTILINE)
_NO_RERUN_LINE = re.compile(r"^# reruns: no\b", re.MULTILINE)


@dataclass(frozen=True)
class Golden:
    path: Path
    input: str
    output: str

    @property
    def id(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"

    @property
    def dialects(self) -> tuple[str, ...]:
        found = _DIALECTS_LINE.search(self.input)
        if found is None:
            return DIALECTS
        names = tuple(name.strip() for name in found.group(1).split(","))
        return () if names == ("none",) else names

    @property
    def naming_convention(self) -> dict[str, str] | None:
        found = _CONVENTION_LINE.search(self.input)
        return None if found is None else dict(json.loads(found.group(1)))

    @property
    def reruns(self) -> bool:
        """False for a golden whose output must not run again over what it made (``# reruns: no``): an op it
        leaves unguarded fails, as the original's does, rather than let a data change run twice."""
        return _NO_RERUN_LINE.search(self.input) is None

    @property
    def rows(self) -> dict[str, list[dict[str, object]]]:
        found = _ROWS_LINE.search(self.input)
        return {} if found is None else dict(json.loads(found.group(1)))


def golden_paths() -> list[Path]:
    """Every golden case: one level below ``fixtures/``, the demo project excepted."""
    return sorted(path for path in FIXTURES.glob("*/*.py") if path.parent.name != "demo")


def read_golden(path: Path) -> Golden:
    text = path.read_text(encoding="utf-8")
    source, marker, expected = text.partition(OUTPUT_MARKER)
    return Golden(path, source, expected if marker else source)


def write_golden(path: Path, source: str, output: str) -> None:
    path.write_text(source if output == source else source + OUTPUT_MARKER + output, encoding="utf-8")


def sample_versions(directory: Path) -> Path:
    """``directory/versions``: the incident migration (changes) and one that needs nothing but reports ops."""
    versions = directory / "versions"
    versions.mkdir()
    incident = read_golden(FIXTURES / "add_column" / "incident.py")
    unchanged = read_golden(FIXTURES / "no_change" / "unsupported_ops.py")
    (versions / "4f2a9c1d7e3b_add_updated_at.py").write_text(incident.input, encoding="utf-8")
    (versions / "4c5d6e7f8a9b_alter.py").write_text(unchanged.input, encoding="utf-8")
    return versions
