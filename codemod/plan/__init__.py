"""``idempotify plan``: what the next deploy will run and skip on a live database, found without touching it."""
