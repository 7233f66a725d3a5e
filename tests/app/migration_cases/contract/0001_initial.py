import importlib

# the logs app's own first migration, as the database has it applied
Migration = importlib.import_module("logs.migrations.0001_initial").Migration
