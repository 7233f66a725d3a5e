"""Services: systemd units for gunicorn (and its socket), the candidate check and Caddy;
the Caddyfile."""

import jobtory_ops
from pyinfra.operations import systemd

from jobtory_stack.hosts.settings import UNITS
from pyinfra import host

s = host.data.jobtory
files = s.managed_files  # the units rendered from jobtory_stack/templates/systemd/
units = {unit: jobtory_ops.file(name=f"unit {unit}", **vars(files[unit])) for unit in UNITS}
caddyfile_op = jobtory_ops.file(
    name=f"Caddyfile ({s.caddy_mode} mode) {s.caddyfile}", **vars(files["Caddyfile"])
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
