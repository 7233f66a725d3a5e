"""Expand/contract: a pending migration that the release still serving cannot tolerate is
refused before anything is applied, unless it is marked as a contract step."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from django.db import migrations, models
from django.db.migrations.state import ProjectState

from tests.app.support import APP_DIR

if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

from core.migration_safety import incompatible

NOINPUT = {"interactive": False}
CREATE = migrations.CreateModel(
    "Thing",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("name", models.TextField()),
        ("note", models.TextField(null=True)),
    ],
)


def migration(name: str, *operations: Any, contract: bool = False) -> migrations.Migration:
    made = migrations.Migration(name, "shop")
    made.operations = list(operations)
    if contract:
        made.contract = True  # type: ignore[attr-defined]
    return made


class Loader:
    """MigrationLoader.project_state over a straight list of migrations."""

    def __init__(self, *chain: migrations.Migration) -> None:
        self.chain = chain

    def project_state(self, key: tuple[str, str], at_end: bool) -> ProjectState:
        state = ProjectState()
        for step in self.chain:
            if (step.app_label, step.name) == key:
                break
            state = step.mutate_state(state, preserve=False)
        return state


def problems(*operations: Any, contract: bool = False) -> list[str]:
    first, pending = migration("0001_initial", CREATE), migration("0002_x", *operations)
    if contract:
        pending.contract = True  # type: ignore[attr-defined]
    return incompatible([(pending, False)], Loader(first, pending))


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        (migrations.RemoveField("thing", "note"), "shop.0002_x: removes thing.note"),
        (migrations.DeleteModel("Thing"), "shop.0002_x: deletes the model Thing"),
        (migrations.RenameField("thing", "name", "title"), "renames thing.name to title"),
        (migrations.RenameModel("Thing", "Item"), "renames the model Thing to Item"),
        (migrations.AlterModelTable("thing", "things"), "moves the model thing to the table"),
        (migrations.AddField("thing", "size", models.IntegerField(default=1)),
         "adds thing.size NOT NULL without a db_default"),
        (migrations.AlterField("thing", "note", models.TextField()),
         "makes thing.note NOT NULL without a db_default"),
        (migrations.RunSQL("UPDATE shop_thing SET name = ''"), "runs SQL not marked"),
    ],
)  # fmt: skip
def test_a_breaking_step_is_refused_unless_marked_contract(operation: Any, expected: str) -> None:
    found = problems(operation)
    assert len(found) == 1 and expected in found[0], found
    assert problems(operation, contract=True) == []


@pytest.mark.parametrize(
    "operation",
    [
        migrations.AddField("thing", "size", models.IntegerField(null=True)),
        migrations.AddField("thing", "size", models.IntegerField(db_default=1)),
        migrations.AlterField("thing", "name", models.TextField(db_index=True)),  # was NOT NULL
        migrations.AlterField("thing", "note", models.TextField(db_default="")),
        migrations.AddIndex("thing", models.Index(fields=["name"], name="thing_name")),
        migrations.CreateModel("Other", [("id", models.BigAutoField(primary_key=True))]),
        migrations.RunSQL("CREATE INDEX x ON shop_thing (note)", hints={"compatible": True}),
    ],
)
def test_an_expand_step_passes(operation: Any) -> None:
    assert problems(operation) == []


def test_unapplying_a_migration_is_refused() -> None:
    step = migration("0002_x", migrations.AddField("thing", "size", models.IntegerField(null=True)))
    found = incompatible([(step, True)], Loader(migration("0001_initial", CREATE), step))
    assert found == ["shop.0002_x: unapplies a migration the running release may use"]


@pytest.mark.parametrize(("case", "refused"), [("breaking", True), ("contract", False)])
def test_migrate_refuses_before_applying_anything(
    django_app: dict[str, str], case: str, refused: bool
) -> None:
    """Against the real database (the app's migrations applied): `migrate` and the
    read-only check refuse a breaking step, and leave the column in place."""
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.db import connection
    from django.test import override_settings

    def columns() -> set[str]:
        with connection.cursor() as cursor:
            return {c.name for c in connection.introspection.get_table_description(
                cursor, "logs_logrecord")}  # fmt: skip

    with override_settings(MIGRATION_MODULES={"logs": f"tests.app.migration_cases.{case}"}):
        if refused:
            for command, options in (("check_migrations_compatible", {}), ("migrate", NOINPUT)):
                with pytest.raises(CommandError, match=r"logs\.0002_drop_source: removes"):
                    call_command(command, verbosity=0, **options)
        else:  # marked contract: passes the check (not applied: the other tests use it)
            call_command("check_migrations_compatible", verbosity=0)
    assert "source" in columns()
