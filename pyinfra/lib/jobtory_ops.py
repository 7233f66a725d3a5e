"""Operations of the jobtory host deploy (the facts they ask are in jobtory_facts.py).

Each yields commands only when the host is not yet in the wanted state, so a run
with nothing to do reports no change. All paths are quoted; no secret is ever
part of a command (the env file is written on the host from SSM by the host).
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterator
from io import BytesIO
from typing import Any

from jobtory_facts import (
    SYSTEMD_RUN,
    Account,
    Directories,
    EnvFileStatus,
    FileState,
    PendingMigrations,
    Releases,
    UnitActive,
)
from pyinfra.api import FileUploadCommand, operation
from pyinfra.facts.files import Directory

from pyinfra import host

q = shlex.quote


# ---- light replacements of files.put / files.directory / server.user: one fact each ----
# (a fact is one SSH round trip through sudo; pyinfra's own ask two to four per file)


@operation()
def file(
    dest: str, content: bytes, mode: str = "644", user: str = "root", group: str = "root"
) -> Iterator[Any]:
    """`dest` holds `content` with this mode and owner. Uploaded (to a temporary name,
    then moved: never half written) only when it differs."""
    have = host.get_fact(FileState, path=dest)
    if have is None or have["sha256"] != hashlib.sha256(content).hexdigest():
        tmp = f"{dest}.jobtory-new"
        if have is None:  # a new file: its directory may be new too
            yield f"mkdir -p {q(dest.rpartition('/')[0] or '/')}"
        yield FileUploadCommand(BytesIO(content), tmp)
        yield f"chown {q(user)}:{q(group)} {q(tmp)} && chmod {q(mode)} {q(tmp)}"
        yield f"mv -f {q(tmp)} {q(dest)}"
        return
    if (have["user"], have["group"]) != (user, group):
        yield f"chown {q(user)}:{q(group)} {q(dest)}"
    if have["mode"] != mode.lstrip("0"):
        yield f"chmod {q(mode)} {q(dest)}"


@operation()
def directories(
    paths: list[str], mode: str = "755", user: str = "root", group: str = "root"
) -> Iterator[str]:
    """Each of `paths` is a directory with this mode and owner (parents made as needed)."""
    have = host.get_fact(Directories, paths=paths)
    want = f"{mode.lstrip('0')} {user} {group}"
    for path in paths:
        owned = f"chown {q(user)}:{q(group)} {q(path)} && chmod {q(mode)} {q(path)}"
        if path not in have:
            yield f"mkdir -p {q(path)} && {owned}"
        elif have[path] != want:
            yield owned


@operation()
def system_user(user: str, home: str, shell: str = "/usr/sbin/nologin") -> Iterator[str]:
    """A system user and its own system group (no home directory made)."""
    have = host.get_fact(Account, user=user)
    if not have["group"]:
        yield f"groupadd --system {q(user)}"
    passwd = have["passwd"]
    if not passwd:
        yield (
            f"useradd --system --gid {q(user)} --home-dir {q(home)} --no-create-home "
            f"--shell {q(shell)} {q(user)}"
        )
        return
    group_id = have["group"][2] if have["group"] else None
    if passwd[3] != group_id or passwd[5] != home or passwd[6] != shell:
        yield f"usermod --gid {q(user)} --home {q(home)} --shell {q(shell)} {q(user)}"


@operation()
def in_group(user: str, group: str) -> Iterator[str]:
    """`user` (who exists) is also a member of `group`."""
    if group not in host.get_fact(Account, user=user)["groups"]:
        yield f"usermod --append --groups {q(group)} {q(user)}"


@operation()
def wheelhouse(archive: str, dest: str) -> Iterator[str]:
    """Unpack the wheel archive into `dest` once (dest is content-addressed)."""
    if host.get_fact(Directory, path=dest):
        return
    tmp = f"{dest}.tmp"
    yield (
        f"rm -rf {q(tmp)} && mkdir -p {q(tmp)} && tar -xf {q(archive)} -C {q(tmp)} "
        f"&& mv -T {q(tmp)} {q(dest)}"
    )


@operation()
def release(root: str, version: str, archive: str, wheels: str, wheels_id: str) -> Iterator[str]:
    """Build releases/<version>: sources, its venv, collected static files; `.ready` is
    written last. The venv is content-addressed (venvs/<wheelhouse id>): releases with
    the same locked requirements share one, built once from the local wheelhouse only
    (no index: works air-gapped), so a code-only release builds no venv."""
    if version in host.get_fact(Releases, root=root)["ready"]:
        return
    rel = f"{root}/releases/{version}"
    venv = f"{root}/venvs/{wheels_id}"
    pip = f"{venv}/bin/pip install --quiet --no-index --find-links {q(wheels)}"
    build_venv = " && ".join(
        [
            f"rm -rf {q(venv)}",
            f"python3 -m venv {q(venv)}",
            f"{pip} --require-hashes -r {q(rel + '/requirements.txt')}",
            f"{pip} -r {q(rel + '/requirements-host.txt')}",
            f"touch {q(venv + '/.ready')}",
        ]
    )
    yield " && ".join(
        [
            "set -e",
            f"rm -rf {q(rel)}",
            f"mkdir -p {q(rel)} {q(root + '/venvs')}",
            f"tar -xzf {q(archive)} -C {q(rel)}",
            f"{{ [ -f {q(venv + '/.ready')} ] || {{ {build_venv}; }}; }}",
            f"ln -sfn {q('../../venvs/' + wheels_id)} {q(rel + '/venv')}",
            f"cd {q(rel + '/app')}",
            "DJANGO_BUILD_ONLY=1 DJANGO_SECRET_KEY=build-only-not-a-secret "
            f"{q(rel + '/venv/bin/python')} manage.py collectstatic --noinput -v 0",
            f"{q(rel + '/venv/bin/python')} -m compileall -q {q(rel + '/app')} "
            f"{q(rel + '/jobtory_stack')} >/dev/null",
            f"printf 'APP_VERSION=%s\\n' {q(version)} >{q(rel + '/release.env')}",
            f"chmod -R go-w {q(rel)}",
            f"touch {q(rel + '/.ready')}",
        ]
    )


@operation()
def env_file(
    release: str, prefix: str, path: str, owner: str, aws_env_file: str, want_sha256: str = ""
) -> Iterator[str]:
    """Render `path` from SSM under `prefix` with the host's own credentials:
    mode 0600, owned by the app user. Changes only when SSM changed (`want_sha256`: the
    hash of what the deployer rendered from SSM, so the check needs no SSM call here)."""
    status = host.get_fact(
        EnvFileStatus,
        release=release,
        prefix=prefix,
        path=path,
        owner=owner,
        aws_env_file=aws_env_file,
        want_sha256=want_sha256,
    )
    if status == "in-sync":
        return
    yield (
        f"{SYSTEMD_RUN} -p EnvironmentFile=-{q(aws_env_file)} -E PYTHONPATH={q(release)} "
        f"{q(release + '/venv/bin/python')} -m jobtory_stack.ssm_env --prefix {q(prefix)} "
        f"--wait 30 --write {q(path)}"
    )
    yield f"chown {q(owner)}:{q(owner)} {q(path)} && chmod 0600 {q(path)}"


@operation()
def migrations(release: str, user: str, env_file: str) -> Iterator[str]:
    """Apply the release's migrations once: only when some are pending. The app's
    `migrate` holds a PostgreSQL advisory lock, so hosts never migrate concurrently;
    the second host finds nothing pending and does nothing."""
    if not host.get_fact(PendingMigrations, release=release, user=user, env_file=env_file):
        return
    yield (
        f"{SYSTEMD_RUN} -p User={q(user)} -p EnvironmentFile={q(env_file)} "
        f"-p WorkingDirectory={q(release + '/app')} "
        f"{q(release + '/venv/bin/python')} manage.py migrate --noinput"
    )


@operation()
def activated(root: str, version: str, script: str) -> Iterator[str]:
    """Make `version` current: /readyz of a candidate first, then switch, restart,
    check again; the script rolls back to the previous release when a check fails."""
    if host.get_fact(Releases, root=root)["current"] == version:
        return
    yield f"{q(script)} {q(version)}"


# Operation results shared between task files, per host. Not in host.data: pyinfra hands
# out shallow COPIES of host data values, and a copied OperationMeta never completes.
_RESULTS: dict[tuple[str, str], Any] = {}


def remember(key: str, meta: Any) -> Any:
    _RESULTS[(host.name, key)] = meta
    return meta


def recall(key: str) -> Any:
    return _RESULTS[(host.name, key)]


def _changed(meta: Any) -> bool:
    """An earlier operation's change: its result once executed, its plan before."""
    return bool(meta.did_change() if meta.is_complete() else meta.will_change)


