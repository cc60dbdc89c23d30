"""``--python PATH``: running verify and plan under the project's own interpreter.

The chain imports the application (its ``env.py``, models, custom types) and
the application's Alembic, SQLAlchemy and drivers, which live in the project's
environment, not in idempotify's. ``switch_to`` checks that ``PATH`` is a
Python idempotify's compiled dependencies (libcst) load on: the same
implementation and minor version, the same extension modules' suffix. It then
replaces this process with ``PATH`` running the same command (``os.execv``:
the process id, its standard streams, its signals and its exit code stay
the command's own, so Ctrl-C and SIGTERM still drop the scratch databases).

There, a small bootstrap puts idempotify's own import locations at the end of
``sys.path``: the project's modules win (its Alembic, SQLAlchemy, drivers), and
what the project lacks (typer, libcst, rich, black...) comes from idempotify's
environment. The ``codemod`` package itself is loaded from its own directory,
whatever ``codemod`` the project may have. Once there, ``switch_to`` checks
that Alembic and SQLAlchemy import, from either side, in versions idempotify
supports.
"""

from __future__ import annotations

import importlib
import os
import re
import site
import subprocess
import sys
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import NoReturn

# The oldest releases idempotify supports: pyproject.toml's dependencies (a test keeps the two the same).
MINIMUM_VERSIONS = {"sqlalchemy": (2, 0), "alembic": (1, 16)}  # in import order: alembic imports sqlalchemy
MINIMUM_PYTHON = (3, 10)  # requires-python

# What PATH says it is: its version, then the suffix of its extension modules. Two lines, each a statement
# Python 2 runs too, so that one is named by its version rather than refused as "not a Python".
_PROBE = (
    "import sys; print('%d.%d' % tuple(sys.version_info[:2]))\n"
    "from importlib.machinery import EXTENSION_SUFFIXES; print(EXTENSION_SUFFIXES[0])\n"
)
_PROBE_SECONDS = 60

# Run by PATH with ``-c``: idempotify's locations last on sys.path, its own codemod package, then the command.
_BOOTSTRAP = """\
import sys
from importlib.machinery import PathFinder
from importlib.util import module_from_spec

if sys.path[:1] == [""]:
    del sys.path[0]  # -c's working directory; verify and plan put it where alembic does
sys.path += [entry for entry in {locations!r} if entry not in sys.path]
spec = PathFinder.find_spec("codemod", [{home!r}])
codemod = module_from_spec(spec)
sys.modules["codemod"] = codemod
spec.loader.exec_module(codemod)
from codemod.interpreter import run_here

run_here({python!r}, {program!r})
"""

_switched_to: str | None = None  # in the re-executed process: the PATH it runs under


class InterpreterError(Exception):
    """``--python PATH`` cannot run idempotify or the chain; nothing was run."""


def switch_to(python: Path, arguments: Sequence[str]) -> None:
    """Go on under ``python``: from idempotify's own interpreter, check it and re-execute the command with
    ``arguments`` there (this never returns); once there, check that it has what the chain needs."""
    if _switched_to is not None:
        check_libraries(_switched_to)
        return
    executable = os.path.abspath(python)  # never resolved: a virtualenv's python is a symlink to its base
    check_interpreter(str(python), executable)
    bootstrap = _BOOTSTRAP.format(
        locations=own_locations(), home=_home(), python=str(python), program=sys.argv[0] or "idempotify"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(executable, [executable, "-c", bootstrap, *arguments])
    except OSError as error:  # it ran a moment ago, for the check
        raise InterpreterError(f"--python {python}: cannot run it: {error.strerror or error}") from error


def check_interpreter(shown: str, executable: str) -> None:
    """``executable`` runs, is a Python, and loads the compiled extensions this one loads."""
    try:
        probe = subprocess.run(
            [executable, "-c", _PROBE], capture_output=True, text=True, timeout=_PROBE_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise InterpreterError(f"--python {shown}: no answer within {_PROBE_SECONDS} s") from error
    except OSError as error:
        raise InterpreterError(f"--python {shown}: cannot run it: {error.strerror or error}") from error
    lines = probe.stdout.splitlines()
    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not lines or not re.fullmatch(r"\d+\.\d+", lines[0]):
        said = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or [f"exit code {probe.returncode}"]
        raise InterpreterError(f"--python {shown}: not a Python interpreter ({said[0]})")
    if lines[0] != ours:
        supported = tuple(map(int, lines[0].split("."))) >= MINIMUM_PYTHON
        other = f", or install idempotify with Python {lines[0]}" if supported else ""
        raise InterpreterError(
            f"--python {shown} is Python {lines[0]}; idempotify runs on Python {ours}, and its compiled "
            f"dependencies (libcst) load only on the same minor version: give a Python {ours} interpreter{other}"
        )
    if lines[1:2] != EXTENSION_SUFFIXES[:1]:
        suffix = lines[1] if len(lines) > 1 else "none"
        raise InterpreterError(
            f"--python {shown} is another kind of Python {ours}: its compiled extensions end in {suffix}, "
            f"idempotify's in {EXTENSION_SUFFIXES[0]}, so they do not load there"
        )


def check_libraries(shown: str) -> None:
    """Alembic and SQLAlchemy import here, in versions idempotify supports."""
    for name, minimum in MINIMUM_VERSIONS.items():
        try:
            module = importlib.import_module(name)
        except Exception as error:  # any failure to import is the project's to fix
            raise InterpreterError(
                f"--python {shown}: {name} does not import there ({type(error).__name__}: {error})"
            ) from error
        version = str(getattr(module, "__version__", "0"))
        found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
        if found < minimum:
            wanted = ".".join(map(str, minimum))
            raise InterpreterError(
                f"--python {shown}: its {name} is {version} ({module.__file__}); idempotify needs {wanted} or later"
            )


def run_here(python: str, program: str) -> NoReturn:
    """The re-executed command, under ``python``; called by the bootstrap, idempotify's locations in place."""
    global _switched_to  # noqa: PLW0603 - what tells switch_to it has switched already
    _switched_to = python
    sys.argv[0] = program
    try:
        from codemod.cli import main  # noqa: PLC0415 - after the bootstrap set sys.path
    except Exception as error:  # a library of the project's shadows idempotify's
        message = f"{type(error).__name__}: {error}"
        print(f"idempotify: --python {python}: idempotify does not import there ({message})", file=sys.stderr)
        raise SystemExit(2) from error
    main()
    raise SystemExit(0)


def own_locations() -> list[str]:
    """Where idempotify imports from: the directory holding ``codemod``, then its environment's site directories
    and what their ``.pth`` files added (never the standard library, which PATH has its own of)."""
    sites = {*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])}
    first = next((index for index, entry in enumerate(sys.path) if entry in sites), len(sys.path))
    home = _home()
    return [home, *(entry for entry in sys.path[first:] if entry != home)]


def _home() -> str:
    return str(Path(__file__).resolve().parent.parent)
