"""Project settings: ``[tool.idempotify]`` in ``pyproject.toml``, and the Alembic project's versions directories.

``[tool.idempotify]`` is looked for in the nearest ``pyproject.toml`` above the
first path given (or the working directory), the way black and ruff find
theirs; flags on the command line override it. Keys::

    [tool.idempotify]
    include = ["*.py"]                 # fnmatch patterns on the path relative to this file
    exclude = ["*/legacy/*"]           # ...and files matching these are left out, even when named
    line-length = 100                  # else the nearest [tool.black], else 88
    strict = true                      # as --strict
    jobs = 4                           # as --jobs
    naming-convention = "myapp.models:metadata"   # verify's --naming-convention (or a table)
    helpers = "myapp.migration_helpers"   # one module of generated helpers the migrations import

When no path is given, the versions directories come from the Alembic
configuration in the working directory or above it (``alembic.ini``, else
``[tool.alembic]`` in ``pyproject.toml``), read with Alembic's own ``Config``
and ``ScriptDirectory``.
"""

from __future__ import annotations

import configparser
import json
import keyword
import os
import sys
from dataclasses import dataclass, fields
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig


class ConfigError(Exception):
    """A settings file idempotify cannot use; the message names it."""


@dataclass(frozen=True)
class Config:
    """The ``[tool.idempotify]`` settings, and the file they came from (None: no file, defaults)."""

    source: Path | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    line_length: int | None = None
    strict: bool = False
    jobs: int | None = None
    naming_convention: str | None = None
    helpers: str | None = None

    def selects(self, path: Path) -> bool:
        """Whether ``path`` passes ``include`` and ``exclude`` (patterns relative to the settings file)."""
        if self.source is None:
            return True
        try:
            relative = path.absolute().relative_to(self.source.parent.absolute()).as_posix()
        except ValueError:
            relative = path.as_posix()
        candidates = (relative, path.name)
        if self.include and not any(fnmatch(text, pattern) for pattern in self.include for text in candidates):
            return False
        return not any(fnmatch(text, pattern) for pattern in self.exclude for text in candidates)


# The keys of [tool.idempotify]: the settings above, spelled as in TOML.
_KEYS = sorted(setting.name.replace("_", "-") for setting in fields(Config) if setting.name != "source")


def load_config(start: Path) -> Config:
    """``[tool.idempotify]`` from the nearest ``pyproject.toml`` at or above ``start`` that has one."""
    found = nearest_tool_table(start, "idempotify")
    return _parse(*found) if found is not None else Config()


def nearest_tool_table(start: Path, tool: str) -> tuple[Path, dict[str, Any]] | None:
    """The nearest ``pyproject.toml`` at or above ``start`` with a ``[tool.<tool>]`` table, and the table."""
    directory = start.resolve()
    if not directory.is_dir():
        directory = directory.parent
    for folder in (directory, *directory.parents):
        table = _tool_table(folder / "pyproject.toml", tool)
        if table is not None:
            return folder / "pyproject.toml", table
    return None


def _tool_table(pyproject: Path, tool: str) -> dict[str, Any] | None:
    if not pyproject.is_file():
        return None
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{pyproject}: cannot read: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{pyproject}: invalid TOML: {error}") from error
    table = document.get("tool", {}).get(tool)
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.{tool}] must be a table")
    return table


def _parse(source: Path, table: dict[str, Any]) -> Config:
    def invalid(complaint: str) -> ConfigError:
        return ConfigError(f"{source}: [tool.idempotify] {complaint}")

    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise invalid(f"has unknown key(s) {', '.join(unknown)}; known: {', '.join(_KEYS)}")

    def patterns(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise invalid(f"{key} must be a list of glob patterns")
        return tuple(value)

    def number(key: str, minimum: int) -> int | None:
        value = table.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
            raise invalid(f"{key} must be an integer >= {minimum}")
        return value

    strict = table.get("strict", False)
    if not isinstance(strict, bool):
        raise invalid("strict must be true or false")
    convention = table.get("naming-convention")
    if isinstance(convention, dict):
        convention = json.dumps(convention)
    elif convention is not None and not isinstance(convention, str):
        raise invalid("naming-convention must be module:attribute or a table")
    helpers = table.get("helpers")
    if helpers is not None and not (isinstance(helpers, str) and is_module_name(helpers)):
        raise invalid(f"helpers must be a module name (package.module), not {helpers!r}")
    return Config(
        source=source,
        include=patterns("include"),
        exclude=patterns("exclude"),
        line_length=number("line-length", 40),
        strict=strict,
        jobs=number("jobs", 1),
        naming_convention=convention,
        helpers=helpers,
    )


def is_module_name(name: str) -> bool:
    """``package.module``: dotted Python identifiers, none a keyword."""
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in name.split("."))


@dataclass(frozen=True)
class AlembicProject:
    """The versions directories of an Alembic project, the file that names them, and its ``prepend_sys_path``."""

    config_file: Path
    versions: tuple[Path, ...]
    sys_path: tuple[str, ...] = ()


def alembic_config(config_file: Path) -> AlembicConfig:
    """Alembic's ``Config`` for ``alembic.ini`` (with ``[tool.alembic]`` of the ``pyproject.toml`` beside it,
    if any) or for a ``pyproject.toml`` alone, as ``alembic`` reads them."""
    from alembic.config import Config as AlembicConfig  # noqa: PLC0415 - only for an Alembic project

    pyproject = config_file.parent / "pyproject.toml"
    toml = str(pyproject) if _tool_table(pyproject, "alembic") is not None else None
    if config_file.name == "pyproject.toml":
        return AlembicConfig(toml_file=toml)
    return AlembicConfig(str(config_file), toml_file=toml)


def find_alembic_project(start: Path) -> AlembicProject | None:
    """The Alembic project configured at or above ``start``.

    ``$ALEMBIC_CONFIG`` when set (as for ``alembic``), else the first folder
    holding ``alembic.ini`` or a ``pyproject.toml`` with ``[tool.alembic]``.
    """
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - only when no path is given
    from alembic.util import CommandError  # noqa: PLC0415

    start = start.resolve()
    here = start if start.is_dir() else start.parent
    candidates = [(folder, folder / "alembic.ini") for folder in (here, *here.parents)]
    if os.environ.get("ALEMBIC_CONFIG"):
        chosen = Path(os.environ["ALEMBIC_CONFIG"]).resolve()
        if not chosen.is_file():
            raise ConfigError(f"ALEMBIC_CONFIG names {chosen}, which is not a file")
        candidates = [(chosen.parent, chosen)]
    for folder, ini in candidates:
        pyproject = folder / "pyproject.toml"
        toml = _tool_table(pyproject, "alembic")
        if not ini.is_file() and toml is None:
            continue
        config = alembic_config(ini if ini.is_file() else pyproject)
        found = pyproject if toml is not None and "script_location" in toml else ini
        previous = Path.cwd()
        os.chdir(folder)  # relative locations are relative to where alembic runs: beside its configuration
        try:
            script = ScriptDirectory.from_config(config)
            versions = tuple(Path(location) for location in script._version_locations)
            sys_path = tuple(str(Path(entry).resolve()) for entry in config.get_prepend_sys_paths_list() or ())
        except (CommandError, configparser.Error) as error:
            raise ConfigError(f"{found}: {error}") from error
        finally:
            os.chdir(previous)
        return AlembicProject(found, versions, sys_path)
    return None
