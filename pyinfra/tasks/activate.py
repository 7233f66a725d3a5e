"""Activate: make the release current (checked, rolled back on failure), keep the
services running, restart what a changed setting needs, prune old releases."""

import jobtory_ops
from pyinfra.operations import systemd

from pyinfra import host

s = host.data.jobtory
env_op = jobtory_ops.recall("env")
caddyfile_op = jobtory_ops.recall("caddyfile")
units = jobtory_ops.recall("units")

activate_op = jobtory_ops.activated(
    name=f"activate {s.version} (/readyz before the switch, rollback on failure)",
    root=s.root,
    version=s.version,
    script=s.activate_script,
)
jobtory_ops.restarted_if_running(
    name="restart gunicorn: its env file or unit changed (then /readyz)",
    unit="jobtory-gunicorn.service",
    after=[env_op, units["jobtory-gunicorn.service"]],
    unless=[activate_op],
    command=f"{s.activate_script} --restart",
)
systemd.service(
    name="gunicorn running",
    service="jobtory-gunicorn.service",
    running=True,
    enabled=True,
)
caddy_start = systemd.service(
    name="Caddy running",
    service="jobtory-caddy.service",
    running=True,
    enabled=True,
)
jobtory_ops.restarted_if_running(
    name="restart Caddy: its Caddyfile or unit changed",
    unit="jobtory-caddy.service",
    after=[caddyfile_op, units["jobtory-caddy.service"]],
    unless=[caddy_start],
)
jobtory_ops.pruned(
    name=f"prune releases (keep {s.keep_releases})",
    root=s.root,
    keep=s.keep_releases,
    protect=[s.version],
)
