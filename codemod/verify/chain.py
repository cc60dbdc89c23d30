"""The revision chain to verify, loaded with Alembic's own ``ScriptDirectory``, and its baseline.

The baseline of a revision is the version to compare it with: the file of the
same revision id in ``--baseline DIR``, or else, when the file is tracked by git
and modified, its committed version. Without one, equivalence is not checked.
"""

from __future__ import annotations

import subprocess
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util import CommandError


class ChainError(Exception):
    """The chain cannot be loaded (no revisions, a revision that does not import, a broken graph)."""


@dataclass(frozen=True)
class Revision:
    """One revision: its file on disk and, where there is one, its baseline source."""

    id: str
    path: Path
    source: str
    baseline: str | None
    baseline_path: str = ""

    @property
    def original(self) -> str:
        """The version a deploy ran before idempotify: the baseline, else the file on disk."""
        return self.baseline if self.baseline is not None else self.source


def load_chain(versions: Sequence[Path], baseline: Path | None = None) -> list[Revision]:
    """The revisions in the ``versions`` directories (one chain) in upgrade order (dependencies first)."""
    scripts = _scripts(versions)
    baselines = {script.revision: Path(script.path) for script in _scripts([baseline])} if baseline is not None else {}
    chain = []
    for script in scripts:
        path = Path(script.path)
        source = path.read_text(encoding="utf-8")
        if baseline is not None:
            found = baselines.get(script.revision)
            original = found.read_text(encoding="utf-8") if found is not None else None
            label = str(found)
        else:
            original, label = _committed_if_modified(path), f"{path} (committed)"
        chain.append(Revision(script.revision, path, source, original, label))
    return chain


def _scripts(versions: Sequence[Path]) -> list:  # type: ignore[type-arg]
    for location in versions:
        if not location.is_dir():
            raise ChainError(f"{location}: {'not a directory' if location.exists() else 'no such directory'}")
    named = ", ".join(map(str, versions))
    try:
        locations = [str(location) for location in versions]
        directory = ScriptDirectory(str(versions[0].parent), version_locations=locations)
        scripts = list(reversed(list(directory.walk_revisions("base", "heads"))))
    except CommandError as error:
        raise ChainError(f"{named}: {error}") from error
    except Exception as error:  # a revision file that fails to import, or a chain that does not hold together
        folders = {location.resolve() for location in versions}
        frames = traceback.extract_tb(error.__traceback__)
        inside = [
            f"{frame.filename}:{frame.lineno}" for frame in frames if Path(frame.filename).resolve().parent in folders
        ]
        place = inside[-1] if inside else named
        raise ChainError(f"{place}: cannot load the revisions: {type(error).__name__}: {error}") from error
    if not scripts:
        raise ChainError(f"{named}: no Alembic revisions found")
    return scripts


def _committed_if_modified(path: Path) -> str | None:
    """The file's committed version when git tracks it and it differs on disk; else None."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=path.parent, capture_output=True, text=True, check=False)

    try:
        if git("ls-files", "--error-unmatch", path.name).returncode != 0:
            return None
        if git("diff", "--quiet", "HEAD", "--", path.name).returncode == 0:
            return None
        shown = git("show", f"HEAD:./{path.name}")
    except FileNotFoundError:  # no git
        return None
    return shown.stdout if shown.returncode == 0 else None
