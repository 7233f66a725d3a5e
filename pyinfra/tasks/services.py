"""Services: systemd units for gunicorn (and its socket), the candidate check and Caddy;
the Caddyfile."""

from io import StringIO

import jobtory_ops
from pyinfra.operations import files, systemd

from jobtory_stack.render.templates import JINJA_OPTIONS, template_path
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
    units[unit] = files.template(
        name=f"unit {unit}",
        # the package's templates, rendered as jobtory_stack.render.templates renders them
        src=str(template_path(f"systemd/{unit}.j2")),
        dest=f"/etc/systemd/system/{unit}",
        mode="644",
        jinja_env_kwargs=dict(JINJA_OPTIONS),  # a copy: pyinfra pops keys from it
        **s.template_data,
    )
caddyfile_op = files.put(
    name=f"Caddyfile ({s.caddy_mode} mode) {s.caddyfile}",
    src=StringIO(s.caddyfile_text),
    dest=s.caddyfile,
    mode="644",
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
