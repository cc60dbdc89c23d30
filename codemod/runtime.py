"""The guard helpers idempotify writes into a migration, as ordinary functions.

Tests import and call these functions; the migration gets a copy of those it
needs, cut from this module's source by ``codemod.guards`` (type hints and the
comments above each ``def`` are left out of the copy). So that a migration never
imports idempotify, every function here is self-contained: it imports only
sqlalchemy, alembic and the standard library, inside its body, and calls no
other name of this module but the other helpers.

One function, ``_idempotify``, answers every guard: "must this op run?". It
inspects the live database afresh (an Inspector caches reflection and goes
stale after DDL), logs a skip through Alembic's own logger, and answers True in
offline mode (``alembic upgrade --sql``) so the SQL Alembic writes is the
original's. What a table and a column are it knows itself; every other kind of
object has a finder, ``_idempotify_<kind>``, written only into the files that
need it. A skipped create of a column, index, unique constraint or foreign key
is compared with what the database has by ``_idempotify_drift``, when it is
there: a shared helpers module holds it, an inline block leaves it out (it is
larger than the rest of the block).

A statement, or ``if``/``elif`` branch, that ends in a comment ``# part:
<name>`` serves only some guards: a migration's copy keeps it only when a
guard in the file needs it (``codemod.guards`` says which do), and no copy
keeps the comment. A migration that checks only tables and columns, say, gets
no finder lookup; one that drops foreign keys, no look at unique constraints.
"""

from __future__ import annotations

from typing import Any

HELPER_PREFIX = "_idempotify"


# A column, index or constraint on a missing table: the op runs, and fails as
# it does unguarded, unless the function removes that table (``gone``): a re-run
# then finds the table dropped on purpose. A finder answers None where it
# cannot tell (no such objects on this database): the op runs as written. A
# skip is logged, unless ``quiet``: of guards joined with ``or``, only the last
# one skipping skips the op.
def _idempotify(
    guard: str,
    table: Any,
    name: Any = None,
    *args: Any,
    schema: Any = None,
    gone: bool = False,
    **kw: Any,
) -> bool:
    """Must the op run? ``guard`` says when: "op.add_column: no column"."""
    import sqlalchemy
    from alembic import op
    from alembic.runtime.migration import log

    if op.get_context().as_sql:
        return True
    db: Any = sqlalchemy.inspect(op.get_bind())
    call, _, check = guard.rpartition(": ")
    absent = check.startswith("no ")
    kind = check[3:] if absent else check
    found = table is None or db.has_table(table, schema=schema)
    if not found and kind != "table":  # No table: runs and fails unless gone.
        kind, absent = "table", not gone
    elif kw.pop("copied", False) and db.bind.dialect.name == "sqlite":  # part: copied
        # SQLite's batch copy replaces a constraint of that name.
        return True
    elif kind == "column":  # part: column
        found = name in [c["name"] for c in db.get_columns(table, schema=schema)]
    elif kind != "table":  # part: finder
        finder = globals()["_idempotify_" + kind.replace(" ", "_")]
        found = finder(db, table, name, schema, *args, absent=absent, **kw)
    run = found is None or bool(found) != absent
    if not run and kw.get("indexes"):  # part: indexes
        # CREATE TABLE, then CREATE INDEX: a deploy that died between them.
        lacking = _idempotify_lacking_indexes(db, table, schema, kw["indexes"])
        if lacking:
            words = "%s(%s): the table is there without its index %s; the op"
            words += " runs, and fails as it does unguarded: make the index"
            words += " (or drop the table) by hand, then run it again"
            log.warning(words, call, table, ", ".join(lacking))
            return True
    if not run and not kw.get("quiet"):
        what = ".".join(str(part) for part in (table, name) if part is not None)
        why = kind + (" exists" if found else " is absent")
        extra = {"idempotify": (table, name)}  # Read by idempotify plan.
        log.info("skipped %s(%s): %s", call, what, why, extra=extra)
        if found and absent and "_idempotify_drift" in globals():  # part: drift
            _idempotify_drift(db, guard, what, table, name, schema)
    return run


