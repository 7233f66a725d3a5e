"""The PostgreSQL parameters the spec may set in the RDS parameter group.

moto (and a typo) accept any name, so this catalog is the only guard: each entry
says how to check a value and whether RDS applies it at once (dynamic) or only
after a reboot (static, ApplyMethod=pending-reboot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["int", "bool", "str", "timezone", "enum"]


@dataclass(frozen=True)
class ParameterInfo:
    kind: Kind
    static: bool = False
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()

    @property
    def apply_method(self) -> str:
        return "pending-reboot" if self.static else "immediate"


_LOG_LEVELS = ("debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning",
               "error", "log", "fatal", "panic")  # fmt: skip

CATALOG: dict[str, ParameterInfo] = {
    "timezone": ParameterInfo("timezone"),
    "log_timezone": ParameterInfo("timezone"),
    "max_connections": ParameterInfo("int", static=True, minimum=6, maximum=262143),
    "shared_buffers": ParameterInfo("int", static=True, minimum=16, maximum=1073741823),
    "work_mem": ParameterInfo("int", minimum=64, maximum=2147483647),
    "maintenance_work_mem": ParameterInfo("int", minimum=1024, maximum=2147483647),
    "effective_cache_size": ParameterInfo("int", minimum=1, maximum=2147483647),
    "statement_timeout": ParameterInfo("int", minimum=0, maximum=2147483647),
    "lock_timeout": ParameterInfo("int", minimum=0, maximum=2147483647),
    "idle_in_transaction_session_timeout": ParameterInfo("int", minimum=0, maximum=2147483647),
    "log_min_duration_statement": ParameterInfo("int", minimum=-1, maximum=2147483647),
    "log_connections": ParameterInfo("bool"),
    "log_disconnections": ParameterInfo("bool"),
    "log_lock_waits": ParameterInfo("bool"),
    "log_statement": ParameterInfo("enum", choices=("none", "ddl", "mod", "all")),
    "log_min_messages": ParameterInfo("enum", choices=_LOG_LEVELS),
    "client_encoding": ParameterInfo("enum", choices=("UTF8",)),
    "default_transaction_isolation": ParameterInfo(
        "enum", choices=("serializable", "repeatable read", "read committed", "read uncommitted")
    ),
    "password_encryption": ParameterInfo("enum", choices=("scram-sha-256", "md5")),
    "rds.force_ssl": ParameterInfo("bool"),
    "max_worker_processes": ParameterInfo("int", static=True, minimum=0, maximum=262143),
}

# RDS-only parameters: in the parameter group on AWS, but not in the replica's postgresql.conf.
RDS_ONLY = frozenset(name for name in CATALOG if name.startswith("rds."))