@operation()
def daemon_reloaded(after: list[Any]) -> Iterator[str]:
    """systemctl daemon-reload, only when one of the `after` (unit file) operations changed."""
    if any(_changed(meta) for meta in after):
        yield "systemctl daemon-reload"


@operation()
def restarted_if_running(
    unit: str, after: list[Any], unless: list[Any], command: str = ""
) -> Iterator[str]:
    """Restart `unit` when one of `after` changed (its env file, unit, config) and none of
    `unless` did (activation restarts it itself), and only if it is running. `command`
    restarts it instead of systemctl (gunicorn: `activate --restart` waits for /readyz)."""
    if not any(_changed(m) for m in after) or any(_changed(m) for m in unless):
        return
    if host.get_fact(UnitActive, unit=unit):
        yield command or f"systemctl restart {q(unit)}"


@operation()
def socket_listening(socket: str, service: str) -> Iterator[str]:
    """Start and enable `socket` unless it is active. A `service` still bound to the port
    itself (a host deployed before socket activation) is stopped first, so the socket
    can bind; the activation step starts it again on the socket."""
    if host.get_fact(UnitActive, unit=socket):
        return
    yield f"systemctl stop {q(service)}"
    yield f"systemctl enable --now {q(socket)}"


@operation()
def pruned(root: str, keep: int, protect: list[str]) -> Iterator[str]:
    """Remove the oldest ready releases beyond `keep`, never current or `protect`."""
    state = host.get_fact(Releases, root=root)
    keepers = {state["current"], *protect}
    ready = [v for v in state["ready"] if v not in keepers]
    budget = max(keep - len([k for k in keepers if k]), 0)
    doomed = ready[: max(len(ready) - budget, 0)]
    for version in doomed:
        yield f"rm -rf {q(root + '/releases/' + version)}"
    if doomed:  # and every venv no release links to any more
        yield (
            f"cd {q(root)} && for v in venvs/*/; do v=${{v%/}}; "
            "in_use=0; for r in releases/*/venv; do "
            '[ "$(readlink "$r")" = "../../$v" ] && in_use=1; done; '
            '[ "$in_use" = 1 ] || rm -rf "$v"; done'
        )
