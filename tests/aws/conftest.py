"""The aws group's hooks on every client the reconciler creates (the moto server and
`aws_env` are the shared fixtures of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jobtory_stack.aws import client


@pytest.fixture
def client_hook() -> Iterator[Callable[[Callable[[Any], None]], None]]:
    """Register a function called with every client the reconciler creates."""
    added: list[Callable[[Any], None]] = []

    def add(hook: Callable[[Any], None]) -> None:
        added.append(hook)
        client.CLIENT_HOOKS.append(hook)

    yield add
    for hook in added:
        client.CLIENT_HOOKS.remove(hook)


@pytest.fixture
def mutations(client_hook: Callable[[Callable[[Any], None]], None]) -> list[str]:
    """Every mutating API call (not Describe*/Get*/List*) made through the reconciler."""
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        if not model.name.startswith(("Describe", "Get", "List")):
            calls.append(model.name)

    client_hook(lambda client: client.meta.events.register("before-call", count))
    return calls


@pytest.fixture
def api_calls(client_hook: Callable[[Callable[[Any], None]], None]) -> list[str]:
    """Every API call made through the reconciler, reads included (a refusal before
    any side effect makes none at all)."""
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    client_hook(lambda client: client.meta.events.register("before-call", count))
    return calls
