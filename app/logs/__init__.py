"""Log metadata (level, source, message, time, user): never request bodies or secrets."""
