"""What each op does to the schema, and how the ops of one batch block are decided together.

Alembic records the ops of a ``with op.batch_alter_table(...)`` block and runs
them all when the block ends, so every guard in the block is evaluated against
the schema as it was *before* the block. A guard is only right if no earlier op
of the same block changes what it looks at. ``plan_batch`` takes each op's
effects (which object it creates, removes or changes in place) and says, op by
op, how its guard must be decided:

- an op that creates an object an earlier op removes (``drop_constraint`` of
  the old primary key, then ``create_primary_key``) must run whenever that
  earlier op runs: its guard becomes "the earlier op's guard, or mine". A
  dropped column may take the primary key with it (airflow drops the ``id`` its
  key is on, then makes a key on another column): that counts as removing it;
- an op that changes an object an earlier op creates runs every time (its guard,
  checked before the block, would skip it on a fresh database);
- an index or constraint the block drops and makes again under its name (a
  foreign key re-made with ON DELETE CASCADE) follows the first rule: made
  whenever the drop runs, or when it is absent; every time while its table
  is there, but still guarded, so that it is skipped once the table is gone;
- a primary key the block drops and makes again under its name is dropped
  only while it is not already the one the block makes (same columns):
  otherwise a re-run would drop the key that foreign keys made since depend
  on, which PostgreSQL and MariaDB refuse (airflow re-keys ``team`` so);
- a block that creates an object and then removes it, or drops a table or
  column and makes it again (rows would be lost on each run), cannot be told
  apart from its own re-run by looking at the schema: the whole block is left
  alone, with the reason.

Everything here is plain data: no source text, no LibCST, so it is unit-tested
on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum


class Action(Enum):
    CREATES = "creates"
    REMOVES = "removes"
    CHANGES = "changes"


@dataclass(frozen=True)
class SchemaObject:
    """One object an op looks at. Names are normalised source (equal source, equal object).

    ``name`` is None for an object named at run time by the naming convention
    or found by its columns; ``literal`` says the name is a string constant,
    so two different literal names are two different objects. A primary key is
    a constraint of ``type_`` "primary": a table has one, whatever its name.
    ``type_`` None on a constraint means "of any type" (``drop_constraint``
    without ``type_``).
    """

    kind: str
    name: str | None
    table: str | None = None
    literal: bool = True
    type_: str | None = None
    label: str = ""

    def same_as(self, other: SchemaObject) -> bool:
        """Certainly the same object: same kind, table and name, named the same way."""
        return (
            self.kind == other.kind
            and self.table == other.table
            and self.name is not None
            and self.name == other.name
            and _types_agree(self, other)
        )

    def may_be(self, other: SchemaObject) -> bool:
        """Possibly the same object at run time (erring towards yes)."""
        if self.kind != other.kind or self.table != other.table or not _types_agree(self, other):
            return False
        if self.kind == "constraint" and "primary" in (self.type_, other.type_):
            return True  # one primary key per table
        if self.name is None or other.name is None or self.name == other.name:
            return True
        return not (self.literal and other.literal)


def _types_agree(a: SchemaObject, b: SchemaObject) -> bool:
    return a.type_ is None or b.type_ is None or a.type_ == b.type_


@dataclass(frozen=True)
class Effect:
    """``action`` on ``target``. An ``implied`` effect is one the op may have besides its own: a column dropped
    in a batch block takes the primary key it is part of with it. It orders the block's later creates after
    the op, but is no churn: the block may well create an object of that kind that the op does not touch."""

    action: Action
    target: SchemaObject
    implied: bool = False


@dataclass(frozen=True)
class Decision:
    """How one op of a batch block is guarded.

    ``also_after`` lists earlier ops (by position) whose running makes this op
    run too: its test is theirs joined with ``or`` to its own. ``runs_always``
    holds the reason the op must run every time (reported as already safe).
    ``unless_made_by`` is the later op (by position) that makes again the
    primary key this op drops: the drop runs only while the key is not
    already the one that op makes.
    """

    also_after: tuple[int, ...] = ()
    runs_always: str | None = None
    unless_made_by: int | None = None


@dataclass(frozen=True)
class BatchPlan:
    """The decisions for a block's ops, or ``left_alone``: the reason the whole block is not guarded."""

    decisions: tuple[Decision, ...] = ()
    left_alone: str | None = None
    objects: tuple[str, ...] = field(default_factory=tuple)


