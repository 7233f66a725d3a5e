"""The bounded request loop of the migration tests: today's path, then the new one.

Two clients (one keeping its connection alive, one opening a fresh connection per
request) GET one URL until `finish()`, a time bound or a request budget; on the `old`
path until something calls `switch()`, on the `new` path after. Everything goes to
127.0.0.1. A failure is any error or any status but 200 (and `ok(response)`).

Retry rule (the same as tests/caddy and docs/caddy.md; RFC 9112 section 9.3.1): a GET
that got no response byte - its connection closed before an answer, or cut during the
TLS handshake, so the request was never sent - is retried once, a moment later, and
counted in `retries`. A refused connection or a timeout is never retried.

The ALB does not retry: when Caddy closes, without an answer, a connection it accepted
in the instant of a reload (docs/caddy.md, "Honest fine print"), the ALB - and HAProxy,
its stand-in - answers 502 "invalid or incomplete response". Those are counted apart
in `alb_empty`; each test states how many it allows.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx

ALB_EMPTY = "502 from the ALB: empty response from Caddy"


@dataclass(frozen=True)
class Path:
    """One way in: HTTPS to 127.0.0.1:port with this SNI and Host, trusting `verify`."""

    port: int
    host: str
    verify: ssl.SSLContext | bool


def no_answer(exc: Exception) -> bool:
    """The request got no response byte (safe to send again)."""
    if isinstance(exc, httpx.ConnectError):
        return "EOF" in str(exc)  # the TLS handshake cut: the request was never sent
    if isinstance(exc, httpx.RemoteProtocolError):
        return "without sending a response" in str(exc)
    return isinstance(exc, (httpx.ReadError, httpx.WriteError))


class RequestLoop:
    def __init__(
        self,
        old: Path,
        new: Path,
        url_path: str,
        ok: Callable[[httpx.Response], bool] = lambda r: True,
        max_seconds: float = 120,
        budget: int = 12000,
    ) -> None:
        self.paths = {"old": old, "new": new}
        self.url_path, self.ok = url_path, ok
        self.max_seconds, self.budget = max_seconds, budget
        self.path = "old"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results: Counter[str] = Counter()
        self.failures: list[str] = []
        self.alb_empty = 0
        self.retries = 0
        self.threads = [threading.Thread(target=self.client, args=(ka,)) for ka in (True, False)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def switch(self) -> None:
        with self.lock:
            self.path = "new"

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def client(self, keepalive: bool) -> None:
        clients = {
            name: httpx.Client(verify=path.verify, timeout=10, trust_env=False)
            for name, path in self.paths.items()
        }
        kind = "keepalive" if keepalive else "fresh"
        end = time.monotonic() + self.max_seconds
        try:
            while not self.stop.is_set() and time.monotonic() < end:
                with self.lock:
                    if self.budget <= 0:
                        return
                    self.budget -= 1
                    name = self.path
                ok, outcome = self.fetch(clients[name], self.paths[name], keepalive)
                with self.lock:
                    self.results[f"{name} {kind} {outcome}"] += 1
                    if outcome == ALB_EMPTY and name == "new":
                        self.alb_empty += 1
                    elif not ok:
                        self.failures.append(f"{time.monotonic():.1f} {name} {kind} {outcome}")
                time.sleep(0.004)
        finally:
            for c in clients.values():
                c.close()

    def fetch(self, client: httpx.Client, path: Path, keepalive: bool) -> tuple[bool, str]:
        url = f"https://127.0.0.1:{path.port}{self.url_path}"
        headers = {"Host": path.host} if keepalive else {"Host": path.host, "Connection": "close"}
        for attempt in (1, 2):
            try:
                r = client.get(url, headers=headers, extensions={"sni_hostname": path.host})
            except Exception as exc:
                if isinstance(exc, httpx.HTTPError) and no_answer(exc) and attempt == 1:
                    with self.lock:
                        self.retries += 1
                    time.sleep(0.05)  # a client's retry comes a moment later, not mid-reload
                    continue
                return False, f"{type(exc).__name__}: {exc}"
            if r.status_code == 502 and "invalid or incomplete response" in r.text:
                return False, ALB_EMPTY  # HAProxy's own page: Caddy closed without answering
            return r.status_code == 200 and self.ok(r), str(r.status_code)
        return False, "unreachable"

    @property
    def total(self) -> int:
        return sum(self.results.values())

    def count(self, path: str) -> int:
        return sum(
            n for k, n in self.results.items() if k.startswith(f"{path} ") and k.endswith(" 200")
        )
