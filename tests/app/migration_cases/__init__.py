"""Small migration packages for tests/app/test_migration_compat.py: the logs app's real
0001_initial followed by one more step (MIGRATION_MODULES points logs at a package)."""
