"""Formatting of the code idempotify writes, and only that code.

New ``if`` lines and the helper block go through black with the target
project's settings (``[tool.black]`` in the nearest ``pyproject.toml``), so
they look like the project's own code; nothing the user wrote is reformatted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import black

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_LINE_LENGTH = 88


@dataclass(frozen=True)
class Style:
    """The formatting settings of the project a migration belongs to."""

    line_length: int = DEFAULT_LINE_LENGTH
    string_normalization: bool = True

    def format(self, source: str, indent_width: int = 0) -> str:
        """Format ``source`` as black would at ``indent_width`` columns of indentation."""
        mode = black.Mode(
            line_length=max(self.line_length - indent_width, 20),
            string_normalization=self.string_normalization,
        )
        return black.format_str(source, mode=mode)


def style_for(path: Path) -> Style:
    """The style of the project holding ``path``, from the nearest ``[tool.black]``."""
    return _style_for_directory(path.resolve().parent)


@cache
def _style_for_directory(directory: Path) -> Style:
    for folder in (directory, *directory.parents):
        pyproject = folder / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        black_config = config.get("tool", {}).get("black")
        if black_config is None:
            continue
        return Style(
            line_length=int(black_config.get("line-length", DEFAULT_LINE_LENGTH)),
            string_normalization=not black_config.get("skip-string-normalization", False),
        )
    return Style()
