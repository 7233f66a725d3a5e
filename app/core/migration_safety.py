"""Expand/contract: the pending migrations that the release still serving cannot tolerate.

During a rolling deploy the new release migrates the database while the hosts not yet
switched keep serving the previous release's code against it. A migration is safe then
only when it *expands* the schema (new tables, nullable columns, columns with a database
default, indexes). A step that takes something away from the running code (drops or
renames a column or table, makes a column NOT NULL that the old code does not write,
runs SQL nobody vouched for) is a *contract* step: ship it in a later release, once every
host runs code that no longer uses what it removes, and mark the migration so:

    class Migration(migrations.Migration):
        contract = True  # deploy only after every host runs a release that no longer uses it

A RunSQL that keeps the running release working says so with hints={"compatible": True}.
docs/migrations.md has the rule and examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import migrations
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.state import ProjectState
from django.db.models import NOT_PROVIDED

CONTRACT_ATTRIBUTE = "contract"
COMPATIBLE_HINT = "compatible"


def _field_name(model: str, name: str) -> str:
    return f"{model}.{name}"


def _not_null_without_db_default(field: Any) -> bool:
    """The old code's INSERTs do not name the column: only a database default fills it."""
    if field.many_to_many or field.null:
        return False
    return getattr(field, "db_default", NOT_PROVIDED) is NOT_PROVIDED


def breaking_reason(app_label: str, operation: Any, state: ProjectState) -> str | None:
    """Why `operation` breaks the release still serving, given the state before it."""
    op = operation
    if isinstance(op, migrations.RemoveField):
        return f"removes {_field_name(op.model_name, op.name)} (the running release reads it)"
    if isinstance(op, migrations.DeleteModel):
        return f"deletes the model {op.name} (the running release uses its table)"
    if isinstance(op, migrations.RenameField):
        return f"renames {_field_name(op.model_name, op.old_name)} to {op.new_name}"
    if isinstance(op, migrations.RenameModel):
        return f"renames the model {op.old_name} to {op.new_name}"
    if isinstance(op, migrations.AlterModelTable):
        return f"moves the model {op.name} to the table {op.table!r}"
    if isinstance(op, migrations.AddField) and _not_null_without_db_default(op.field):
        return (
            f"adds {_field_name(op.model_name, op.name)} NOT NULL without a db_default "
            "(the running release's INSERTs do not set it)"
        )
    if isinstance(op, migrations.AlterField) and _not_null_without_db_default(op.field):
        before = state.models[app_label, op.model_name_lower].fields.get(op.name)
        if before is not None and before.null:
            return (
                f"makes {_field_name(op.model_name, op.name)} NOT NULL without a db_default "
                "(the running release may write NULL)"
            )
    if isinstance(op, migrations.RunSQL) and not op.hints.get(COMPATIBLE_HINT):
        return f'runs SQL not marked hints={{"{COMPATIBLE_HINT}": True}}'
    return None


def incompatible(plan: Iterable[tuple[Any, bool]], loader: Any) -> list[str]:
    """One line per breaking operation of the pending `plan` ((migration, backwards)
    pairs, as MigrationExecutor.migration_plan gives them) outside contract migrations.
    `loader` (a MigrationLoader) gives the project state before each migration."""
    problems = []
    for migration, backwards in plan:
        name = f"{migration.app_label}.{migration.name}"
        if backwards:
            problems.append(f"{name}: unapplies a migration the running release may use")
            continue
        if getattr(migration, CONTRACT_ATTRIBUTE, False):
            continue
        state = loader.project_state((migration.app_label, migration.name), at_end=False)
        for operation in migration.operations:
            if reason := breaking_reason(migration.app_label, operation, state):
                problems.append(f"{name}: {reason}")
            operation.state_forwards(migration.app_label, state)
    return problems


def pending_problems(connection: Any) -> list[str]:
    """incompatible() for what `migrate` would apply now on `connection`. A database
    with nothing applied yet has no release serving from it: nothing to protect."""
    executor = MigrationExecutor(connection)
    if not executor.loader.applied_migrations:
        return []
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return incompatible(plan, executor.loader)


def refusal(problems: list[str]) -> str:
    """The error a deploy stops with, before any migration runs."""
    lines = "\n".join(f"  {p}" for p in problems)
    return (
        "pending migrations would break the release still serving (expand/contract, "
        f"docs/migrations.md):\n{lines}\nShip an expand step first; once every host runs a "
        f"release that no longer uses it, mark the migration `{CONTRACT_ATTRIBUTE} = True`."
    )
