"""Facts of the jobtory host deploy: read-only questions about a host's state.

Every command here changes nothing and always exits 0 (a missing piece is an
answer, not an error), so the same facts work on a fresh host. Operations
(jobtory_ops.py) ask them twice: when pyinfra plans the run, and again just
before they execute (pyinfra 3 re-evaluates operations then), so a step that
depends on an earlier one (the release venv, the env file) sees the real state.
"""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra.api import FactBase

SYSTEMD_RUN = "systemd-run --pipe --wait --quiet --collect --service-type=exec"


class Releases(FactBase[dict[str, Any]]):
    """{"current": "<version>" | None, "ready": [versions, oldest first]} under `root`.

    A release is ready when its `.ready` marker exists (written last by the build).
    """

    def command(self, root: str) -> str:
        r = shlex.quote(root)
        return (
            f"cd {r} 2>/dev/null || exit 0; "
            'echo "current=$(readlink current 2>/dev/null)"; '
            "for d in releases/*/; do "
            '[ -f "$d.ready" ] && echo "ready=$(stat -c %Y "$d.ready") $(basename "$d")"; '
            "done; true"
        )

    @staticmethod
    def default() -> dict[str, Any]:
        return {"current": None, "ready": []}

    def process(self, output: list[str]) -> dict[str, Any]:
        current: str | None = None
        ready: list[tuple[int, str]] = []
        for line in output:
            key, _, value = line.partition("=")
            if key == "current" and value:
                current = value.rstrip("/").rpartition("/")[2]
            elif key == "ready" and value:
                stamp, _, version = value.partition(" ")
                ready.append((int(stamp), version))
        return {"current": current, "ready": [v for _, v in sorted(ready)]}


class EnvFileStatus(FactBase[str]):
    """Whether the env file holds exactly what SSM holds under `prefix` now.

    "in-sync", "differs", "missing" (no file yet) or "unknown" (the release that
    reads SSM is not built yet). Prints a word, never a value. With `want_sha256` (the
    deployer rendered SSM's values itself and sent their hash) it compares the file's
    hash, mode and owner: a stat and a sha256sum. Without (a new instance's user data),
    the release's own loader renders SSM on the host with the host's credentials.
    """

    def command(
        self,
        release: str,
        prefix: str,
        path: str,
        owner: str,
        aws_env_file: str,
        want_sha256: str = "",
    ) -> str:
        f = shlex.quote(path)
        if want_sha256:
            return (
                f"[ -e {f} ] || {{ echo missing; exit 0; }}; "
                f"[ \"$(stat -c '%a %U' {f})\" = {shlex.quote('600 ' + owner)} ] "
                "|| { echo differs; exit 0; }; "
                f'[ "$(sha256sum <{f} | cut -c1-64)" = {shlex.quote(want_sha256)} ] '
                "&& echo in-sync || echo differs"
            )
        py = f"{release}/venv/bin/python"
        return (
            f"if [ ! -x {shlex.quote(py)} ]; then echo unknown; exit 0; fi; "
            f"{SYSTEMD_RUN} -p EnvironmentFile=-{shlex.quote(aws_env_file)} "
            f"-E PYTHONPATH={shlex.quote(release)} {shlex.quote(py)} "
            f"-m jobtory_stack.ssm_env --prefix {shlex.quote(prefix)} "
            f"--status {f} --owner {shlex.quote(owner)} 2>&1 || echo unknown"
        )

    def process(self, output: list[str]) -> str:
        for word in ("in-sync", "differs", "missing"):
            if word in output:
                return word
        return "unknown"


