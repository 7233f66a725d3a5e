"""The spec's cross-field rules: `check(env)` returns (problems, warnings), each a field
path and a message that names the fix."""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any

from jobtory_stack.spec.constants import (
    ADMIN_CIDR_WIDEST,
    DB_PASSWORD_FORBIDDEN,
    DB_PASSWORD_LENGTH,
    DERIVED_PARAMETERS,
    DUCKDNS_TOKEN,
    FALSE_WORDS,
    HOST_LABEL,
    HSTS_MIN_SECONDS,
    LOCAL_ENV,
    MATCHER,
    OPS_SECRETS,
    PROTECTED_MIN_BACKUP_DAYS,
    RDS_CA_BUNDLE_URL,
    REGION,
    RELEASE_NONCURRENT_DAYS,
    RESERVED_NAMES,
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE,
    SECRET_NAME,
    SECRET_VALUE,
    SSM_NAME,
    SUPPORTED_POSTGRES_MAJORS,
    TLS_POLICIES,
    TRUE_WORDS,
)
from jobtory_stack.spec.model import Environment, Subnet
from jobtory_stack.spec.rds_parameters import CATALOG

Path_ = tuple[str | int, ...]


def check(env: Environment) -> tuple[list[tuple[Path_, str]], list[tuple[Path_, str]]]:
    """Every cross-field rule; returns (problems, warnings)."""
    problems: list[tuple[Path_, str]] = []
    warnings: list[tuple[Path_, str]] = []

    def bad(path: Path_, message: str) -> None:
        problems.append((path, message))

    _check_names(env, bad)
    _check_protection(env, bad, warnings)
    _check_network(env, bad)
    _check_rds(env, bad, warnings)
    _check_load_balancer(env, bad)
    _check_scaling(env, bad)
    _check_caddy(env, bad)
    _check_ssm(env, bad)
    _check_releases(env, bad)
    return problems, warnings


Bad = Any  # Callable[[Path_, str], None]; kept loose for readability


