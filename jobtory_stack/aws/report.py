"""The one way the reconciler talks to the user: progress lines, remarks, waits.

Families never print: they call `ctx.report.line()` (a progress line such as
`  + vpc NAME (vpc-...)`), `note()` (a remark worth repeating at the end: an emulator
gap, a manual step; collected in `notes`) and `progress()` (a bounded wait's status).

`apply` plans everything before it changes anything. So that its output still reads
family by family (the family's remarks, its header, its calls), the lines written while
planning are held per `section` and released just before that family's header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Reporter:
    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self.notes: list[str] = []
        self._section = ""
        self._holding = False
        self._held: dict[str, list[str]] = {}

    def line(self, text: str) -> None:
        if self._holding:
            self._held.setdefault(self._section, []).append(text)
        else:
            self._write(text)

    def note(self, text: str) -> None:
        """A remark worth repeating at the end (an emulator gap, a manual step)."""
        self.notes.append(text)
        self.line(text)

    def progress(self, what: str, status: str, elapsed: float) -> None:
        self.line(f"  waiting for {what}: {status} ({elapsed:.0f}s)")

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Lines written inside belong to `name` (a family), for `hold` / `release`."""
        previous, self._section = self._section, name
        try:
            yield
        finally:
            self._section = previous

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the lines written inside (per section) until `release`."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def release(self, section: str) -> None:
        for text in self._held.pop(section, []):
            self._write(text)
