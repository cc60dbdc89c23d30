"""``idempotify verify``: run a revision chain on scratch databases and prove it re-runnable."""
