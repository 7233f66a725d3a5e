"""Every value derived from the spec, computed once, here.

Change `domain.apex` and every URL, origin, host list and OAuth URI follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from jobtory_stack.spec.constants import (
    DB_SSLMODE,
    HOST_DB_CA,
    OAUTH_CALLBACK_PATH,
    POSTGRES_PORT,
)
from jobtory_stack.spec.model import Environment


@dataclass(frozen=True)
class Derived:
    env: Environment

    @cached_property
    def domain_hosts(self) -> tuple[str, ...]:
        """The names Route 53, ACM and the ALB serve: apex first, then aliases."""
        return (self.env.domain.apex, *self.env.domain.aliases)

    @cached_property
    def served_hosts(self) -> tuple[str, ...]:
        """The names users reach today: the DuckDNS name in direct mode, else the domain."""
        if self.env.caddy.mode == "direct" and self.env.caddy.duckdns_name:
            return (self.duckdns_host,)
        return self.domain_hosts

    @property
    def duckdns_host(self) -> str:
        return f"{self.env.caddy.duckdns_name}.duckdns.org"

    def origin(self, host: str) -> str:
        port = self.env.domain.public_port
        return f"https://{host}" if port == 443 else f"https://{host}:{port}"

    @cached_property
    def origins(self) -> tuple[str, ...]:
        return tuple(self.origin(h) for h in self.served_hosts)

    @property
    def base_url(self) -> str:
        return self.origins[0]

    @property
    def frontend_base_url(self) -> str:
        return self.base_url

    @property
    def vite_api_base(self) -> str:
        return f"{self.base_url}/api"

    @property
    def google_redirect_uri(self) -> str:
        return f"{self.base_url}{OAUTH_CALLBACK_PATH}"

    @property
    def oauth_js_origins(self) -> tuple[str, ...]:
        return self.origins

    @property
    def oauth_redirect_uris(self) -> tuple[str, ...]:
        return (self.google_redirect_uri,)

    @property
    def certificate_names(self) -> tuple[str, ...]:
        return tuple(self.env.certificate.names or self.domain_hosts)

    @property
    def trusted_proxies(self) -> tuple[str, ...]:
        """Caddy trusts X-Forwarded-* only from here (the ALB lives in the VPC)."""
        return tuple(self.env.caddy.trusted_proxies or (self.env.network.vpc_cidr,))

    @cached_property
    def parameters(self) -> dict[str, str]:
        """Plain SSM values by short name: derived ones plus the spec's own values."""
        values = {
            "FRONTEND_BASE_URL": self.frontend_base_url,
            "VITE_API_BASE": self.vite_api_base,
            "GOOGLE_REDIRECT_URI": self.google_redirect_uri,
            "DJANGO_ALLOWED_HOSTS": ",".join(self.served_hosts),
            "DJANGO_CSRF_TRUSTED_ORIGINS": ",".join(self.origins),
            "DB_NAME": self.env.rds.database,
            "DB_USER": self.env.rds.master_username,
            "DB_PORT": str(POSTGRES_PORT),
            # The app's only relaxation is for `local` (an http fake OIDC provider).
            "JOBTORY_ENV": self.env.name,
            # the server's certificate and name verified, with the CA installed on the host
            "DB_SSLMODE": DB_SSLMODE,
            "DB_SSLROOTCERT": HOST_DB_CA,
        }
        values.update(self.env.ssm.values)
        return dict(sorted(values.items()))

    @property
    def secret_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.env.ssm.secrets))

    def parameter_name(self, short: str) -> str:
        return f"{self.env.ssm_prefix}{short}"

    @property
    def ops_secret_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.env.ssm.ops_secrets))

    def ops_parameter_name(self, short: str) -> str:
        return f"{self.env.ssm_ops_prefix}{short}"

    @property
    def tags(self) -> dict[str, str]:
        """Ownership tags: every resource carrying them belongs to this stack and env."""
        return {"stack": self.env.stack_name, "env": self.env.name}

    def resource_name(self, kind: str) -> str:
        return f"{self.env.stack_name}-{self.env.name}-{kind}"

    def release_bucket(self, account: str) -> str:
        """The release store's bucket. S3 names are global across every account, so the
        account id makes it the stack's own (at most 21 + 16 + 22 = 59 of 63 characters)."""
        return f"{self.resource_name('releases')}-{account}"


def derive(env: Environment) -> Derived:
    return Derived(env)
