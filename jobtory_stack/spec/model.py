"""The typed spec: one pydantic class per section of stack.toml, and `Environment`,
a validated environment (the merged sections plus its name and warnings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from jobtory_stack.spec.constants import OPS_PREFIX


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---- the typed model (one class per section of stack.toml) -------------------------------


class Stack_(Section):
    name: str = "jobtory"
    region: str = "ap-northeast-2"


class Domain(Section):
    apex: str
    aliases: list[str] = []
    public_port: int = 443
    registrar: Literal["porkbun", "cloudflare", "gabia", "route53", "other"] = "porkbun"


class Subnet(Section):
    name: str
    cidr: str
    az: str
    public: bool


class Network(Section):
    vpc_cidr: str
    subnets: list[Subnet]
    admin_cidr: str | None = None


class Rds(Section):
    engine: Literal["postgres"] = "postgres"
    engine_version: str
    parameter_group_family: str | None = None
    instance_class: str = "db.t4g.micro"
    allocated_storage_gb: int = 20
    storage_encrypted: bool = True
    backup_retention_days: int = 7
    deletion_protection: bool = False
    multi_az: bool = False
    publicly_accessible: bool = False
    allow_public_for_testing: bool = False
    database: str = "jobtory"
    master_username: str = "jobtory"
    parameters: dict[str, str | int | bool] = {}
    # The RDS CA bundle (PEM), relative to the spec: the hosts deploy installs it and the
    # app verifies the database with it (sslmode=verify-full). Required outside `local`.
    ca_bundle: str | None = None

    @property
    def major_version(self) -> int:
        return int(self.engine_version.split(".")[0])

    @property
    def family(self) -> str:
        """The parameter-group family RDS requires for this engine version."""
        return f"{self.engine}{self.major_version}"


class HealthCheck(Section):
    path: str = "/healthz"
    interval_seconds: int = 15
    timeout_seconds: int = 5
    healthy_threshold: int = 3
    unhealthy_threshold: int = 2
    matcher: str = "200"


class Alb(Section):
    region: str | None = None
    ssl_policy: str = "ELBSecurityPolicy-TLS13-1-2-2021-06"
    subnets: list[str]
    health_check: HealthCheck = HealthCheck()
    deregistration_delay_seconds: int = 30
    idle_timeout_seconds: int = 60
    deletion_protection: bool = False


class Certificate(Section):
    region: str | None = None
    names: list[str] | None = None


class Asg(Section):
    min_size: int = 1
    desired_capacity: int = 1
    max_size: int = 2
    instance_type: str = "t3.small"
    target_cpu_percent: int = 50
    ami_id: str | None = None
    ami_ssm_parameter: str = "/aws/service/debian/release/13/latest/amd64"
    subnets: list[str]


class Caddy(Section):
    mode: Literal["alb", "direct"] = "alb"
    duckdns_name: str | None = None
    tls_internal: bool = False
    upstream: str = "127.0.0.1:8000"
    static_root: str = "/srv/jobtory/current/app/frontend"
    trusted_proxies: list[str] | None = None


class Ssm(Section):
    prefix: str | None = None
    values: dict[str, str] = {}
    secrets: list[str] = []
    # operators' secrets (the DuckDNS token): under their own prefix, never the app's
    ops_secrets: list[str] = []


class Aws(Section):
    endpoint_url: str | None = None
    # What runs behind endpoint_url: an emulator (its gaps are worked around, dummy
    # credentials are used) or, unset, a real AWS API. Never guessed from the URL.
    emulator: Literal["moto", "localstack"] | None = None


class Hosts(Section):
    # A static pyinfra inventory file (relative to the spec), e.g. the fleet replica's;
    # unset: the environment's EC2 instances, found by tags and ASG membership.
    inventory: str | None = None
    # How a new launch-template version reaches the running instances: `inplace` (the
    # pyinfra rolling deploy updates them where they run) or `refresh` (an ASG instance
    # refresh replaces them, AWS keeping 100% healthy; docs/spec.md, docs/aws.md).
    strategy: Literal["inplace", "refresh"] = "inplace"


class Releases(Section):
    """The release store (aws.store) and `deploy.py release prune`."""

    keep: int = 10  # releases `release prune` keeps (never one still referenced)
    # an overwritten or pruned object stays recoverable this long (S3 versioning), then
    # the bucket's lifecycle rule expires it
    noncurrent_days: int = 30


class EnvironmentDoc(Section):
    """One environment after merging the shared defaults with its overrides."""

    # Written in each environment's own table (never in the shared defaults): true holds
    # it to the protected rules (docs/spec.md); None = not said (only `local` may).
    protected: bool | None = None
    stack: Stack_ = Stack_()
    domain: Domain
    network: Network
    rds: Rds
    alb: Alb
    certificate: Certificate = Certificate()
    asg: Asg
    caddy: Caddy = Caddy()
    ssm: Ssm = Ssm()
    aws: Aws = Aws()
    hosts: Hosts = Hosts()
    releases: Releases = Releases()


@dataclass(frozen=True)
class Environment:
    """A validated environment: the typed sections plus its name and warnings."""

    name: str
    doc: EnvironmentDoc
    warnings: tuple[str, ...] = ()

    @property
    def protected(self) -> bool:
        """Deletion protection, backups, encryption; destroy confirmed by name."""
        return self.doc.protected is True

    # Short accessors so callers write env.rds, env.domain, ...
    @property
    def stack_name(self) -> str:
        return self.doc.stack.name

    @property
    def region(self) -> str:
        return self.doc.stack.region

    @property
    def domain(self) -> Domain:
        return self.doc.domain

    @property
    def network(self) -> Network:
        return self.doc.network

    @property
    def rds(self) -> Rds:
        return self.doc.rds

    @property
    def alb(self) -> Alb:
        return self.doc.alb

    @property
    def certificate(self) -> Certificate:
        return self.doc.certificate

    @property
    def asg(self) -> Asg:
        return self.doc.asg

    @property
    def caddy(self) -> Caddy:
        return self.doc.caddy

    @property
    def ssm(self) -> Ssm:
        return self.doc.ssm

    @property
    def aws(self) -> Aws:
        return self.doc.aws

    @property
    def hosts(self) -> Hosts:
        return self.doc.hosts

    @property
    def releases(self) -> Releases:
        return self.doc.releases

    @property
    def alb_region(self) -> str:
        return self.alb.region or self.region

    @property
    def certificate_region(self) -> str:
        return self.certificate.region or self.region

    @property
    def ssm_prefix(self) -> str:
        return self.ssm.prefix or f"/{self.stack_name}/{self.name}/"

    @property
    def ssm_ops_prefix(self) -> str:
        """Where ssm.ops_secrets live: outside the app's prefix, so neither the app's
        loader nor the hosts' env file (both read the prefix recursively) receive them."""
        return OPS_PREFIX.format(stack=self.stack_name, env=self.name)
