#!/usr/bin/env bash
# `make demo`: idempotify on the bundled Alembic project fixtures/demo/, end to end on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r fixtures/demo/. "$work"
alembic() { "$bin/alembic" -c "$work/alembic.ini" "$@" 2>&1 | grep -v -e "Context impl" -e "non-transactional DDL" || return "${PIPESTATUS[0]}"; }
say() { printf '\n== %s\n' "$*"; }
add_column_by_hand() {
    "$bin/python" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute(
        "ALTER TABLE player_wellness_state ADD COLUMN updated_at DATETIME")' "$work/demo.db"
    echo "(someone ran ALTER TABLE player_wellness_state ADD COLUMN updated_at by hand)"
}

say "1. The change idempotify proposes for fixtures/demo/versions/ (--diff writes nothing)"
status=0
"$bin/idempotify" --diff fixtures/demo/versions/ || status=$?
[ "$status" -eq 1 ] || { echo "expected exit 1 (changes needed) from --diff, got $status"; exit 1; }

say "2. The ORIGINAL chain, on a database whose schema is ahead of alembic_version"
alembic upgrade 2b7d4c8e0a22
add_column_by_hand
if alembic upgrade head >"$work/error.log"; then
    echo "unexpected: the original chain ran on a schema ahead of it"; exit 1
fi
echo "-> the deploy dies:"; grep -m1 "OperationalError" "$work/error.log" | cut -c1-120
rm -f "$work/demo.db"

say "3. Rewrite a copy in place, then the same with the REWRITTEN chain"
"$bin/idempotify" "$work/versions"
alembic upgrade 2b7d4c8e0a22
add_column_by_hand
alembic upgrade head | tee "$work/upgrade.log"
grep -q "skipped op.add_column(player_wellness_state.updated_at): column exists" "$work/upgrade.log" \
    || { echo "expected the deploy log to say the column was found"; exit 1; }
echo "-> the upgrade goes through: add_column saw updated_at was there, skipped it, and the log says so"

say "4. Run the last two revisions again (a retried deploy that lost its version bump)"
alembic stamp 2b7d4c8e0a22
alembic upgrade head

say "5. Downgrade them, lose the version bump, downgrade again"
alembic downgrade 2b7d4c8e0a22
alembic stamp head
alembic downgrade 2b7d4c8e0a22
say "6. idempotify verify: every revision on a scratch SQLite database, against the original files"
"$bin/idempotify" verify "$work/versions" --baseline fixtures/demo/versions
say "Done: every re-run of the rewritten chain went through, and verify proves each revision."
