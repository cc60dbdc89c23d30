"""idempotify: rewrite Alembic migrations so every schema op checks the live database first."""

__version__ = "0.1.0"
