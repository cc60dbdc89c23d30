"""``python -m idempotify`` runs the ``idempotify`` command.

When another project's ``codemod`` package shadows or overwrote ours, say so
and exit 2, instead of a traceback from the wrong package.
"""

import sys

try:
    from codemod.cli import main
except ImportError as error:
    if error.name != "codemod" and not (error.name or "").startswith("codemod."):
        raise
    found = getattr(sys.modules.get("codemod"), "__file__", None)
    where = f" ({found})" if found else ""
    print(
        f"idempotify: error: cannot load its code from the `codemod` package{where}: {error}\n"
        "Another distribution named `codemod` may shadow or have overwritten it: "
        "`pip uninstall codemod`, then reinstall idempotify.",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

main()
