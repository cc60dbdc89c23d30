"""``python -m codemod`` runs the ``idempotify`` command."""

from codemod.cli import main

main()