def valid_hostname(name: str) -> bool:
    if len(name) > 253 or "." not in name:
        return False
    labels = name.split(".")
    return all(HOST_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def parse_cidr(value: str, path: Path_, bad: Bad) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            bad(path, f"{value!r} is not a CIDR block; write it like 10.20.0.0/16")
            return None
        bad(path, f"{value!r} has host bits set; use {loose}")
        return None
    if not isinstance(net, ipaddress.IPv4Network):
        bad(path, f"{value!r} is IPv6; use an IPv4 block like 10.20.0.0/16")
        return None
    return net


def _check_protection(env: Environment, bad: Bad, warnings: list[tuple[Path_, str]]) -> None:
    """A protected environment keeps its data: what it needs is a property of the spec
    (`protected = true`), never of the environment's name. (That a non-local environment
    says it at all is the loader's check: it knows where the key was written.)"""
    if not env.protected:
        if env.doc.protected is False and env.name != LOCAL_ENV:
            warnings.append(
                (
                    ("protected",),
                    "WARNING: false waives the protected rules (deletion protection, "
                    f"{PROTECTED_MIN_BACKUP_DAYS}-day backups, encryption, destroy confirmed "
                    "by name); keep it for environments whose data can be thrown away",
                )
            )
        return
    rds, fix = env.rds, "a protected environment needs it; set it to true"
    if not rds.deletion_protection:
        bad(("rds", "deletion_protection"), fix)
    if not rds.storage_encrypted:
        bad(("rds", "storage_encrypted"), fix)
    if rds.backup_retention_days < PROTECTED_MIN_BACKUP_DAYS:
        bad(
            ("rds", "backup_retention_days"),
            f"a protected environment keeps backups at least {PROTECTED_MIN_BACKUP_DAYS} "
            f"days; set {PROTECTED_MIN_BACKUP_DAYS} to 35",
        )
    if rds.publicly_accessible:
        bad(
            ("rds", "publicly_accessible"),
            "the database must stay private in a protected environment; set it to false",
        )
    if not env.alb.deletion_protection:
        bad(("alb", "deletion_protection"), fix)


def _check_names(env: Environment, bad: Bad) -> None:
    if not re.match(r"^[a-z][a-z0-9-]{1,20}$", env.stack_name):
        bad(("stack", "name"), "use 2-21 lowercase letters, digits or '-' (it prefixes names)")
    for where, region in (
        (("stack", "region"), env.region),
        (("alb", "region"), env.alb.region),
        (("certificate", "region"), env.certificate.region),
    ):
        if region is not None and not REGION.match(region):
            bad(where, f"{region!r} is not an AWS region name; write it like ap-northeast-2")
    hosts = (env.domain.apex, *env.domain.aliases)
    for i, host in enumerate(hosts):
        path: Path_ = ("domain", "apex") if i == 0 else ("domain", "aliases", i - 1)
        if host != host.lower() or not valid_hostname(host):
            bad(path, f"{host!r} is not a domain name; use lowercase labels like jobtory.com")
    if len(set(hosts)) != len(hosts):
        bad(("domain", "aliases"), "repeats a host name; list each name once")
    if not 1 <= env.domain.public_port <= 65535:
        bad(("domain", "public_port"), "must be a TCP port (1-65535); 443 in the cloud")
    if env.domain.registrar == "cloudflare":
        bad(
            ("domain", "registrar"),
            "Cloudflare Registrar requires Cloudflare DNS, so its NS cannot be delegated to "
            "Route 53; transfer the domain (e.g. to porkbun) or use another registrar",
        )
    url = env.aws.endpoint_url
    if url is not None and not re.match(r"^https?://[^/\s]+/?$", url):
        bad(("aws", "endpoint_url"), f"{url!r} must be a base URL like http://127.0.0.1:4566")


def _check_network(env: Environment, bad: Bad) -> None:
    net = env.network
    vpc = parse_cidr(net.vpc_cidr, ("network", "vpc_cidr"), bad)
    if vpc is not None and not 16 <= vpc.prefixlen <= 28:
        bad(("network", "vpc_cidr"), f"a VPC block must be /16 to /28, not /{vpc.prefixlen}")
    seen: dict[str, int] = {}
    blocks: list[tuple[int, ipaddress.IPv4Network]] = []
    for i, subnet in enumerate(net.subnets):
        base: Path_ = ("network", "subnets", i)
        if subnet.name in seen:
            bad((*base, "name"), f"{subnet.name!r} is used twice; give each subnet its own name")
        seen[subnet.name] = i
        if not (
            subnet.az.startswith(env.region)
            and re.match(r"^[a-z]$", subnet.az[-1:])
            and len(subnet.az) == len(env.region) + 1
        ):
            bad(
                (*base, "az"),
                f"{subnet.az!r} is not a zone of {env.region}; "
                f"use {env.region}a, {env.region}c, ...",
            )
        block = parse_cidr(subnet.cidr, (*base, "cidr"), bad)
        if block is None:
            continue
        if vpc is not None and not block.subnet_of(vpc):
            bad((*base, "cidr"), f"{block} is outside the VPC {vpc}; pick a block inside it")
        for j, other in blocks:
            if block.overlaps(other):
                bad(
                    (*base, "cidr"),
                    f"{block} overlaps subnet {net.subnets[j].name!r} "
                    f"({other}); use a block that does not overlap",
                )
        blocks.append((i, block))
    private = [s for s in net.subnets if not s.public]
    if len({s.az for s in private}) < 2:
        bad(
            ("network", "subnets"),
            "RDS needs private subnets in at least two AZs; add a private subnet in a second zone",
        )
    _check_admin_cidr(env, bad)


def _check_admin_cidr(env: Environment, bad: Bad) -> None:
    """SSH (port 22 on the hosts) from this block only: never the world, nor most of it."""
    if env.network.admin_cidr is not None:
        admin = parse_cidr(env.network.admin_cidr, ("network", "admin_cidr"), bad)
        if admin is not None and admin.prefixlen == 0:
            bad(
                ("network", "admin_cidr"),
                "0.0.0.0/0 would open SSH to the internet; "
                "use your office or VPN block (e.g. 203.0.113.7/32) or leave it unset",
            )
        elif admin is not None and admin.prefixlen < ADMIN_CIDR_WIDEST:
            bad(
                ("network", "admin_cidr"),
                f"{admin} opens SSH to {admin.num_addresses:,} addresses, more than a "
                f"/{ADMIN_CIDR_WIDEST}; use your office or VPN block (e.g. 203.0.113.7/32)",
            )


def _subnet_refs(env: Environment, section: str, names: list[str], bad: Bad) -> list[Subnet]:
    by_name = {s.name: s for s in env.network.subnets}
    found = []
    for i, name in enumerate(names):
        if name not in by_name:
            bad(
                (section, "subnets", i),
                f"no subnet named {name!r} in network.subnets; known: {', '.join(by_name)}",
            )
        else:
            found.append(by_name[name])
    return found


def _check_rds(env: Environment, bad: Bad, warnings: list[tuple[Path_, str]]) -> None:
    if not _check_rds_engine(env, bad):
        return
    _check_rds_storage(env, bad)
    _check_rds_exposure(env, bad, warnings)
    rds = env.rds
    for ident, path in ((rds.database, "database"), (rds.master_username, "master_username")):
        if not re.match(r"^[a-z][a-z0-9_]{0,62}$", ident):
            bad(("rds", path), f"{ident!r}: use lowercase letters, digits and '_'")
    for name, value in rds.parameters.items():
        _check_parameter(name, value, bad)
    _check_ca_bundle(env, bad)


def _check_ca_bundle(env: Environment, bad: Bad) -> None:
    """The app verifies the database against this bundle outside `local` (the replica's
    db has its own CA). Whether the file exists is the hosts deploy's check: specs are
    validated where their files are not (tests, a copy in a temp dir)."""
    bundle = env.rds.ca_bundle
    example = f"rds-ca/{env.region}-bundle.pem"
    if bundle is None:
        if env.name != LOCAL_ENV:
            bad(
                ("rds", "ca_bundle"),
                "required outside local (the app verifies the database with sslmode="
                f"verify-full); download {RDS_CA_BUNDLE_URL.format(region=env.region)}, "
                f"commit it next to the spec and set ca_bundle = {example!r}",
            )
    elif bundle.startswith("/") or ".." in bundle.split("/") or not bundle.endswith(".pem"):
        bad(
            ("rds", "ca_bundle"),
            f"{bundle!r}: name a .pem file inside the spec's directory, relative to it "
            f"(e.g. {example!r}): a release carries it to new hosts",
        )


def _check_rds_engine(env: Environment, bad: Bad) -> bool:
    """The engine version, its parameter-group family and the class; False: stop here."""
    rds = env.rds
    if not re.match(r"^\d+(\.\d+)?$", rds.engine_version):
        bad(
            ("rds", "engine_version"),
            f"{rds.engine_version!r} is not a version; write it like 17.6 (major.minor)",
        )
        return False
    if rds.major_version not in SUPPORTED_POSTGRES_MAJORS:
        bad(
            ("rds", "engine_version"),
            f"PostgreSQL {rds.major_version} is not offered by RDS "
            f"here; use {SUPPORTED_POSTGRES_MAJORS.start}-{SUPPORTED_POSTGRES_MAJORS.stop - 1}",
        )
    family = rds.parameter_group_family
    if family is not None and family != rds.family:
        bad(
            ("rds", "parameter_group_family"),
            f"{family!r} does not match engine "
            f"{rds.engine} {rds.engine_version}; use {rds.family!r} (or remove the key: it "
            "is derived)",
        )
    if not re.match(r"^db\.[a-z0-9]+\.[a-z0-9]+$", rds.instance_class):
        bad(
            ("rds", "instance_class"),
            f"{rds.instance_class!r} is not an RDS class; write it like db.t4g.micro",
        )
    return True


def _check_rds_storage(env: Environment, bad: Bad) -> None:
    rds = env.rds
    if not 20 <= rds.allocated_storage_gb <= 65536:
        bad(("rds", "allocated_storage_gb"), "gp3 storage is 20 to 65536 GiB")
    if not 0 <= rds.backup_retention_days <= 35:
        bad(("rds", "backup_retention_days"), "RDS keeps backups 0 to 35 days")


def _check_rds_exposure(env: Environment, bad: Bad, warnings: list[tuple[Path_, str]]) -> None:
    rds = env.rds
    if rds.publicly_accessible and not env.protected:  # protected: _check_protection
        if not rds.allow_public_for_testing:
            bad(
                ("rds", "publicly_accessible"),
                "the database must stay private; set it to "
                "false, or for a throwaway test also set allow_public_for_testing = true",
            )
        else:
            warnings.append(
                (
                    ("rds", "publicly_accessible"),
                    "WARNING: the database is "
                    "reachable from the internet (testing flag set); never in a protected "
                    "environment",
                )
            )


def _check_parameter(name: str, value: str | int | bool, bad: Bad) -> None:
    path: Path_ = ("rds", "parameters", name)
    info = CATALOG.get(name)
    if info is None:
        close = difflib.get_close_matches(name, CATALOG, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "check the name in the RDS console"
        bad(
            path,
            f"not a PostgreSQL parameter this tool knows; {hint} (or add it to "
            "jobtory_stack/rds_parameters.py)",
        )
        return
    if info.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            bad(path, f"must be a whole number, not {value!r}")
        elif (info.minimum is not None and value < info.minimum) or (
            info.maximum is not None and value > info.maximum
        ):
            bad(path, f"{value} is out of range; use {info.minimum} to {info.maximum}")
    elif info.kind == "bool":
        if not isinstance(value, bool):
            bad(path, f"must be true or false, not {value!r}")
    elif info.kind == "timezone":
        if not isinstance(value, str) or not _is_timezone(value):
            bad(path, f"{value!r} is not an IANA time zone; use e.g. 'Asia/Seoul'")
    elif info.kind == "enum" and value not in info.choices:
        bad(path, f"{value!r} is not allowed; use one of: {', '.join(info.choices)}")


def _is_timezone(name: str) -> bool:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _check_load_balancer(env: Environment, bad: Bad) -> None:
    alb = env.alb
    if alb.ssl_policy not in TLS_POLICIES:
        close = difflib.get_close_matches(alb.ssl_policy, TLS_POLICIES, n=1)
        bad(
            ("alb", "ssl_policy"),
            f"{alb.ssl_policy!r} is not an ELB security policy; use "
            f"{(close or ['ELBSecurityPolicy-TLS13-1-2-2021-06'])[0]!r}",
        )
    subnets = _subnet_refs(env, "alb", alb.subnets, bad)
    if any(not s.public for s in subnets):
        bad(("alb", "subnets"), "an internet-facing ALB needs public subnets; list public ones")
    if len({s.az for s in subnets}) < 2:
        bad(
            ("alb", "subnets"),
            "an ALB needs subnets in at least two AZs; add a subnet in a second zone",
        )
    _check_health_check(env, bad)
    if not 0 <= alb.deregistration_delay_seconds <= 3600:
        bad(("alb", "deregistration_delay_seconds"), "must be 0 to 3600 seconds")
    if not 1 <= alb.idle_timeout_seconds <= 4000:
        bad(("alb", "idle_timeout_seconds"), "must be 1 to 4000 seconds")
    _check_certificate(env, bad)


def _check_health_check(env: Environment, bad: Bad) -> None:
    hc = env.alb.health_check
    if not hc.path.startswith("/"):
        bad(("alb", "health_check", "path"), f"{hc.path!r} must start with '/'; e.g. /healthz")
    if not 5 <= hc.interval_seconds <= 300:
        bad(("alb", "health_check", "interval_seconds"), "must be 5 to 300 seconds")
    if not 2 <= hc.timeout_seconds <= 120 or hc.timeout_seconds >= hc.interval_seconds:
        bad(
            ("alb", "health_check", "timeout_seconds"),
            "must be 2 to 120 seconds and shorter than interval_seconds",
        )
    for key in ("healthy_threshold", "unhealthy_threshold"):
        if not 2 <= getattr(hc, key) <= 10:
            bad(("alb", "health_check", key), "must be 2 to 10 checks")
    if not MATCHER.match(hc.matcher) or any(
        not 200 <= int(code) <= 499 for code in re.findall(r"\d{3}", hc.matcher)
    ):
        bad(
            ("alb", "health_check", "matcher"),
            f"{hc.matcher!r}: use HTTP codes 200-499 like '200', '200-299' or '200,302'",
        )


def _check_certificate(env: Environment, bad: Bad) -> None:
    if env.certificate_region != env.alb_region:
        bad(
            ("certificate", "region"),
            f"ACM certificates must be in the ALB's region "
            f"({env.alb_region}), not {env.certificate_region}; set it to {env.alb_region}",
        )
    names = env.certificate.names
    if names is not None:
        for i, name in enumerate(names):
            bare = name[2:] if name.startswith("*.") else name
            if not valid_hostname(bare):
                bad(("certificate", "names", i), f"{name!r} is not a domain name")
        for host in (env.domain.apex, *env.domain.aliases):
            if not any(covers(name, host) for name in names):
                bad(
                    ("certificate", "names"),
                    f"does not cover {host!r}, which the ALB serves; "
                    f"add {host!r} (or remove the key: it defaults to every served name)",
                )


def covers(cert_name: str, host: str) -> bool:
    """ACM semantics: '*.a.com' covers 'www.a.com' but not 'a.com' nor 'x.y.a.com'."""
    if cert_name.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == cert_name[2:]
    return cert_name == host


def _check_scaling(env: Environment, bad: Bad) -> None:
    asg = env.asg
    if asg.min_size < 0:
        bad(("asg", "min_size"), "cannot be negative")
    if asg.min_size > asg.desired_capacity:
        bad(
            ("asg", "desired_capacity"),
            f"{asg.desired_capacity} is below min_size "
            f"{asg.min_size}; need min_size <= desired_capacity <= max_size",
        )
    if asg.desired_capacity > asg.max_size:
        bad(
            ("asg", "desired_capacity"),
            f"{asg.desired_capacity} is above max_size "
            f"{asg.max_size}; need min_size <= desired_capacity <= max_size",
        )
    if asg.max_size < 1:
        bad(("asg", "max_size"), "must be at least 1")
    if not 1 <= asg.target_cpu_percent <= 100:
        bad(("asg", "target_cpu_percent"), "must be 1 to 100 (percent)")
    if not re.match(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$", asg.instance_type):
        bad(("asg", "instance_type"), f"{asg.instance_type!r}: write it like t3.small")
    if asg.ami_id is not None and not re.match(r"^ami-[0-9a-f]{8,17}$", asg.ami_id):
        bad(
            ("asg", "ami_id"),
            f"{asg.ami_id!r} is not an AMI id; write ami-0123456789abcdef0 "
            "or remove it to use ami_ssm_parameter",
        )
    if not asg.ami_ssm_parameter.startswith("/"):
        bad(
            ("asg", "ami_ssm_parameter"),
            "must be an SSM path like /aws/service/debian/release/13/latest/amd64",
        )
    _subnet_refs(env, "asg", asg.subnets, bad)


def _check_caddy(env: Environment, bad: Bad) -> None:
    caddy = env.caddy
    if caddy.mode == "direct" and not caddy.duckdns_name:
        bad(
            ("caddy", "duckdns_name"),
            "direct mode serves the DuckDNS name; set it (e.g. "
            "'jobtory' for jobtory.duckdns.org) or use mode = 'alb'",
        )
    if caddy.duckdns_name is not None and not HOST_LABEL.match(caddy.duckdns_name):
        bad(
            ("caddy", "duckdns_name"),
            f"{caddy.duckdns_name!r}: give the bare DuckDNS "
            "subdomain, e.g. 'jobtory' (not jobtory.duckdns.org)",
        )
    if not re.match(r"^[A-Za-z0-9.-]+:\d{1,5}$", caddy.upstream):
        bad(("caddy", "upstream"), f"{caddy.upstream!r}: write it as host:port of gunicorn")
    for i, cidr in enumerate(caddy.trusted_proxies or ()):
        parse_cidr(cidr, ("caddy", "trusted_proxies", i), bad)


def _check_releases(env: Environment, bad: Bad) -> None:
    releases = env.releases
    if releases.keep < 1:
        bad(("releases", "keep"), "prune keeps at least 1 release; set it to 1 or more")
    days = RELEASE_NONCURRENT_DAYS
    if releases.noncurrent_days not in days:
        bad(
            ("releases", "noncurrent_days"),
            f"must be {days.start}-{days.stop - 1} days (how long a pruned object stays "
            "recoverable)",
        )


def _check_ssm(env: Environment, bad: Bad) -> None:
    prefix = env.ssm.prefix
    if prefix is not None and not re.match(r"^(/[A-Za-z0-9_.-]+)+/$", prefix):
        bad(("ssm", "prefix"), f"{prefix!r} must start and end with '/', like /jobtory/prod/")
    _check_ssm_values(env, bad)
    _check_ssm_secrets(env, bad)
    _check_ops_secrets(env, bad)


def _check_ssm_values(env: Environment, bad: Bad) -> None:
    for name, value in env.ssm.values.items():
        path: Path_ = ("ssm", "values", name)
        if not SSM_NAME.match(name):
            bad(path, "parameter names are UPPER_SNAKE_CASE, like GOOGLE_CLIENT_ID")
        elif SECRET_NAME.search(name):
            bad(
                path,
                "looks like a secret; secrets are never values in the spec: move the "
                "name to ssm.secrets and set it with `deploy.py params set`",
            )
        elif name in DERIVED_PARAMETERS:
            bad(
                path,
                "is derived from the spec (domain, rds, the environment's name); remove "
                "it and change the source field instead",
            )
        elif looks_secret(value):
            bad(
                path,
                "the value looks like a credential; secrets are never values in the "
                "spec: list the name under ssm.secrets and set it with `deploy.py params set`",
            )
        elif why := reserved(name):
            bad(path, f"{why}; remove it (ssm.values set the app's settings)")
        elif env.name != LOCAL_ENV and (weak := weakening(name, value)):
            bad(path, weak)


def _check_ssm_secrets(env: Environment, bad: Bad) -> None:
    for i, name in enumerate(env.ssm.secrets):
        if name in OPS_SECRETS:
            bad(
                ("ssm", "secrets", i),
                f"{name} is an operator's secret, never the app's; move it to "
                f"ssm.ops_secrets (kept under {env.ssm_ops_prefix}, which the app never loads)",
            )
        elif not SSM_NAME.match(name):
            bad(
                ("ssm", "secrets", i),
                f"{name!r}: list secret NAMES only (UPPER_SNAKE_CASE); "
                "values go to SSM with `deploy.py params set`",
            )
        elif name in env.ssm.values:
            bad(
                ("ssm", "secrets", i),
                f"{name} is also in ssm.values; a secret has no value in the spec, remove it there",
            )


def _check_ops_secrets(env: Environment, bad: Bad) -> None:
    ops = env.ssm_ops_prefix
    if ops.startswith(env.ssm_prefix):  # the app loads its prefix recursively
        bad(
            ("ssm", "prefix"),
            f"{env.ssm_prefix} holds the operators' prefix {ops}, and the app loads "
            f"everything under its own; use /{env.stack_name}/{env.name}/",
        )
    for i, name in enumerate(env.ssm.ops_secrets):
        if not SSM_NAME.match(name):
            bad(("ssm", "ops_secrets", i), f"{name!r}: list names only (UPPER_SNAKE_CASE)")
        elif name in env.ssm.secrets or name in env.ssm.values:
            bad(
                ("ssm", "ops_secrets", i),
                f"{name} is also an app parameter; list it in one place only",
            )


def reserved(name: str) -> str | None:
    """Why ssm.values may not set `name` (constants.RESERVED_NAMES), or None."""
    for patterns, why in RESERVED_NAMES:
        for pattern in patterns:
            if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
                return why
    return None


def weakening(name: str, value: str) -> str | None:
    """What is wrong with a value that switches off a security setting the app reads
    (app/config/settings.py), outside `local`; None when it does not."""
    word = value.strip().lower()
    if name == "DJANGO_DEBUG" and word not in FALSE_WORDS:
        return "DEBUG shows settings and tracebacks to anyone outside local; remove it"
    if name == "DJANGO_SECURE_SSL_REDIRECT" and word not in TRUE_WORDS:
        return "switches off the redirect to https outside local; remove it (on by default)"
    if name == "DJANGO_HSTS_SECONDS" and not (word.isdigit() and int(word) >= HSTS_MIN_SECONDS):
        return (
            f"HSTS must last at least {HSTS_MIN_SECONDS} seconds (a year) outside local; "
            "remove it (a year by default)"
        )
    if name == "GOOGLE_OIDC_ISSUER" and not re.match(r"^https://[^/\s]+", value):
        return (
            "the OIDC issuer's keys and endpoints come over https outside local; "
            "write https://accounts.google.com"
        )
    # any other switch of the kind (SESSION_COOKIE_SECURE, CSRF_COOKIE_SECURE, ...), should
    # the app read it one day; preload is opt-in either way
    if re.search(r"SECURE|HSTS", name) and "PRELOAD" not in name and word in FALSE_WORDS:
        return "switches off a security setting outside local; remove it"
    return None


def secret_problem(name: str, value: str) -> str | None:
    """What is wrong with a secret's value, for the secrets whose shape is known (checked
    by `params set` before any call); None when it is fine. Never repeats the value."""
    if not value:
        return "no value on stdin"
    if name == "DJANGO_SECRET_KEY" and (
        len(value) < SECRET_KEY_MIN_LENGTH
        or len(set(value)) < SECRET_KEY_MIN_UNIQUE
        or value.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        return (
            f"needs {SECRET_KEY_MIN_LENGTH}+ characters, {SECRET_KEY_MIN_UNIQUE}+ different "
            f"ones and no '{SECRET_KEY_INSECURE_PREFIX}' prefix (Django's check --deploy); "
            "pipe in a new one: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    if name == "DB_PASSWORD" and (
        len(value) not in DB_PASSWORD_LENGTH
        or any(not 33 <= ord(c) <= 126 or c in DB_PASSWORD_FORBIDDEN for c in value)
    ):
        return (
            f"RDS takes {DB_PASSWORD_LENGTH.start}-{DB_PASSWORD_LENGTH.stop - 1} printable "
            'ASCII characters except / " @ and space; pipe in a new one: '
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if name == "DUCKDNS_TOKEN" and not DUCKDNS_TOKEN.match(value):
        return "a DuckDNS token is a UUID (8-4-4-4-12 lowercase hex), as duckdns.org shows it"
    return None


def looks_secret(value: str) -> bool:
    """Known credential shapes, or a long random-looking token (no spaces, mixed classes)."""
    if SECRET_VALUE.search(value):
        return True
    if len(value) < 32 or re.search(r"[\s/:]", value):
        return False
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    return classes == 3
