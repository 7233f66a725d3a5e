"""Services: systemd units for gunicorn (and its socket), the candidate check and Caddy;
the Caddyfile."""

import jobtory_ops
from pyinfra.operations import systemd

from jobtory_stack.render.templates import render_template
from pyinfra import host

s = host.data.jobtory
units = {}
UNITS = (
    "jobtory-gunicorn.socket",
    "jobtory-gunicorn.service",
    "jobtory-candidate@.service",
    "jobtory-caddy.service",
)
for unit in UNITS:
    units[unit] = jobtory_ops.file(
        name=f"unit {unit}",
        dest=f"/etc/systemd/system/{unit}",
        content=render_template(f"systemd/{unit}.j2", **s.template_data),
    )
caddyfile_op = jobtory_ops.file(
    name=f"Caddyfile ({s.caddy_mode} mode) {s.caddyfile}",
    dest=s.caddyfile,
    content=s.caddyfile_text,
)
jobtory_ops.remember("units", units)
jobtory_ops.remember("caddyfile", caddyfile_op)
jobtory_ops.daemon_reloaded(
    name="systemd daemon-reload (units changed)", after=list(units.values())
)
jobtory_ops.socket_listening(
    name="gunicorn's socket held by systemd (jobtory-gunicorn.socket)",
    socket="jobtory-gunicorn.socket",
    service="jobtory-gunicorn.service",
)
systemd.service(
    name="enable jobtory-gunicorn (started by activate)",
    service="jobtory-gunicorn.service",
    running=None,
    enabled=True,
)
