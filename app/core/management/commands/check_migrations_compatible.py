"""`check_migrations_compatible`: would the pending migrations break the release still
serving? (expand/contract, core/migration_safety.py). `migrate` runs the same check under
its lock; this one reads only, for CI or an operator before a deploy."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from core.migration_safety import pending_problems, refusal


class Command(BaseCommand):
    help = "Refuse pending migrations that the release still serving cannot tolerate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        if problems := pending_problems(connections[options["database"]]):
            raise CommandError(refusal(problems))
        self.stdout.write("pending migrations: none breaks the release still serving")
