"""The name that is idempotify's alone: ``python -m idempotify`` and Alembic's ``module`` post-write hook.

The code lives in the ``codemod`` package. A distribution on PyPI also
installs a top-level ``codemod``, so users are pointed at this name instead.
"""