class PendingMigrations(FactBase[bool]):
    """True when the release has migrations the database has not applied (or the
    answer is unknown yet: no venv, no env file, database not reachable)."""

    def command(self, release: str, user: str, env_file: str) -> str:
        py = f"{release}/venv/bin/python"
        return (
            f"if [ ! -x {shlex.quote(py)} ] || [ ! -s {shlex.quote(env_file)} ]; "
            "then echo pending; exit 0; fi; "
            f"{SYSTEMD_RUN} -p User={shlex.quote(user)} "
            f"-p EnvironmentFile={shlex.quote(env_file)} "
            f"-p WorkingDirectory={shlex.quote(release + '/app')} "
            f"{shlex.quote(py)} manage.py migrate --check --noinput >/dev/null 2>&1 "
            "&& echo applied || echo pending"
        )

    @staticmethod
    def default() -> bool:
        return True

    def process(self, output: list[str]) -> bool:
        return "applied" not in output


class UnitActive(FactBase[bool]):
    """Whether a systemd unit is active (running) right now."""

    def command(self, unit: str) -> str:
        return f"systemctl is-active {shlex.quote(unit)} 2>/dev/null || true"

    @staticmethod
    def default() -> bool:
        return False

    def process(self, output: list[str]) -> bool:
        return output[:1] == ["active"]


class FileState(FactBase[dict[str, str] | None]):
    """A file's sha256, mode, owner and group in one round trip (pyinfra's files.put asks
    three facts for the same answer), or None when there is no such file."""

    def command(self, path: str) -> str:
        p = shlex.quote(path)
        return f"[ -f {p} ] || exit 0; stat -c '%a %U %G' {p} && sha256sum <{p} | cut -c1-64"

    @staticmethod
    def default() -> None:
        return None

    def process(self, output: list[str]) -> dict[str, str] | None:
        if len(output) < 2:
            return None
        mode, user, group = output[0].split()
        return {"mode": mode, "user": user, "group": group, "sha256": output[1].strip()}


class Directories(FactBase[dict[str, str]]):
    """{path: "mode user group"} of those of `paths` that are directories, in one round trip."""

    def command(self, paths: list[str]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return f'for p in {quoted}; do [ -d "$p" ] && stat -c \'%a %U %G %n\' "$p"; done; true'

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        found = {}
        for line in output:
            mode, user, group, path = line.split(" ", 3)
            found[path] = f"{mode} {user} {group}"
        return found


class Account(FactBase[dict[str, Any]]):
    """A user and the group of the same name (getent), and the user's groups (id -nG)."""

    def command(self, user: str) -> str:
        u = shlex.quote(user)
        return (
            f'echo "passwd=$(getent passwd {u})"; echo "group=$(getent group {u})"; '
            f'echo "groups=$(id -nG {u} 2>/dev/null)"'
        )

    @staticmethod
    def default() -> dict[str, Any]:
        return {"passwd": [], "group": [], "groups": []}

    def process(self, output: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {"passwd": [], "group": [], "groups": []}
        for line in output:
            key, _, value = line.partition("=")
            if key in ("passwd", "group") and value:
                found[key] = value.split(":")
            elif key == "groups":
                found[key] = value.split()
        return found


class HostFingerprint(FactBase[list[str]]):
    """What the host runs, in one round trip: the current release, the mode, owner and
    sha256 of each of `paths`, each of `units` running and enabled. Compared with
    HostSettings.fingerprint(): equal means the deploy has nothing to do here."""

    def command(self, root: str, paths: list[str], units: list[str]) -> str:
        quoted_paths = " ".join(shlex.quote(p) for p in paths)
        quoted_units = " ".join(shlex.quote(u) for u in units)
        return (
            f'echo "current=$(basename "$(readlink {shlex.quote(root)}/current)" 2>/dev/null)"; '
            f"for p in {quoted_paths}; do "
            'if [ -f "$p" ]; then echo "$p $(stat -c \'%a %U\' "$p") '
            '$(sha256sum <"$p" | cut -c1-64)"; else echo "$p missing"; fi; done; '
            f"for u in {quoted_units}; do "
            'echo "$u $(systemctl is-active "$u" 2>/dev/null) '
            '$(systemctl is-enabled "$u" 2>/dev/null)"; done; true'
        )

    @staticmethod
    def default() -> list[str]:
        return []

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output]
