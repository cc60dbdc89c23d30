"""The batch-block planner on its own: effects in, one decision per op out (no source text)."""

from __future__ import annotations

from codemod.effects import RUNS_ALWAYS, Action, BatchPlan, Decision, Effect, SchemaObject, plan_batch, remade_by

CREATES, REMOVES, CHANGES = Action.CREATES, Action.REMOVES, Action.CHANGES


def constraint(name: str | None, type_: str | None, *, literal: bool = True) -> SchemaObject:
    return SchemaObject("constraint", name, table="parent", literal=literal, type_=type_, label=f"constraint {name}")


def column(name: str) -> SchemaObject:
    return SchemaObject("column", name, table="parent", label=f"column {name}")


def index(name: str | None, *, literal: bool = True) -> SchemaObject:
    return SchemaObject("index", name, table="parent", literal=literal, label=f"index {name}")


def test_a_new_primary_key_runs_whenever_the_old_one_is_dropped() -> None:
    plan = plan_batch(
        [[Effect(REMOVES, constraint("pk_old", "primary"))], [Effect(CREATES, constraint("pk_new", "primary"))]]
    )
    assert plan == BatchPlan(decisions=(Decision(), Decision(also_after=(0,))))


def test_a_drop_without_type_may_be_the_primary_key() -> None:
    plan = plan_batch([[Effect(REMOVES, constraint("pk_old", None))], [Effect(CREATES, constraint(None, "primary"))]])
    assert plan.decisions[1] == Decision(also_after=(0,))


def test_a_foreign_key_dropped_by_a_name_found_at_run_time_may_be_the_one_created() -> None:
    dropped = constraint("fk_name", "foreignkey", literal=False)
    plan = plan_batch([[Effect(REMOVES, dropped)], [Effect(CREATES, constraint("'fk_child_parent'", "foreignkey"))]])
    assert plan.decisions[1] == Decision(also_after=(0,))


def test_objects_of_other_names_or_types_are_independent() -> None:
    plan = plan_batch(
        [
            [Effect(REMOVES, constraint("'uq_a'", "unique"))],
            [Effect(CREATES, constraint("'uq_b'", "unique"))],
            [Effect(CREATES, constraint("'fk_a'", "foreignkey"))],
            [Effect(CREATES, index("'ix_a'"))],
        ]
    )
    assert plan.decisions == (Decision(), Decision(), Decision(), Decision())


def test_a_later_drop_does_not_change_an_earlier_create() -> None:
    plan = plan_batch([[Effect(CREATES, index("'ix_b'"))], [Effect(REMOVES, index("'ix_a'"))]])
    assert plan.decisions == (Decision(), Decision())


def test_altering_a_column_the_block_adds_runs_every_time() -> None:
    plan = plan_batch([[Effect(CREATES, column("'c'"))], [Effect(CHANGES, column("'c'"))]])
    assert plan.decisions[1] == Decision(runs_always=RUNS_ALWAYS)


def test_an_index_or_constraint_dropped_and_made_again_is_made_every_time() -> None:
    for remade in (index("'ix_a'"), constraint("'fk_a'", "foreignkey")):
        plan = plan_batch([[Effect(REMOVES, remade)], [Effect(CREATES, remade)]])
        assert plan == BatchPlan(decisions=(Decision(), Decision(also_after=(0,))))


def test_a_column_dropped_and_added_again_leaves_the_block_alone() -> None:
    plan = plan_batch([[Effect(REMOVES, column("'c'"))], [Effect(CREATES, column("'c'"))]])
    assert plan.left_alone is not None
    assert plan.objects == ("column 'c'",)


def test_created_then_possibly_removed_leaves_the_block_alone() -> None:
    plan = plan_batch([[Effect(CREATES, index("'ix_a'"))], [Effect(REMOVES, index("name", literal=False))]])
    assert plan.left_alone is not None


def test_a_rename_is_a_removal_and_a_creation() -> None:
    rename = [Effect(REMOVES, column("'a'")), Effect(CREATES, column("'b'"))]
    plan = plan_batch([rename, [Effect(CHANGES, column("'b'"))]])
    assert plan.decisions == (Decision(), Decision(runs_always=RUNS_ALWAYS))


def test_a_primary_key_a_dropped_column_may_take_along_is_made_after_it_without_churn() -> None:
    """airflow drops the id its key is on, then makes a key on try_id; a key made before the drop is no churn."""
    drop = [Effect(REMOVES, column("'id'")), Effect(REMOVES, constraint(None, "primary", literal=False), implied=True)]
    plan = plan_batch(
        [[Effect(CREATES, constraint("'pk_old'", "primary"))], drop, [Effect(CREATES, constraint("'pk'", "primary"))]]
    )
    assert plan == BatchPlan(decisions=(Decision(), Decision(), Decision(also_after=(1,))))


def test_a_primary_key_dropped_and_made_again_under_its_name_is_dropped_only_unless_already_made() -> None:
    plan = plan_batch(
        [
            [Effect(REMOVES, constraint("pk", "primary"))],
            [Effect(REMOVES, column("id")), Effect(REMOVES, constraint(None, "primary", literal=False), implied=True)],
            [Effect(CREATES, constraint("pk", "primary"))],
        ]
    )
    assert plan.decisions == (Decision(unless_made_by=2), Decision(), Decision(also_after=(0, 1)))


def test_only_a_primary_key_named_by_the_same_literal_is_made_again() -> None:
    for dropped, made in [
        (constraint("pk", "primary"), constraint("pk_new", "primary")),
        (constraint("pk", "primary", literal=False), constraint("pk", "primary", literal=False)),
        (constraint("uq", "unique"), constraint("uq", "unique")),
        (index("ix"), index("ix")),
    ]:
        assert remade_by([[Effect(REMOVES, dropped)], [Effect(CREATES, made)]]) == (None, None)