RUNS_ALWAYS = (
    "runs every time: the object it alters is created earlier in this batch block, "
    "and Alembic runs the block's ops together when it ends (re-applying is harmless)"
)

# Kinds of object that hold no rows: dropping one and making it again loses nothing, so a re-run may redo it.
ROWLESS = frozenset({"index", "constraint", "view", "trigger", "function"})


def plan_batch(ops: Sequence[Sequence[Effect]]) -> BatchPlan:
    """One decision per op of a batch block, given each op's effects in block order."""
    churned = _churned(ops)
    if churned:
        return BatchPlan(left_alone="churn", objects=churned)
    decisions = []
    remade = remade_by(ops)
    for index, effects in enumerate(ops):
        after: list[int] = []
        runs_always = None
        for earlier, earlier_effects in enumerate(ops[:index]):
            for mine in effects:
                for theirs in earlier_effects:
                    if not mine.target.may_be(theirs.target):
                        continue
                    if theirs.action is Action.REMOVES and mine.action is Action.CREATES:
                        if earlier not in after:
                            after.append(earlier)
                    elif (
                        theirs.action is Action.CREATES
                        and mine.action is Action.CHANGES
                        and mine.target.same_as(theirs.target)
                    ):
                        runs_always = RUNS_ALWAYS
        if runs_always is not None and all(effect.action is Action.CHANGES for effect in effects):
            decisions.append(Decision(runs_always=runs_always))
        else:
            decisions.append(Decision(also_after=tuple(after), unless_made_by=remade[index]))
    return BatchPlan(decisions=tuple(decisions))


def remade_by(ops: Sequence[Sequence[Effect]]) -> tuple[int | None, ...]:
    """Per op, the later op that makes again, under the same literal name, the primary key it drops; else None.

    A primary key is all in its name and columns, so "already the one the
    later op makes" can be told from the schema. Other constraints and indexes
    hold more (ON DELETE, a WHERE, DEFERRABLE) than a look at the schema checks.
    """
    found: list[int | None] = []
    for index, effects in enumerate(ops):
        dropped = [
            effect.target
            for effect in effects
            if effect.action is Action.REMOVES and not effect.implied and _is_named_primary_key(effect.target)
        ]
        later = (
            position
            for position in range(index + 1, len(ops))
            for effect in ops[position]
            if effect.action is Action.CREATES and any(effect.target.same_as(target) for target in dropped)
        )
        found.append(next(later, None))
    return tuple(found)


def _is_named_primary_key(target: SchemaObject) -> bool:
    return target.kind == "constraint" and target.type_ == "primary" and target.name is not None and target.literal


def _churned(ops: Sequence[Sequence[Effect]]) -> tuple[str, ...]:
    """Objects that the block removes after creating them, or removes and creates again under one name.

    Created then removed (in either naming): the guards, all checked before the
    block, would see the object absent and skip the removal. A table or column
    removed and created under the very same name: after the block the schema
    looks as it did before, so a re-run cannot be told from a first run, and
    running it again would empty it. (An index or constraint removed and made
    again is planned as any removal followed by a creation.)
    """
    found: list[str] = []
    for index, effects in enumerate(ops):
        for later in ops[index + 1 :]:
            for first in effects:
                for second in later:
                    actions = {first.action, second.action}
                    if actions != {Action.CREATES, Action.REMOVES} or first.implied or second.implied:
                        continue
                    created_then_removed = first.action is Action.CREATES and first.target.may_be(second.target)
                    # Removed then made again under its name: the op that makes it runs whenever the removal
                    # does (``also_after``), which is right for an object that holds no rows.
                    remade = first.target.same_as(second.target) and first.target.kind not in ROWLESS
                    if created_then_removed or remade:
                        label = first.target.label or f"{first.target.kind} {first.target.name}"
                        if label not in found:
                            found.append(label)
    return tuple(sorted(found))
