"""The fleet replica's ALB stand-in, reached through its HAProxy runtime API (127.0.0.1 or
the compose network only): list targets, drain and deregister, register and wait for
health. The product's one adapter to the stand-in, until the stand-in follows the
emulator's ELBv2 target group; the stand-in itself lives in replica/ (its CLI and the
alb image use this client: there is no second one). Standard library only (and
jobtory_stack.errors): the alb image runs it with Debian's python3."""

from __future__ import annotations

import csv
import io
import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jobtory_stack.errors import HostsError

# The stand-in names its target-group backend tg-<name>, and gives each target a
# fail-open twin (<target>-failopen) that serves only when no target is healthy.
BACKEND_PREFIX = "tg-"
FAILOPEN_SUFFIX = "-failopen"
_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


Health = Literal["healthy", "unhealthy", "draining", "unused"]


@dataclass(frozen=True)
class TargetState:
    name: str  # host:port, as registered
    address: str  # the address HAProxy resolved ("" while it does not resolve)
    health: Health
    sessions: int  # active sessions, fail-open twin included
    status: str  # HAProxy's raw status ("UP", "DOWN 1/3", "DRAIN", "MAINT", ...)
    check: str  # the last check's description


def _check_runtime_host(host: str) -> None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # "localhost" or a single-label compose service name ("alb"); never a public FQDN.
        if host == "localhost" or ("." not in host and _HOST_RE.match(host)):
            return
        raise HostsError(
            f"runtime API host {host!r}: only loopback or compose-network addresses"
        ) from None
    if not (ip.is_loopback or ip.is_private):
        raise HostsError(f"runtime API host {host!r}: only loopback or compose-network addresses")


def _health(status: str) -> Health:
    if status.startswith("MAINT (resolution)"):
        return "unhealthy"  # registered, but its name does not resolve (container missing)
    if status.startswith("MAINT"):
        return "unused"
    if status.startswith(("DRAIN", "NOLB")):
        return "draining"
    if status.startswith("UP"):
        return "healthy"
    return "unhealthy"


class AlbRuntime:
    """Register / deregister / inspect targets through HAProxy's runtime API."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9999,
        timeout: float = 5.0,
        backend: str | None = None,
    ) -> None:
        _check_runtime_host(host)
        self.host = host
        self.port = port
        self.timeout = timeout
        self._backend = backend

    def command(self, cmd: str) -> str:
        """Run one runtime-API command line and return its output."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                sock.sendall(cmd.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise HostsError(
                f"ALB runtime API at {self.host}:{self.port} is unreachable ({reason}); "
                "is the alb service up with its runtime port published?"
            ) from None
        out = b"".join(chunks).decode(errors="replace")
        for bad in ("Unknown command", "No such", "Permission denied", "Require ", "not found"):
            if bad in out:
                raise HostsError(f"ALB runtime API: {cmd!r}: {out.strip().splitlines()[0]}")
        return out

    def _rows(self) -> list[dict[str, str]]:
        text = self.command("show stat").lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))

    @property
    def backend(self) -> str:
        if self._backend is None:
            names = [
                r["pxname"]
                for r in self._rows()
                if r["svname"] == "BACKEND" and r["pxname"].startswith(BACKEND_PREFIX)
            ]
            if len(names) != 1:
                raise HostsError(f"expected one target group backend, found {names or 'none'}")
            self._backend = names[0]
        return self._backend

    def targets(self) -> list[TargetState]:
        rows = [r for r in self._rows() if r["pxname"] == self.backend]
        twins = {r["svname"]: r for r in rows if r["svname"].endswith(FAILOPEN_SUFFIX)}
        out = []
        for r in rows:
            name = r["svname"]
            if name in ("BACKEND", "FRONTEND") or r.get("bck") == "1" or name in twins:
                continue
            twin = twins.get(name + FAILOPEN_SUFFIX, {})
            out.append(
                TargetState(
                    name=name,
                    address=r.get("addr", ""),
                    health=_health(r["status"]),
                    sessions=int(r["scur"] or 0) + int(twin.get("scur") or 0),
                    status=r["status"],
                    check=r.get("check_desc", ""),
                )
            )
        return out

    def target(self, target: str) -> TargetState:
        """One target by host:port, or by host alone when that is unambiguous."""
        states = self.targets()
        found = [s for s in states if s.name == target] or [
            s for s in states if s.name.rpartition(":")[0] == target
        ]
        if len(found) != 1:
            known = ", ".join(s.name for s in states) or "none"
            raise HostsError(f"no single target {target!r} in {self.backend} (targets: {known})")
        return found[0]

    def _set(self, name: str, *commands: str) -> None:
        self.command("; ".join(c.format(srv=f"{self.backend}/{name}") for c in commands))

    def save_state(self, path: str | Path) -> None:
        """Write `show servers state` to `path` (the config's server-state-file) before a
        reload, so drained/deregistered targets and their health survive it."""
        text = self.command("show servers state")
        part = Path(str(path) + ".new")
        part.write_text(text)
        part.replace(path)

    def deregistration_delay(self) -> int:
        out = self.command("get var proc.deregistration_delay")
        match = re.search(r"value=<(\d+)>", out)
        if not match:
            raise HostsError(f"ALB runtime API: no deregistration delay in {out.strip()!r}")
        return int(match.group(1))

    def deregister(
        self, target: str, wait: bool = True, delay: float | None = None, poll: float = 0.2
    ) -> TargetState:
        """Drain `target` (no new requests), wait until its sessions end or the
        deregistration delay passes, then take it out (maint; sessions still open are cut,
        as an ALB closes them). wait=False only starts the drain; call again to finish."""
        state = self.target(target)
        if state.health == "unused":
            return state
        name = state.name
        twin = name + FAILOPEN_SUFFIX
        self._set(name, "set server {srv} state drain")
        self._set(twin, "set server {srv} state drain")
        if not wait:
            return self.target(name)
        limit = self.deregistration_delay() if delay is None else delay
        deadline = time.monotonic() + limit
        while self.target(name).sessions > 0 and time.monotonic() < deadline:
            time.sleep(poll)
        self._set(name, "set server {srv} state maint")
        self._set(twin, "set server {srv} state maint")
        if self.target(name).sessions > 0:
            self._set(name, "shutdown sessions server {srv}")
            self._set(twin, "shutdown sessions server {srv}")
        return self.target(name)

    def register(self, target: str, wait: bool = False, timeout: float = 120.0) -> TargetState:
        """Put `target` back. A target coming from `unused` starts unhealthy and gets traffic
        only after healthy_threshold passing checks (an ALB's `initial`); a draining one
        simply stops draining."""
        state = self.target(target)
        name = state.name
        if state.health == "unused":
            # Leaving maintenance, HAProxy would trust the old result; force a fresh rise.
            self._set(name, "set server {srv} state ready", "set server {srv} health down")
        elif state.health == "draining":
            self._set(name, "set server {srv} state ready")
        self._set(name + FAILOPEN_SUFFIX, "set server {srv} state ready")
        if wait:
            return self.wait_healthy(name, timeout)
        return self.target(name)

    def wait_healthy(self, target: str, timeout: float = 120.0, poll: float = 0.25) -> TargetState:
        """Block until `target` is healthy; HostsError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.target(target)
            if state.health == "healthy":
                return state
            if time.monotonic() >= deadline:
                raise HostsError(
                    f"target {state.name} not healthy after {timeout:g}s "
                    f"(status {state.status}, last check: {state.check or 'none'})"
                )
            time.sleep(poll)
