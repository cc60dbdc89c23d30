"""idempotify's tests for a project's own test suite: import them into a test module.

::

    # tests/test_migrations.py
    from idempotify.testing import test_idempotify_check, test_idempotify_verify

``test_idempotify_check`` fails while ``idempotify --check`` would;
``test_idempotify_verify`` is one item per revision, each the verdict of
``idempotify verify`` on it. Their fixtures and options come from the pytest
plugin idempotify installs (``codemod.pytest_plugin``, loaded by pytest through
its ``pytest11`` entry point).
"""

from codemod.pytest_plugin import IdempotifyWarning, test_idempotify_check, test_idempotify_verify

__all__ = ["IdempotifyWarning", "test_idempotify_check", "test_idempotify_verify"]
