"""The stack's errors, in one place. Every failure a user can act on is a JobtoryError
with a one-line message that names what failed and the fix; only the CLI turns them into
exit codes and output lines (`jobtory_stack.cli`)."""

from __future__ import annotations


class JobtoryError(Exception):
    """A failure the user can act on; its message is the one line the CLI prints."""

    @property
    def lines(self) -> list[str]:
        return [str(self)]


class SpecError(JobtoryError):
    """The spec is unusable; `problems` holds one line per problem (field: what, fix)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    @property
    def lines(self) -> list[str]:
        return list(self.problems)


class AwsError(JobtoryError):
    """An AWS call or a reconciliation failed (credentials, permissions, a wait ran out)."""


class HostsError(JobtoryError):
    """A host deploy problem: inventory, release, pyinfra, the balancer, the lock."""


class CaddyError(JobtoryError):
    """Caddy's admin API refused or failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CaddyConflict(CaddyError):
    """The config changed under us (412 on If-Match) more often than we retry."""


class CaddySiteError(CaddyError, ValueError):
    """A CaddySite that cannot be rendered (a bad host, upstream or path)."""


class MigrateError(JobtoryError):
    """A migration step cannot run or did not converge."""


class DnsError(MigrateError):
    """The delegation check could not ask the name servers."""


class DuckDNSError(JobtoryError):
    """The DuckDNS update failed (never carries the token)."""
