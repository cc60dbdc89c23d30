"""What an installed idempotify offers: a module name of its own, and every library it imports declared.

A distribution on PyPI named ``codemod`` also installs a top-level ``codemod``,
so ``python -m idempotify`` is the documented module (the Alembic ``module``
hook included). And a library that arrives only through another dependency
(``platformdirs`` through black) can go away with that dependency's next
release, so every third-party import must be declared, with a lower bound.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from codemod import __version__
from tests.fixtures import FIXTURES, read_golden
from tests.test_hooks import readme_block

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
OWN_PACKAGES = {"codemod", "idempotify"}
# What a module loaded only by another program imports of that program: pytest loads the pytest plugin.
HOST_IMPORTS = {Path("codemod/pytest_plugin.py"): {"pytest"}}


def run_module(module: str, *args: str, cwd: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` with this venv's Python, away from the checkout (so the installed package runs)."""
    command = [sys.executable, "-m", module, *args]
    env = {**os.environ, "NO_COLOR": "1", **environment}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def test_python_dash_m_idempotify_is_the_command(tmp_path: Path) -> None:
    version = run_module("idempotify", "--version", cwd=tmp_path)
    assert (version.returncode, version.stdout, version.stderr) == (0, f"idempotify {__version__}\n", "")
    revision = tmp_path / "4f2a9c1d7e3b_add_updated_at.py"
    revision.write_text(read_golden(FIXTURES / "add_column" / "incident.py").input, encoding="utf-8")
    check = run_module("idempotify", "--check", str(revision), cwd=tmp_path)
    assert check.returncode == 1
    assert f"Would rewrite {revision}" in check.stderr


def test_the_readme_module_hook_names_our_module_and_it_runs(tmp_path: Path) -> None:
    hook = readme_block("ini", "idempotify.type = module")
    (module,) = re.findall(r"^idempotify\.module = (\S+)$", hook, re.MULTILINE)
    assert module == "idempotify", "a PyPI package also installs a top-level `codemod`"
    result = run_module(module, "--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"idempotify {__version__}\n")


def test_a_foreign_codemod_package_is_named_not_run(tmp_path: Path) -> None:
    """With another project's ``codemod`` first on the path, ``python -m idempotify`` says so and exits 2."""
    foreign = tmp_path / "site" / "codemod"
    foreign.mkdir(parents=True)
    (foreign / "__init__.py").write_text('"""Another project\'s codemod."""\n', encoding="utf-8")
    result = run_module("idempotify", "--version", cwd=tmp_path, PYTHONPATH=str(tmp_path / "site"))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert f"cannot load its code from the `codemod` package ({foreign / '__init__.py'})" in result.stderr
    assert "pip uninstall codemod" in result.stderr


def runtime_imports(path: Path) -> set[str]:
    """The top-level names ``path`` imports when it runs (not those under ``if TYPE_CHECKING:``)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            names.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_bytes(), str(path)))
    return names


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_dependencies() -> dict[str, str]:
    """``[project].dependencies``: normalized distribution name -> its requirement."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared: dict[str, str] = {}
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert name is not None, requirement
        declared[normalized(name[0])] = requirement
    return declared


def test_runtime_imports_are_found_where_they_run(tmp_path: Path) -> None:
    """The walk below sees imports in functions and version branches, not type-checking-only ones."""
    module = tmp_path / "module.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import os.path\n"
        "if TYPE_CHECKING:\n    import libcst\nelse:\n    import black\n"
        "def later() -> None:\n    from platformdirs import user_cache_dir\n"
        "from . import sibling\n",
        encoding="utf-8",
    )
    assert runtime_imports(module) == {"typing", "os", "black", "platformdirs"}


@pytest.mark.parametrize("package", sorted(OWN_PACKAGES))
def test_every_runtime_import_is_a_declared_dependency_with_a_lower_bound(package: str) -> None:
    declared = declared_dependencies()
    distributions = packages_distributions()
    undeclared: list[str] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        host = HOST_IMPORTS.get(path.relative_to(ROOT), set())
        for name in sorted(runtime_imports(path) - set(sys.stdlib_module_names) - OWN_PACKAGES - host):
            candidates = {normalized(distribution) for distribution in distributions.get(name, [name])}
            if not candidates & declared.keys():
                undeclared.append(f"{path.relative_to(ROOT)}: {name} ({', '.join(sorted(candidates))})")
    assert undeclared == [], "imported but not in [project].dependencies"
    unbounded = [requirement for requirement in declared.values() if ">=" not in requirement]
    assert unbounded == [], "a dependency without a lower bound"