# Drift: a create skipped because an object of its name exists is compared
# with what the database has: a column's type class (coarse, as reflection
# reports it on every dialect: a Boolean is an integer, JSON and UUID are text)
# and nullability; an index's columns and uniqueness; a unique constraint's
# columns; a foreign key's columns and referred table and columns. What cannot
# be read or matched says nothing; nothing here fails the op.
def _idempotify_drift(
    db: Any, guard: str, what: str, table: Any, name: Any, schema: Any
) -> None:
    """Log a WARNING when what a skipped create found is not what it makes."""
    import warnings

    import sqlalchemy as sa
    from alembic.runtime.migration import log

    call, _, kind = guard.partition(": no ")
    method, dialect = call.rpartition(".")[2], db.bind.dialect
    listed = {"add_column": ["columns"], "create_foreign_key": ["foreign_keys"]}
    listed["create_index"] = ["indexes"]
    listed["create_unique_constraint"] = ["indexes", "unique_constraints"]
    if method not in listed:  # Not a create of these (a rename, say).
        return
    classes: list[Any] = [(sa.Integer, sa.Boolean), sa.Numeric, sa.DateTime]
    uuid = getattr(sa, "Uuid", sa.String)  # SQLAlchemy 1.4 has none
    classes += [(sa.String, sa.JSON, uuid), sa.Date, sa.Time]

    def text(columns: Any, unique: Any = False, refers: Any = None) -> str:
        said = ("UNIQUE " if unique else "") + "(%s)" % ", ".join(columns)
        return said + (" REFERENCES %s(%s)" % refers if refers else "")

    def typed(type_: Any, nullable: Any) -> tuple[Any, bool, str]:
        impl = type_.dialect_impl(dialect)
        impl = getattr(impl, "impl_instance", impl)  # A TypeDecorator: what it stores.
        group = next((i for i, c in enumerate(classes) if isinstance(impl, c)), None)
        said = type_.compile(dialect=dialect) + (" NULL" if nullable else " NOT NULL")
        return group, bool(nullable), said

    try:
        given = _idempotify_guarded_op(guard, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLAlchemy's, on what it cannot reflect.
            listing = [getattr(db, "get_" + of) for of in listed[method]]
            found = [each for get in listing for each in get(table, schema=schema)]
        found = {each["name"]: each for each in found}[name]
        if kind == "column":
            a, a_null, has = typed(found["type"], found["nullable"])
            b, b_null, makes = typed(given["column"].type, given["column"].nullable)
            same = a_null == b_null and (a == b or None in (a, b))
        elif kind == "foreign key":
            refers = found["referred_table"], ", ".join(found["referred_columns"])
            has = text(found["constrained_columns"], refers=refers)
            refers = given["referent_table"], ", ".join(given["remote_cols"])
            makes = text(given["local_cols"], refers=refers)
        else:  # An index, or a unique constraint (or MariaDB's index for it).
            columns = given["columns"]
            columns = [columns] if isinstance(columns, str) else columns
            index = kind == "index"
            has = text(found["column_names"], index and found["unique"])
            makes = text(columns, index and given.get("unique"))
        if kind != "column":
            same = has.lower() == makes.lower()
    except Exception:  # noqa: BLE001 - a check that cannot be made says nothing
        return
    words = "%s(%s) skipped; the %s differs: the database has %s, the op makes %s"
    if not same:  # Tagged: not a skip, for tools reading the log (idempotify plan).
        log.warning(words, call, what, kind, has, makes, extra={"idempotify_drift": 1})


# The op a guard guards is the first statement of the ``if`` whose test called
# it, read from the migration's source; its arguments are evaluated in the
# caller's frame, once, as the skipped op would have. An object the function
# alters or drops further on (add a column, fill it, make it NOT NULL) differs
# by the migration's own hand: it is not compared.
def _idempotify_guarded_op(guard: str, name: Any) -> dict[str, Any]:
    """The arguments, by parameter name, of the op the calling guard skips."""
    import ast
    import inspect
    import linecache
    import sys

    from alembic.operations import BatchOperations, Operations

    frame: Any = sys._getframe(1)
    while frame.f_code.co_name.startswith("_idempotify"):
        frame = frame.f_back
    path, line = frame.f_code.co_filename, frame.f_lineno
    linecache.checkcache(path)
    tree = ast.parse("".join(linecache.getlines(path, frame.f_globals)))
    nodes: list[Any] = list(ast.walk(tree))
    ifs: list[Any] = [n for n in nodes if isinstance(n, ast.If)]
    node = next(n for n in ifs if n.test.lineno <= line <= n.test.end_lineno)
    call, method = node.body[0].value, guard.partition(": ")[0].rpartition(".")[2]
    said = [getattr(n, "value", None) for n in ast.walk(node.test)]
    if call.func.attr != method or guard not in said:
        raise LookupError(guard)  # Not the source running (changed, or not written).
    scopes = [n for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    scopes = [n for n in scopes if n.lineno <= line <= n.end_lineno]
    scope = max(scopes, key=lambda n: n.lineno)  # The innermost.
    later = [n for n in ast.walk(scope) if isinstance(n, ast.Call)]
    later = [n for n in later if n.lineno > node.end_lineno]
    later = [n for n in later if getattr(n.func, "attr", "")[:5] in ("alter", "drop_")]
    if name in [getattr(n, "value", None) for each in later for n in ast.walk(each)]:
        raise LookupError(name)

    def value(node: Any) -> Any:
        code = compile(ast.Expression(node), path, "eval")
        return eval(code, frame.f_globals, frame.f_locals)

    ops = value(call.func.value)
    ops = BatchOperations if isinstance(ops, BatchOperations) else Operations
    keywords = {k.arg: value(k.value) for k in call.keywords}
    bind = inspect.signature(getattr(ops, method)).bind
    given = bind(None, *map(value, call.args), **keywords).arguments
    return {**given.pop("kw", {}), **given}


# Looked up by name in the catalog: reflection leaves out expression indexes,
# and a drop_index may not say its table. An index left invalid by a failed
# CREATE INDEX CONCURRENTLY (PostgreSQL) makes a create run as written, unless
# the file builds indexes concurrently: then it gets the helper that drops it.
def _idempotify_index(
    db: Any, table: Any, name: Any, schema: Any, absent: bool = False, **kw: Any
) -> bool | None:
    """Whether the index is there."""
    import sqlalchemy

    if name is None or len(str(name)) > 30:
        name = _idempotify_index_name(db, table, name, schema, **kw)
    dialect = db.bind.dialect.name
    if dialect == "sqlite":
        query = "SELECT 1 FROM sqlite_master WHERE type = 'index'"
        if schema is not None:  # An attached database.
            quoted = db.bind.dialect.identifier_preparer.quote_schema(schema)
            query = query.replace("sqlite_master", quoted + ".sqlite_master")
        query += " AND name = :name COLLATE NOCASE"
        on = "tbl_name = :table COLLATE NOCASE"
    elif dialect == "postgresql":
        query = (
            "SELECT i.indisvalid FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_class t ON t.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relname = :name AND c.relkind IN ('i', 'I')"
            " AND n.nspname = coalesce(:schema, current_schema())"
        )
        on = "t.relname = :table"
    elif dialect in ("mysql", "mariadb"):
        query = (
            "SELECT 1 FROM information_schema.statistics"
            " WHERE index_name = :name"
            " AND table_schema = coalesce(:schema, database())"
        )
        on = "table_name = :table"
    else:  # No catalog query known: what reflection says, or the op runs.
        if not table:
            return None
        return any(i["name"] == name for i in db.get_indexes(table, schema=schema))
    if table is not None:
        query += " AND " + on
    params = {"name": name, "schema": schema, "table": table}
    found = db.bind.execute(sqlalchemy.text(query), params).first()
    invalid = found is not None and not found[0] and absent
    if invalid and "_idempotify_drop_invalid_index" in globals():  # part: invalid
        return _idempotify_drop_invalid_index(db, name, schema)
    return None if invalid else found is not None


def _idempotify_lacking_indexes(
    db: Any, table: Any, schema: Any, indexes: Any
) -> list[str]:
    """Of the indexes a create_table makes (each by its name, or by its
    columns), those the table lacks."""
    lacking = []
    for index in indexes:
        if isinstance(index, str):
            there = _idempotify_index(db, table, index, schema)
            said = index
        else:  # By the name the naming convention gives it: another index
            # on its columns may be a unique constraint's, or MySQL's for a
            # foreign key, made with the table.
            there = _idempotify_index(db, table, None, schema, columns=index)
            said = "on (%s)" % ", ".join(index)
        if there is False:
            lacking.append(said)
    return lacking


# The name in the catalog: an unnamed index is named by the naming convention,
# as Alembic names it; a name too long for the database is cut by PostgreSQL
# (elsewhere the op fails as written).
def _idempotify_index_name(
    db: Any,
    table: Any,
    name: Any,
    schema: Any,
    columns: Any = None,
    unique: Any = False,
    **_: Any,
) -> Any:
    """The index's name as the database stores it."""
    import sqlalchemy
    from alembic import op
    from alembic.operations.schemaobj import SchemaObjects

    index = sqlalchemy.Index(name)
    if name is None:
        make = SchemaObjects(op.get_context()).index
        index = make(None, table, columns, schema=schema, unique=unique)
    dialect = db.bind.dialect
    quoting = dialect.identifier_preparer
    try:
        return quoting.format_constraint(index, _alembic_quote=False)
    except sqlalchemy.exc.IdentifierError:
        if dialect.name != "postgresql":
            return name
        return name.encode()[: dialect.max_identifier_length].decode("utf-8", "ignore")


def _idempotify_drop_invalid_index(db: Any, name: Any, schema: Any) -> bool:
    """False, once the invalid index is dropped: the create then runs."""
    import sqlalchemy
    from alembic.runtime.migration import log

    quoting = db.bind.dialect.identifier_preparer
    quoted = quoting.quote(name)
    if schema is not None:  # An index lives in its table's schema.
        quoted = quoting.quote_schema(schema) + "." + quoted
    db.bind.execute(sqlalchemy.text("DROP INDEX " + quoted))
    log.warning(
        "idempotify: dropped index %s, left invalid by a failed"
        " CREATE INDEX CONCURRENTLY",
        name,
    )
    return False


# Named constraints are found by the name Alembic gives them (naming convention
# included); unnamed ones by their columns. A table has one primary key: it is
# the one of that name where the database reports names (a batch
# create_primary_key under another name replaces it, as the original does),
# else any. None when the table is missing.
def _idempotify_has_constraint(
    db: Any, constraint: Any, type_: str | None
) -> bool | None:
    """Whether ``constraint``, as Alembic builds it, is in the database."""
    import sqlalchemy

    table, schema = constraint.table.name, constraint.table.schema
    dialect, name = db.bind.dialect, constraint.name
    if name is not None:
        quoting = dialect.identifier_preparer
        name = quoting.format_constraint(constraint, _alembic_quote=False)
    if type_ == "primary":  # part: primary
        key = db.get_pk_constraint(table, schema=schema)
        if not key.get("constrained_columns"):
            return False
        return name is None or key.get("name") is None or key["name"] == name
    if name is None and not list(constraint.columns):
        return True  # A name known at run time only, and None: let it run.
    if name is not None and dialect.name == "postgresql":
        query = (
            "SELECT 1 FROM pg_constraint c"
            " JOIN pg_class t ON t.oid = c.conrelid"
            " JOIN pg_namespace n ON n.oid = t.relnamespace"
            " WHERE c.conname = :name AND t.relname = :table"
            " AND n.nspname = coalesce(:schema, current_schema())"
        )
        params = {"name": str(name), "table": table, "schema": schema}
        kinds = {"unique": "u", "foreignkey": "f", "check": "c", "exclude": "x"}
        if type_ in kinds:
            # contype is a "char", which asyncpg will not bind a str to.
            query += " AND CAST(c.contype AS text) = :kind"
            params["kind"] = kinds[type_]
        return db.bind.execute(sqlalchemy.text(query), params).first() is not None
    found: list[Any] = []  # (name, columns, (referred table, columns))
    try:
        if type_ is None:  # part: untyped
            key = db.get_pk_constraint(table, schema=schema)
            found.append((key.get("name"), key.get("constrained_columns"), None))
        if type_ in ("unique", None):  # part: unique
            for u in db.get_unique_constraints(table, schema=schema):
                found.append((u["name"], u["column_names"], None))
            # MySQL and MariaDB report unique constraints as indexes.
            for i in db.get_indexes(table, schema=schema):
                found += [(i["name"], i["column_names"], None)] if i["unique"] else []
        if type_ in ("foreignkey", None):  # part: foreignkey
            for k in db.get_foreign_keys(table, schema=schema):
                refers = (k["referred_table"], sorted(k["referred_columns"]))
                found.append((k["name"], k["constrained_columns"], refers))
        if type_ in ("check", None):  # part: check
            for c in db.get_check_constraints(table, schema=schema):
                found.append((c["name"], None, None))
    except sqlalchemy.exc.NoSuchTableError:
        return None
    if name is not None:
        return any(found_name == name for found_name, _, _ in found)
    columns = sorted(column.name for column in constraint.columns)
    referred: Any = None
    if isinstance(constraint, sqlalchemy.ForeignKeyConstraint):
        referred_columns = sorted(e.column.name for e in constraint.elements)
        referred = (constraint.referred_table.name, referred_columns)
    return any(sorted(c or ()) == columns and r == referred for _, c, r in found)


def _idempotify_unique_constraint(
    db: Any, table: Any, name: Any, schema: Any, columns: Any, **_: Any
) -> Any:
    """Whether it is there: by its name, or unnamed, by its columns."""
    from alembic import op
    from alembic.operations.schemaobj import SchemaObjects

    make = SchemaObjects(op.get_context()).unique_constraint
    constraint = make(name, table, columns, schema=schema)
    return _idempotify_has_constraint(db, constraint, "unique")


def _idempotify_primary_key(
    db: Any, table: Any, name: Any, schema: Any, columns: Any, **kw: Any
) -> Any:
    """Whether the table has a primary key (of that name, if named)."""
    from alembic import op
    from alembic.operations.schemaobj import SchemaObjects

    make = SchemaObjects(op.get_context()).primary_key_constraint
    constraint = make(name, table, columns, schema=schema)
    if kw.get("exact"):  # part: remade
        # Exactly the key an op makes: on its columns, in its order, too.
        key = db.get_pk_constraint(table, schema=schema)
        if key.get("constrained_columns") != list(columns):
            return False
    return _idempotify_has_constraint(db, constraint, "primary")


def _idempotify_foreign_key(
    db: Any,
    table: Any,
    name: Any,
    schema: Any,
    referent: Any,
    local: Any,
    remote: Any,
    **kw: Any,
) -> Any:
    """Whether it is there: by its name, or unnamed, by its columns."""
    from alembic import op
    from alembic.operations.schemaobj import SchemaObjects

    make = SchemaObjects(op.get_context()).foreign_key_constraint
    schemas = dict(source_schema=schema, referent_schema=kw.get("referent_schema"))
    constraint = make(name, table, referent, local, remote, **schemas)
    return _idempotify_has_constraint(db, constraint, "foreignkey")


def _idempotify_check_constraint(
    db: Any, table: Any, name: Any, schema: Any, condition: Any, **_: Any
) -> Any:
    """Whether a check constraint of that name is there."""
    from alembic import op
    from alembic.operations.schemaobj import SchemaObjects

    make = SchemaObjects(op.get_context()).check_constraint
    constraint = make(name, table, condition, schema=schema)
    return _idempotify_has_constraint(db, constraint, "check")


def _idempotify_exclusion_constraint(
    db: Any, table: Any, name: Any, schema: Any, **_: Any
) -> Any:
    """Whether an exclusion constraint of that name is there."""
    from alembic import op
    from alembic.operations.schemaobj import SchemaObjects

    make = SchemaObjects(op.get_context()).generic_constraint
    constraint = make(name, table, None, schema=schema)
    return _idempotify_has_constraint(db, constraint, "exclude")


def _idempotify_constraint(
    db: Any, table: Any, name: Any, schema: Any, type_: Any = None, **kw: Any
) -> Any:
    """Whether a constraint of that name (and type) is there."""
    from alembic import op
    from alembic.operations.schemaobj import SchemaObjects

    make = SchemaObjects(op.get_context()).generic_constraint
    constraint = make(name, table, type_, schema=schema)
    found = _idempotify_has_constraint(db, constraint, type_)
    if not found and kw.get("naming_convention"):  # part: convention
        convention = kw["naming_convention"]
        found = _idempotify_named_by_convention(db, constraint, type_, convention)
    return found


# A batch block's naming_convention= names the constraints of the table Alembic
# reflects (its recipe for dropping an unnamed SQLite foreign key), so the drop
# finds it by that name.
def _idempotify_named_by_convention(
    db: Any, constraint: Any, type_: Any, naming_convention: Any
) -> bool:
    """Whether a constraint reported unnamed gets this name by convention."""
    import sqlalchemy

    kinds = {
        "foreignkey": sqlalchemy.ForeignKeyConstraint,
        "unique": sqlalchemy.UniqueConstraint,
        "check": sqlalchemy.CheckConstraint,
        "primary": sqlalchemy.PrimaryKeyConstraint,
    }
    metadata = sqlalchemy.MetaData(naming_convention=naming_convention)
    table = constraint.table
    reflected = sqlalchemy.Table(
        table.name, metadata, schema=table.schema, autoload_with=db.bind
    )
    kind = kinds.get(type_ or "", sqlalchemy.Constraint)
    wanted = str(constraint.name)
    return any(
        isinstance(found, kind) and str(found.name) == wanted
        for found in reflected.constraints
    )


def _idempotify_sequence(
    db: Any, table: None, name: Any, schema: Any, **_: Any
) -> bool | None:
    """Whether the sequence is there; None where there are no sequences."""
    try:
        return bool(db.has_sequence(name, schema=schema))
    except NotImplementedError:
        return None


def _idempotify_enum_type(
    db: Any, table: None, name: Any, schema: Any, **_: Any
) -> bool | None:
    """Whether the enum type is there; None where there are no enum types."""
    if db.bind.dialect.name != "postgresql":
        return None
    return any(enum["name"] == name for enum in db.get_enums(schema=schema))


def _idempotify_row(db: Any, table: Any, name: None, schema: Any, **_: Any) -> bool:
    """Whether the table has a row (its seed insert ran)."""
    import sqlalchemy

    rows = sqlalchemy.table(table, schema=schema)
    query = sqlalchemy.select(sqlalchemy.literal(1)).select_from(rows).limit(1)
    return db.bind.execute(query).first() is not None


def _idempotify_schema(db: Any, table: None, name: Any, schema: None, **_: Any) -> bool:
    """Whether the schema is there (MySQL: the database)."""
    return name in db.get_schema_names()


def _idempotify_view(db: Any, table: None, name: Any, schema: Any, **_: Any) -> bool:
    """Whether the view is there."""
    return name in db.get_view_names(schema=schema)


def _idempotify_trigger(
    db: Any, table: Any, name: Any, schema: Any, **_: Any
) -> bool | None:
    """Whether the trigger is there (on its table, where given)."""
    return _idempotify_catalog(db, "trigger", table, name, schema)


def _idempotify_function(
    db: Any,
    table: None,
    name: Any,
    schema: Any,
    arguments: Any = None,
    absent: bool = False,
    **_: Any,
) -> bool | None:
    """Whether the function is there.

    On PostgreSQL, the one of these argument types (``to_regprocedure``), in
    the schema named, else where CREATE FUNCTION makes it (the current schema)
    and DROP FUNCTION finds it (the search path); with no arguments given
    (``DROP FUNCTION f``), any of that name DROP finds.
    """
    import sqlalchemy

    dialect = db.bind.dialect.name
    if dialect in ("mysql", "mariadb"):
        query = (
            "SELECT 1 FROM information_schema.routines"
            " WHERE routine_type = 'FUNCTION' AND routine_name = :name"
            " AND routine_schema = coalesce(:schema, database())"
        )
        params = {"name": name, "schema": schema}
        return db.bind.execute(sqlalchemy.text(query), params).first() is not None
    if dialect != "postgresql":
        return None
    if schema is None and absent:
        current = sqlalchemy.text("SELECT current_schema()")
        schema = db.bind.execute(current).scalar()
    if arguments is None:
        query = (
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n"
            " ON n.oid = p.pronamespace WHERE p.proname = :name"
        )
        if schema is None:
            query += " AND pg_function_is_visible(p.oid)"
        else:
            query += " AND n.nspname = :schema"
        params = {"name": name, "schema": schema}
        return db.bind.execute(sqlalchemy.text(query), params).first() is not None
    # A type that is not there: no function takes it (to_regprocedure fails).
    for type_ in arguments:
        regtype = sqlalchemy.text("SELECT to_regtype(:type)")
        if db.bind.execute(regtype, {"type": type_}).scalar() is None:
            return False
    query = "SELECT to_regprocedure("
    if schema is not None:
        query += "quote_ident(:schema) || '.' || "
    query += "quote_ident(:name) || '(' || :arguments || ')')"
    params = {"name": name, "schema": schema, "arguments": ", ".join(arguments)}
    return db.bind.execute(sqlalchemy.text(query), params).scalar() is not None


def _idempotify_extension(
    db: Any, table: None, name: Any, schema: Any, **_: Any
) -> bool | None:
    """Whether the extension is installed (PostgreSQL)."""
    return _idempotify_catalog(db, "extension", table, name, schema)


def _idempotify_enum_value(
    db: Any, table: None, name: Any, schema: Any, enum_name: Any = None, **_: Any
) -> bool | None:
    """Whether the enum type has the value (PostgreSQL)."""
    return _idempotify_catalog(db, "enum_value", table, name, schema, enum_name)


def _idempotify_catalog(
    db: Any, kind: str, table: Any, name: Any, schema: Any, enum_name: Any = None
) -> bool | None:
    """Whether an object only SQL makes is there; None where there are none."""
    import sqlalchemy

    dialect = db.bind.dialect.name
    dialect = "mysql" if dialect == "mariadb" else dialect
    here = "coalesce(:schema, current_schema())"
    if dialect == "mysql":
        here = "coalesce(:schema, database())"
    queries = {
        ("trigger", "postgresql"): "SELECT 1 FROM pg_trigger g"
        " JOIN pg_class t ON t.oid = g.tgrelid"
        " JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE g.tgname = :name AND n.nspname = " + here,
        ("trigger", "mysql"): "SELECT 1 FROM information_schema.triggers"
        " WHERE trigger_name = :name AND trigger_schema = " + here,
        ("trigger", "sqlite"): "SELECT 1 FROM sqlite_master"
        " WHERE type = 'trigger' AND name = :name",
        ("extension", "postgresql"): "SELECT 1 FROM pg_extension WHERE extname = :name",
        ("enum_value", "postgresql"): "SELECT 1 FROM pg_enum e"
        " JOIN pg_type t ON t.oid = e.enumtypid"
        " JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE e.enumlabel = :name AND t.typname = :enum"
        " AND n.nspname = " + here,
    }
    query = queries.get((kind, dialect))
    if query is None:
        return None
    if kind == "trigger" and table is not None and dialect != "sqlite":
        column = "t.relname" if dialect == "postgresql" else "event_object_table"
        query += " AND " + column + " = :table"
    params = {"name": name, "schema": schema, "table": table, "enum": enum_name}
    return db.bind.execute(sqlalchemy.text(query), params).first() is not None


def _idempotify_table(table_name: Any, schema: Any = None) -> Any:
    """The table as the database has it (its create_table was skipped)."""
    import sqlalchemy
    from alembic import op

    bind = op.get_bind()
    return sqlalchemy.Table(
        table_name, sqlalchemy.MetaData(), schema=schema, autoload_with=bind
    )


# Recreating a table, Alembic copies it into _alembic_tmp_<table>, drops it,
# then renames the copy. The table still there: the copy did not replace it,
# and is dropped (on PostgreSQL, where Alembic first moves the table's named
# constraints to the copy, both are left for the block to fail on, as it would
# unguarded). Only the copy there: it is renamed to the table (indexes the
# block does not create are lost).
def _idempotify_recover_batch(table_name: Any, schema: Any = None) -> bool:
    """True, once what a batch block that died part-way left is put right."""
    import sqlalchemy
    from alembic import op
    from alembic.runtime.migration import log

    copy = ("_alembic_tmp_%s" % table_name)[:50]  # As Alembic names it.
    db: Any = None if op.get_context().as_sql else sqlalchemy.inspect(op.get_bind())
    if db is None or not db.has_table(copy, schema=schema):
        return True
    impl = op.get_context().impl
    if not db.has_table(table_name, schema=schema):
        impl.rename_table(copy, table_name, schema=schema)
        done = "renamed %s to it, losing indexes it does not make"
    elif db.bind.dialect.name == "postgresql":
        done = "left %s, which holds its constraints: fix by hand"
    else:
        impl.drop_table(sqlalchemy.Table(copy, sqlalchemy.MetaData(), schema=schema))
        done = "dropped %s, an unfinished copy"
    died = "idempotify: a batch block on %s died part-way: "
    log.warning(died + done, table_name, copy)
    return True


# A downgrade's drop_table leaves its enum types behind; without this, the next
# create_table fails on CREATE TYPE. A type of the same name and labels is
# marked create_type=False through a one-shot before_create listener; one at a
# time: a create_table that failed leaves its own armed.
def _idempotify_reuse_enum_types(table_name: Any, schema: Any = None) -> bool:
    """True; on PostgreSQL, the next create_table reuses enum types."""
    import sqlalchemy
    from alembic import op
    from sqlalchemy import event

    if op.get_context().as_sql or op.get_bind().dialect.name != "postgresql":
        return True
    db: Any = sqlalchemy.inspect(op.get_bind())
    default = db.default_schema_name
    enums = db.get_enums(schema="*")
    existing = {(e["schema"], e["name"]): list(e["labels"]) for e in enums}

    def reuse(table: Any, connection: Any, **kw: Any) -> None:
        if (table.name, table.schema) != (table_name, schema):
            return
        for column in table.columns:
            impl = column.type.dialect_impl(connection.dialect)
            key = (
                getattr(impl, "schema", None) or default,
                getattr(impl, "name", None),
            )
            labels = list(getattr(impl, "enums", None) or ())
            if getattr(impl, "create_type", False) and existing.get(key) == labels:
                impl.create_type = False  # The same type: reuse it.

    armed = _idempotify_reuse_enum_types.__dict__.setdefault("armed", [])
    for listener in armed:
        if event.contains(sqlalchemy.Table, "before_create", listener):
            event.remove(sqlalchemy.Table, "before_create", listener)
    armed[:] = [reuse]
    event.listen(sqlalchemy.Table, "before_create", reuse, once=True)
    return True
