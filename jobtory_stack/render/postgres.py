"""postgresql.conf for the replica's `db` service, from the RDS parameter group."""

from __future__ import annotations

from jobtory_stack.spec.model import Environment
from jobtory_stack.spec.rds_parameters import RDS_ONLY


def postgres_conf(env: Environment) -> str:
    """postgresql.conf lines from the RDS parameter group, so the replica matches RDS."""
    lines = [f"# Generated from the spec ({env.name}: rds.parameters); do not edit."]
    for name, value in sorted(env.rds.parameters.items()):
        if name in RDS_ONLY:
            lines.append(f"# {name} = {conf_value(value)}  (RDS only)")
            continue
        lines.append(f"{name} = {conf_value(value)}")
    return "\n".join(lines) + "\n"


def conf_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"
