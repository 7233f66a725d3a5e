"""The spec: the shipped stack.toml is valid, and every rule refuses its bad input by name."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobtory_stack.errors import SpecError
from jobtory_stack.spec.derived import derive
from jobtory_stack.spec.loader import load_stack
from jobtory_stack.spec.rules import covers
from tests.helpers import ROOT

SHIPPED = ROOT / "stack.toml"
Doc = dict[str, Any]


def shipped_doc() -> Doc:
    return tomllib.loads(SHIPPED.read_text())


def write_toml(path: Path, doc: Doc) -> Path:
    """A tiny TOML writer (tables, arrays of inline tables, scalars): enough for specs."""

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{ " + ", ".join(f'"{k}" = {scalar(v)}' for k, v in value.items()) + " }"
        raise TypeError(value)

    lines: list[str] = []

    def table(prefix: str, node: Doc) -> None:
        plain = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f'"{k}" = {scalar(v)}' for k, v in plain.items())
        for key, value in node.items():
            if isinstance(value, dict):
                table(f'{prefix}."{key}"' if prefix else f'"{key}"', value)

    table("", doc)
    path.write_text("\n".join(lines) + "\n")
    return path


def spec_error(tmp_path: Path, doc: Doc, env: str) -> str:
    stack = load_stack(write_toml(tmp_path / "stack.toml", doc))
    with pytest.raises(SpecError) as caught:
        stack.env(env)
    return str(caught.value)


def test_shipped_spec_is_valid() -> None:
    stack = load_stack(SHIPPED)
    assert stack.env_names == ["local", "staging", "prod"]
    for name in stack.env_names:
        env = stack.env(name)
        assert env.region == "ap-northeast-2"
        assert env.rds.family == "postgres17"
        assert env.rds.parameters["timezone"] == "Asia/Seoul"
        # staging waives the protected rules on purpose: that is its only warning
        waived = ("environments.staging.protected: WARNING",) if name == "staging" else ()
        assert tuple(w[: len(waived[0])] for w in env.warnings) == waived


def test_writer_round_trips_the_shipped_spec(tmp_path: Path) -> None:
    doc = shipped_doc()
    assert tomllib.loads(write_toml(tmp_path / "s.toml", doc).read_text()) == doc


def test_prod_derived_values() -> None:
    d = derive(load_stack(SHIPPED).env("prod"))
    assert d.frontend_base_url == "https://jobtory.com"
    assert d.vite_api_base == "https://jobtory.com/api"
    assert d.google_redirect_uri == "https://jobtory.com/auth/google/callback"
    assert d.oauth_js_origins == ("https://jobtory.com", "https://www.jobtory.com")
    assert d.certificate_names == ("jobtory.com", "www.jobtory.com")
    assert d.parameters["DJANGO_ALLOWED_HOSTS"] == "jobtory.com,www.jobtory.com"
    assert d.parameter_name("DB_PASSWORD") == "/jobtory/prod/DB_PASSWORD"
    assert d.tags == {"stack": "jobtory", "env": "prod"}
    assert d.resource_name("alb") == "jobtory-prod-alb"
    assert "DB_PASSWORD" in d.secret_names
    assert "DB_PASSWORD" not in d.parameters


def test_local_derived_values_carry_the_published_port() -> None:
    d = derive(load_stack(SHIPPED).env("local"))
    assert d.frontend_base_url == "https://jobtory.localhost:8443"
    assert d.parameters["DJANGO_CSRF_TRUSTED_ORIGINS"] == (
        "https://jobtory.localhost:8443,https://www.jobtory.localhost:8443"
    )
    assert d.parameters["DB_HOST"] == "db"


def test_the_app_is_told_its_environment_name() -> None:
    """The app relaxes https for its OIDC provider in `local` only (app/config/settings.py)."""
    stack = load_stack(SHIPPED)
    assert derive(stack.env("local")).parameters["JOBTORY_ENV"] == "local"
    assert derive(stack.env("prod")).parameters["JOBTORY_ENV"] == "prod"
    assert derive(stack.env("staging")).parameters["JOBTORY_ENV"] == "staging"


def test_changing_only_the_domain_changes_every_url_and_nothing_else(tmp_path: Path) -> None:
    doc = shipped_doc()
    doc["domain"]["apex"] = "jobtory.kr"
    doc["domain"]["aliases"] = ["www.jobtory.kr"]
    before = derive(load_stack(SHIPPED).env("prod"))
    after = derive(load_stack(write_toml(tmp_path / "stack.toml", doc)).env("prod"))
    changed = {k for k in before.parameters if before.parameters[k] != after.parameters[k]}
    assert changed == {
        "FRONTEND_BASE_URL",
        "VITE_API_BASE",
        "GOOGLE_REDIRECT_URI",
        "DJANGO_ALLOWED_HOSTS",
        "DJANGO_CSRF_TRUSTED_ORIGINS",
    }
    for value in (after.parameters[k] for k in changed):
        assert "jobtory.kr" in value and "jobtory.com" not in value
    assert after.oauth_js_origins == ("https://jobtory.kr", "https://www.jobtory.kr")
    assert after.oauth_redirect_uris == ("https://jobtory.kr/auth/google/callback",)
    assert after.certificate_names == ("jobtory.kr", "www.jobtory.kr")
    # Everything that is not domain-derived stays exactly the same.
    assert before.secret_names == after.secret_names
    assert before.tags == after.tags
    assert before.env.doc.model_dump(exclude={"domain"}) == after.env.doc.model_dump(
        exclude={"domain"}
    )


def test_direct_mode_serves_the_duckdns_name(tmp_path: Path) -> None:
    doc = shipped_doc()
    doc["environments"]["prod"]["caddy"] = {"mode": "direct"}
    d = derive(load_stack(write_toml(tmp_path / "stack.toml", doc)).env("prod"))
    assert d.served_hosts == ("jobtory.duckdns.org",)
    assert d.google_redirect_uri == "https://jobtory.duckdns.org/auth/google/callback"
    assert d.domain_hosts == ("jobtory.com", "www.jobtory.com")


def test_public_database_with_testing_flag_is_a_warning(tmp_path: Path) -> None:
    doc = shipped_doc()
    doc["environments"]["staging"]["rds"].update(
        publicly_accessible=True, allow_public_for_testing=True
    )
    env = load_stack(write_toml(tmp_path / "stack.toml", doc)).env("staging")
    public = [w for w in env.warnings if "protected:" not in w]  # staging's waiver aside
    assert len(public) == 1
    assert "environments.staging.rds.publicly_accessible" in public[0]
    assert "WARNING" in public[0]


def test_acm_wildcard_semantics() -> None:
    assert covers("*.jobtory.com", "www.jobtory.com")
    assert not covers("*.jobtory.com", "jobtory.com")
    assert not covers("*.jobtory.com", "a.b.jobtory.com")
    assert covers("jobtory.com", "jobtory.com")


def test_wildcard_certificate_plus_apex_is_accepted(tmp_path: Path) -> None:
    doc = shipped_doc()
    doc["certificate"] = {"names": ["jobtory.com", "*.jobtory.com"]}
    load_stack(write_toml(tmp_path / "stack.toml", doc)).env("prod")


# ---- one invalid spec per rule and typo class ------------------------------------------------

Mutation = Callable[[Doc], None]


def setk(*path: str, value: Any) -> Mutation:
    def mutate(doc: Doc) -> None:
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return mutate


def delk(*path: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def subnets(*changes: tuple[int, str, Any]) -> Mutation:
    def mutate(doc: Doc) -> None:
        nets = copy.deepcopy(doc["network"]["subnets"])
        for index, key, value in changes:
            nets[index][key] = value
        doc["network"]["subnets"] = nets

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(doc: Doc) -> None:
        for mutation in mutations:
            mutation(doc)

    return mutate


PROD = ("environments", "prod")
FAKE_AWS_KEY = "AKIA" + "ABCDEFGHIJKLMNOP"  # assembled at run time: no key-shaped literal
INVALID: list[tuple[str, Mutation, str, str]] = [
    # (id, mutation, env, expected message fragment)
    ("family-mismatch", setk("rds", "parameter_group_family", value="postgres16"), "prod",
     "rds.parameter_group_family: 'postgres16' does not match engine postgres 17.6; "
     "use 'postgres17'"),
    ("engine-version-malformed", setk("rds", "engine_version", value="seventeen"), "prod",
     "rds.engine_version: 'seventeen' is not a version"),
    ("engine-major-unsupported", setk("rds", "engine_version", value="9.6"), "prod",
     "rds.engine_version: PostgreSQL 9 is not offered by RDS"),
    ("engine-not-postgres", setk("rds", "engine", value="mysql"), "prod",
     "rds.engine: input should be 'postgres'"),
    ("acm-region", setk("certificate", "region", value="us-east-1"), "prod",
     "certificate.region: ACM certificates must be in the ALB's region (ap-northeast-2), "
     "not us-east-1"),
    ("cert-misses-www", setk("certificate", "names", value=["jobtory.com"]), "prod",
     "certificate.names: does not cover 'www.jobtory.com'"),
    ("cert-wildcard-misses-apex", setk("certificate", "names", value=["*.jobtory.com"]), "prod",
     "certificate.names: does not cover 'jobtory.com'"),
    ("asg-min-over-desired", setk(*PROD, "asg", "min_size", value=3), "prod",
     "environments.prod.asg.desired_capacity: 2 is below min_size 3"),
    ("asg-desired-over-max", setk(*PROD, "asg", "desired_capacity", value=5), "prod",
     "environments.prod.asg.desired_capacity: 5 is above max_size 4"),
    ("asg-negative-min", setk("environments", "staging", "asg", "min_size", value=-1), "staging",
     "environments.staging.asg.min_size: cannot be negative"),
    ("asg-cpu-range", setk("asg", "target_cpu_percent", value=150), "prod",
     "asg.target_cpu_percent: must be 1 to 100"),
    ("subnet-outside-vpc", subnets((0, "cidr", "10.99.0.0/24")), "prod",
     "network.subnets[0].cidr: 10.99.0.0/24 is outside the VPC 10.20.0.0/16"),
    ("subnets-overlap", subnets((1, "cidr", "10.20.0.0/23")), "prod",
     "network.subnets[1].cidr: 10.20.0.0/23 overlaps subnet 'public-a'"),
    ("alb-one-az", subnets((1, "az", "ap-northeast-2a")), "prod",
     "alb.subnets: an ALB needs subnets in at least two AZs"),
    ("alb-private-subnet", setk("alb", "subnets", value=["public-a", "private-c"]), "prod",
     "alb.subnets: an internet-facing ALB needs public subnets"),
    ("alb-unknown-subnet", setk("alb", "subnets", value=["public-a", "public-b"]), "prod",
     "alb.subnets[1]: no subnet named 'public-b' in network.subnets"),
    ("az-wrong-region", subnets((0, "az", "us-east-1a")), "prod",
     "network.subnets[0].az: 'us-east-1a' is not a zone of ap-northeast-2"),
    ("rds-one-az", subnets((3, "az", "ap-northeast-2a"), (1, "az", "ap-northeast-2c")), "prod",
     "network.subnets: RDS needs private subnets in at least two AZs"),
    ("rds-public", setk(*PROD, "rds", "publicly_accessible", value=True), "prod",
     "environments.prod.rds.publicly_accessible: the database must stay private"),
    ("prod-unprotected", setk(*PROD, "rds", "deletion_protection", value=False), "prod",
     "environments.prod.rds.deletion_protection: a protected environment needs it; set it to"),
    ("secret-literal-key", setk("rds", "master_password", value="hunter2hunter2"), "prod",
     "rds.master_password: secrets are never values in the spec"),
    ("secret-in-values", setk("ssm", "values", "DJANGO_SECRET_KEY", value="abc"), "prod",
     "ssm.values.DJANGO_SECRET_KEY: looks like a secret; secrets are never values"),
    ("secret-looking-value",
     setk("ssm", "values", "SENTRY_DSN_ID", value="q8Z3kLm09XvB7nR2tY6uW1eP4sD5fG8h"), "prod",
     "ssm.values.SENTRY_DSN_ID: the value looks like a credential"),
    ("aws-key-value", setk("ssm", "values", "UPLOAD_ID", value=FAKE_AWS_KEY), "prod",
     "ssm.values.UPLOAD_ID: the value looks like a credential"),
    ("secret-name-with-value", setk("ssm", "secrets", value=["DB_PASSWORD=hunter2"]), "prod",
     "ssm.secrets[0]: 'DB_PASSWORD=hunter2': list secret NAMES only"),
    ("derived-set-by-hand",
     setk("ssm", "values", "FRONTEND_BASE_URL", value="https://x.com"), "prod",
     "ssm.values.FRONTEND_BASE_URL: is derived from the spec"),
    ("env-name-set-by-hand", setk("ssm", "values", "JOBTORY_ENV", value="local"), "prod",
     "ssm.values.JOBTORY_ENV: is derived from the spec"),
    ("typo-top-level", setk("domian", value={"apex": "x.com"}), "prod",
     "domian: unknown key; did you mean 'domain'?"),
    ("typo-nested", setk("rds", "enigne_version", value="17.6"), "prod",
     "rds.enigne_version: unknown key; did you mean 'engine_version'?"),
    ("typo-in-override", setk(*PROD, "asg", "max_szie", value=4), "prod",
     "environments.prod.asg.max_szie: unknown key; did you mean 'max_size'?"),
    ("typo-deep", setk("alb", "health_check", "intervall_seconds", value=10), "prod",
     "alb.health_check.intervall_seconds: unknown key; did you mean 'interval_seconds'?"),
    ("unknown-rds-parameter", setk("rds", "parameters", "max_conections", value=100), "prod",
     "rds.parameters.max_conections: not a PostgreSQL parameter this tool knows; "
     "did you mean 'max_connections'?"),
    ("parameter-type", setk("rds", "parameters", "max_connections", value="lots"), "prod",
     "rds.parameters.max_connections: must be a whole number, not 'lots'"),
    ("parameter-range", setk("rds", "parameters", "max_connections", value=1), "prod",
     "rds.parameters.max_connections: 1 is out of range"),
    ("timezone-invalid", setk("rds", "parameters", "timezone", value="Asia/Seul"), "prod",
     "rds.parameters.timezone: 'Asia/Seul' is not an IANA time zone"),
    ("wrong-type", setk(*PROD, "asg", "max_size", value="four"), "prod",
     "environments.prod.asg.max_size: input should be a valid integer (got 'four')"),
    ("missing-required", delk("rds", "engine_version"), "prod",
     "rds.engine_version: required"),
    ("bad-domain", setk("domain", "apex", value="jobtory_com"), "prod",
     "domain.apex: 'jobtory_com' is not a domain name"),
    ("uppercase-domain", setk("domain", "aliases", value=["WWW.jobtory.com"]), "prod",
     "domain.aliases[0]: 'WWW.jobtory.com' is not a domain name"),
    ("bad-cidr", setk("network", "vpc_cidr", value="10.20.0.0/33"), "prod",
     "network.vpc_cidr: '10.20.0.0/33' is not a CIDR block"),
    ("cidr-host-bits", setk("network", "vpc_cidr", value="10.20.0.1/16"), "prod",
     "network.vpc_cidr: '10.20.0.1/16' has host bits set; use 10.20.0.0/16"),
    ("vpc-too-big", setk("network", "vpc_cidr", value="10.0.0.0/8"), "prod",
     "network.vpc_cidr: a VPC block must be /16 to /28, not /8"),
    ("admin-open-world", setk("network", "admin_cidr", value="0.0.0.0/0"), "prod",
     "network.admin_cidr: 0.0.0.0/0 would open SSH to the internet"),
    ("bad-region", setk("stack", "region", value="seoul"), "prod",
     "stack.region: 'seoul' is not an AWS region name"),
    ("tls-policy", setk("alb", "ssl_policy", value="ELBSecurityPolicy-TLS13-1-2-2021"), "prod",
     "alb.ssl_policy: 'ELBSecurityPolicy-TLS13-1-2-2021' is not an ELB security policy"),
    ("health-path", setk("alb", "health_check", "path", value="healthz"), "prod",
     "alb.health_check.path: 'healthz' must start with '/'"),
    ("health-timeout", setk("alb", "health_check", "timeout_seconds", value=20), "prod",
     "alb.health_check.timeout_seconds: must be 2 to 120 seconds and shorter than interval"),
    ("health-matcher", setk("alb", "health_check", "matcher", value="2xx"), "prod",
     "alb.health_check.matcher: '2xx': use HTTP codes 200-499"),
    ("dereg-delay", setk("alb", "deregistration_delay_seconds", value=4000), "prod",
     "alb.deregistration_delay_seconds: must be 0 to 3600 seconds"),
    ("caddy-mode", setk("caddy", "mode", value="tls"), "prod",
     "caddy.mode: input should be 'alb' or 'direct'"),
    ("direct-without-duckdns", both(delk("caddy", "duckdns_name"),
                                    setk(*PROD, "caddy", value={"mode": "direct"})), "prod",
     "caddy.duckdns_name: direct mode serves the DuckDNS name; set it"),
    ("duckdns-fqdn", setk("caddy", "duckdns_name", value="jobtory.duckdns.org"), "prod",
     "caddy.duckdns_name: 'jobtory.duckdns.org': give the bare DuckDNS subdomain"),
    ("ssm-prefix", setk("ssm", "prefix", value="jobtory/prod"), "prod",
     "ssm.prefix: 'jobtory/prod' must start and end with '/'"),
    ("cloudflare-registrar", setk("domain", "registrar", value="cloudflare"), "prod",
     "domain.registrar: Cloudflare Registrar requires Cloudflare DNS"),
    ("endpoint-url", setk(*PROD, "aws", value={"endpoint_url": "localhost:4566"}), "prod",
     "environments.prod.aws.endpoint_url: 'localhost:4566' must be a base URL"),
    ("ami-id", setk("asg", "ami_id", value="ubuntu-24"), "prod",
     "asg.ami_id: 'ubuntu-24' is not an AMI id"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutation", "env", "expected"),
    [pytest.param(m, e, x, id=i) for i, m, e, x in INVALID],
)
def test_invalid_spec_names_field_and_fix(
    tmp_path: Path, mutation: Mutation, env: str, expected: str
) -> None:
    doc = shipped_doc()
    mutation(doc)
    message = spec_error(tmp_path, doc, env)
    assert expected in message, message


def test_at_least_thirty_invalid_specs() -> None:
    assert len(INVALID) >= 30
    assert len({i for i, *_ in INVALID}) == len(INVALID)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    doc = shipped_doc()
    doc["asg"]["target_cpu_percent"] = 0
    doc["alb"]["health_check"]["path"] = "x"
    message = spec_error(tmp_path, doc, "staging")
    assert "asg.target_cpu_percent" in message and "alb.health_check.path" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[stack\nname=1", "not valid TOML"),
        ('[stack]\nname = "jobtory"\n', "environments: missing"),
        ("[environments.Prod]\nx = 1\n", "environments.Prod: bad environment name"),
        ("environments = 3\n", "environments: missing"),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "stack.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=re.escape(expected)):
        load_stack(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_stack(tmp_path / "nope.toml")


def test_unknown_environment() -> None:
    with pytest.raises(SpecError, match=r"environments\.qa: unknown environment; known: local"):
        load_stack(SHIPPED).env("qa")


# ---- protection is a property, not a name ------------------------------------------------


def renamed_prod(name: str, **prod: Any) -> Doc:
    """The shipped spec with its prod environment under another name, keys replaced."""
    doc = shipped_doc()
    table = doc["environments"].pop("prod")
    table.update(prod)
    doc["environments"][name] = table
    return doc


def test_a_protected_environment_of_any_name_keeps_its_data(tmp_path: Path) -> None:
    doc = renamed_prod(
        "production",
        rds={
            "deletion_protection": False,
            "backup_retention_days": 0,
            "storage_encrypted": False,
            "ca_bundle": "rds-ca/ap-northeast-2-bundle.pem",
        },
        alb={"deletion_protection": False},
    )
    message = spec_error(tmp_path, doc, "production")
    assert message.splitlines() == [
        "environments.production.rds.deletion_protection: a protected environment needs it; "
        "set it to true",
        "environments.production.rds.storage_encrypted: a protected environment needs it; "
        "set it to true",
        "environments.production.rds.backup_retention_days: a protected environment keeps "
        "backups at least 7 days; set 7 to 35",
        "environments.production.alb.deletion_protection: a protected environment needs it; "
        "set it to true",
    ]
    six_days = renamed_prod("production")
    six_days["environments"]["production"]["rds"]["backup_retention_days"] = 6
    assert "backup_retention_days: a protected" in spec_error(tmp_path, six_days, "production")


def test_every_environment_but_local_says_whether_it_is_protected(tmp_path: Path) -> None:
    doc = renamed_prod("production")
    del doc["environments"]["production"]["protected"]
    assert spec_error(tmp_path, doc, "production").startswith(
        "environments.production.protected: required outside local; add `protected = true` to "
        "[environments.production]"
    )
    del doc["environments"]["staging"]["protected"]
    assert "environments.staging.protected: required" in spec_error(tmp_path, doc, "staging")
    load_stack(write_toml(tmp_path / "stack.toml", doc)).env("local")  # local may leave it


def test_protected_false_is_a_waiver_with_a_warning(tmp_path: Path) -> None:
    doc = renamed_prod("production", protected=False)
    doc["environments"]["production"]["rds"]["deletion_protection"] = False
    env = load_stack(write_toml(tmp_path / "stack.toml", doc)).env("production")
    assert not env.protected
    assert env.warnings == (
        "environments.production.protected: WARNING: false waives the protected rules "
        "(deletion protection, 7-day backups, encryption, destroy confirmed by name); keep it "
        "for environments whose data can be thrown away",
    )


def test_protected_is_not_a_shared_default(tmp_path: Path) -> None:
    doc = {"protected": True, **shipped_doc()}
    with pytest.raises(SpecError, match=r"^protected: not a shared default; write it in each"):
        load_stack(write_toml(tmp_path / "stack.toml", doc))
    doc = shipped_doc()
    doc["environments"]["prod"]["protected"] = "yes"
    assert "environments.prod.protected: input should be a valid boolean" in spec_error(
        tmp_path, doc, "prod"
    )


def test_a_protected_database_is_never_public(tmp_path: Path) -> None:
    doc = renamed_prod("production")
    doc["environments"]["production"]["rds"].update(
        publicly_accessible=True, allow_public_for_testing=True
    )
    assert (
        "environments.production.rds.publicly_accessible: the database must stay private in a "
        "protected environment" in spec_error(tmp_path, doc, "production")
    )


# ---- the spec cannot weaken production through ssm.values -----------------------------------

WEAKENING: list[tuple[str, str, str, str]] = [
    # (name, value, env, expected message)
    ("LD_PRELOAD", "/tmp/x.so", "local",
     "ssm.values.LD_PRELOAD: the dynamic loader reads it (a library injected into every "
     "process); remove it (ssm.values set the app's settings)"),
    ("LD_LIBRARY_PATH", "/tmp", "prod", "ssm.values.LD_LIBRARY_PATH: the dynamic loader"),
    ("PYTHONPATH", "/tmp", "prod", "ssm.values.PYTHONPATH: the Python interpreter reads it"),
    ("PYTHONSTARTUP", "/tmp/x.py", "local", "ssm.values.PYTHONSTARTUP: the Python interpreter"),
    ("PYTHON", "/tmp/python", "prod", "ssm.values.PYTHON: the Python interpreter reads it"),
    ("PATH", "/tmp:/usr/bin", "prod", "ssm.values.PATH: the shell and its programs read it"),
    ("GUNICORN_BIND", "0.0.0.0:8000", "prod", "ssm.values.GUNICORN_BIND: gunicorn's settings"),
    ("GUNICORN_CMD_ARGS", "--reload", "local", "ssm.values.GUNICORN_CMD_ARGS: gunicorn's"),
    ("DJANGO_SETTINGS_MODULE", "evil.settings", "prod",
     "ssm.values.DJANGO_SETTINGS_MODULE: it picks the settings module: the release's"),
    ("DJANGO_BUILD_ONLY", "1", "prod", "ssm.values.DJANGO_BUILD_ONLY: build time only"),
    ("AWS_ENDPOINT_URL", "http://evil", "prod", "ssm.values.AWS_ENDPOINT_URL: the AWS SDK"),
    ("PGSSLMODE", "disable", "prod", "ssm.values.PGSSLMODE: libpq reads it"),
    ("REQUESTS_CA_BUNDLE", "/tmp/ca.pem", "prod", "ssm.values.REQUESTS_CA_BUNDLE: it picks"),
    ("HTTPS_PROXY", "http://proxy:3128", "prod", "ssm.values.HTTPS_PROXY: it routes the app's"),
    ("DJANGO_DEBUG", "true", "prod",
     "ssm.values.DJANGO_DEBUG: DEBUG shows settings and tracebacks to anyone outside local; "
     "remove it"),
    ("DJANGO_DEBUG", "1", "staging", "ssm.values.DJANGO_DEBUG: DEBUG shows settings"),
    ("DJANGO_SECURE_SSL_REDIRECT", "false", "prod",
     "ssm.values.DJANGO_SECURE_SSL_REDIRECT: switches off the redirect to https outside local"),
    ("DJANGO_HSTS_SECONDS", "0", "prod",
     "ssm.values.DJANGO_HSTS_SECONDS: HSTS must last at least 31536000 seconds (a year)"),
    ("DJANGO_HSTS_SECONDS", "3600", "prod", "ssm.values.DJANGO_HSTS_SECONDS: HSTS must last"),
    ("SESSION_COOKIE_SECURE", "false", "prod",
     "ssm.values.SESSION_COOKIE_SECURE: switches off a security setting outside local"),
    ("CSRF_COOKIE_SECURE", "0", "prod", "ssm.values.CSRF_COOKIE_SECURE: switches off a"),
    # derived (verify-full with the spec's CA bundle), in every environment
    ("DB_SSLMODE", "require", "prod",
     "ssm.values.DB_SSLMODE: is derived from the spec (domain, rds, the environment's name); "
     "remove it"),
    ("DB_SSLMODE", "disable", "local", "ssm.values.DB_SSLMODE: is derived from the spec"),
    ("DB_SSLROOTCERT", "/tmp/mine.pem", "prod",
     "ssm.values.DB_SSLROOTCERT: is derived from the spec"),
    ("GOOGLE_OIDC_ISSUER", "http://accounts.google.com", "prod",
     "ssm.values.GOOGLE_OIDC_ISSUER: the OIDC issuer's keys and endpoints come over https"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "env", "expected"),
    [pytest.param(n, v, e, x, id=f"{n}={v}@{e}") for n, v, e, x in WEAKENING],
)
def test_ssm_values_cannot_weaken_the_app(
    tmp_path: Path, name: str, value: str, env: str, expected: str
) -> None:
    doc = shipped_doc()
    doc["ssm"]["values"][name] = value
    message = spec_error(tmp_path, doc, env)
    assert expected in message, message
    assert len(message.splitlines()) == 1  # one line: the field and the fix


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_DEBUG", "false"),
        ("DJANGO_SECURE_SSL_REDIRECT", "true"),
        ("DJANGO_HSTS_SECONDS", "63072000"),
        ("DJANGO_HSTS_PRELOAD", "false"),
        ("DJANGO_HSTS_PRELOAD", "true"),
        ("GOOGLE_OIDC_ISSUER", "https://accounts.google.com"),
        ("DJANGO_LOG_LEVEL", "WARNING"),
        ("PAGE_SIZE", "50"),  # not a PG* name
    ],
)
def test_ssm_values_that_keep_production_safe_pass(tmp_path: Path, name: str, value: str) -> None:
    doc = shipped_doc()
    doc["ssm"]["values"][name] = value
    load_stack(write_toml(tmp_path / "stack.toml", doc)).env("prod")


def test_local_may_debug_over_http(tmp_path: Path) -> None:
    doc = shipped_doc()
    doc["environments"]["local"]["ssm"]["values"].update(
        DJANGO_DEBUG="true", DJANGO_SECURE_SSL_REDIRECT="false"
    )
    env = load_stack(write_toml(tmp_path / "stack.toml", doc)).env("local")
    assert env.ssm.values["GOOGLE_OIDC_ISSUER"] == "http://oidc:9400"  # the replica's fake


@pytest.mark.parametrize(
    ("cidr", "expected"),
    [
        ("0.0.0.0/1", "network.admin_cidr: 0.0.0.0/1 opens SSH to 2,147,483,648 addresses, "
         "more than a /16; use your office or VPN block (e.g. 203.0.113.7/32)"),
        ("10.0.0.0/8", "network.admin_cidr: 10.0.0.0/8 opens SSH to 16,777,216 addresses"),
        ("0.0.0.0/0", "network.admin_cidr: 0.0.0.0/0 would open SSH to the internet"),
    ],
)  # fmt: skip
def test_admin_cidr_is_at_most_a_slash_16(tmp_path: Path, cidr: str, expected: str) -> None:
    doc = shipped_doc()
    doc["network"]["admin_cidr"] = cidr
    assert expected in spec_error(tmp_path, doc, "prod")
    doc["network"]["admin_cidr"] = "198.51.0.0/16"
    load_stack(write_toml(tmp_path / "stack.toml", doc)).env("prod")


# ---- the database connection is verified ----------------------------------------------------


def test_every_environment_verifies_the_database() -> None:
    """verify-full with the CA bundle at its host path, derived: the spec cannot weaken it."""
    for name in ("local", "staging", "prod"):
        d = derive(load_stack(SHIPPED).env(name))
        assert d.parameters["DB_SSLMODE"] == "verify-full"
        assert d.parameters["DB_SSLROOTCERT"] == "/etc/jobtory/db-ca/ca.pem"


def test_a_ca_bundle_is_required_outside_local(tmp_path: Path) -> None:
    doc = shipped_doc()
    del doc["environments"]["prod"]["rds"]["ca_bundle"]
    assert spec_error(tmp_path, doc, "prod") == (
        "rds.ca_bundle: required outside local (the app verifies the database with sslmode="
        "verify-full); download https://truststore.pki.rds.amazonaws.com/ap-northeast-2/"
        "ap-northeast-2-bundle.pem, commit it next to the spec and set ca_bundle = "
        "'rds-ca/ap-northeast-2-bundle.pem'"
    )
    assert load_stack(SHIPPED).env("local").rds.ca_bundle is None  # the replica's own CA


@pytest.mark.parametrize("bad", ["/etc/ssl/rds.pem", "../rds.pem", "rds-ca/bundle.crt"])
def test_a_ca_bundle_is_a_pem_file_beside_the_spec(tmp_path: Path, bad: str) -> None:
    doc = shipped_doc()
    doc["environments"]["prod"]["rds"]["ca_bundle"] = bad
    assert spec_error(tmp_path, doc, "prod") == (
        f"environments.prod.rds.ca_bundle: {bad!r}: name a .pem file inside the spec's "
        "directory, relative to it (e.g. 'rds-ca/ap-northeast-2-bundle.pem'): a release "
        "carries it to new hosts"
    )
