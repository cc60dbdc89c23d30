"""``idempotify lock-env``: one migrator at a time, by a lock env.py takes before it runs migrations.

Alembic has no lock of its own: several processes running ``alembic upgrade``
at once each read ``alembic_version`` and each run the pending revisions. The
recipe (``RECIPE``, shown in the README) makes env.py take a session-level
advisory lock on the connection it migrates on, before ``context.configure``;
Alembic reads ``alembic_version`` after that, so a process that waited finds
the head and runs nothing. ``lock_env`` is the LibCST codemod that puts it
into an existing env.py: the recipe before its first function, and
``with migration_lock(connection):`` around each ``context.configure(connection=...)``
and the ``with context.begin_transaction():`` after it.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor

# What the recipe imports: (module, name) as AddImportsVisitor takes them; None imports the module.
IMPORTS: tuple[tuple[str, str | None], ...] = (
    ("contextlib", None),
    ("itertools", None),
    ("logging", None),
    ("time", None),
    ("collections.abc", "Iterator"),
    ("sqlalchemy.engine", "Connection"),
)

RECIPE = '''\
MIGRATION_LOCK = 4_215_002  # any number no other code locks on: PostgreSQL's lock key, part of MariaDB's lock name
LOCKS = {  # (try to take, release) a lock of the session: autocommit_block() commits, which would end a transaction's
    "postgresql": (f"SELECT pg_try_advisory_lock({MIGRATION_LOCK})", f"SELECT pg_advisory_unlock({MIGRATION_LOCK})"),
    "mysql": (
        f"SELECT GET_LOCK(CONCAT(DATABASE(), ' {MIGRATION_LOCK}'), 0)",
        f"SELECT RELEASE_LOCK(CONCAT(DATABASE(), ' {MIGRATION_LOCK}'))",
    ),
}
LOCKS["mariadb"] = LOCKS["mysql"]


@contextlib.contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """One migrator at a time: other `alembic upgrade` processes wait here, then find nothing left to run."""
    take, release = LOCKS.get(connection.dialect.name, ("", ""))
    if not take or connection.in_transaction():  # SQLite; or a caller's transaction, for the caller to serialise
        yield
        return
    for attempt in itertools.count():
        got = connection.exec_driver_sql(take).scalar()
        if got is None:
            raise RuntimeError(f"the migration lock failed: {take} returned NULL")
        if got:
            break
        connection.rollback()  # wait outside a transaction: CREATE INDEX CONCURRENTLY waits for transactions
        if attempt == 0:
            logging.getLogger("alembic.env").info("another process holds the migration lock; waiting for it")
        time.sleep(1)
    connection.commit()  # so Alembic begins its own transaction, and reads alembic_version after the lock
    try:
        yield
    finally:
        connection.exec_driver_sql(release)
'''
