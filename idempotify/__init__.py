"""The name that is idempotify's alone: ``python -m idempotify``, Alembic's ``module`` post-write hook, and
``idempotify.testing`` (the tests a project imports into its pytest suite).

The code lives in the ``codemod`` package. A distribution on PyPI also
installs a top-level ``codemod``, so users are pointed at this name instead.
"""
