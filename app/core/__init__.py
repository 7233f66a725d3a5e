"""Cross-cutting pieces: health checks, JSON helpers, request info, locked migrate."""
