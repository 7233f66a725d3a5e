"""Every constant the stack shares, defined once: the spec's shapes, the SSM names the
spec derives, ports, the layout of a host, the defaults of the deploy commands and the
retry counts. Standard library only: the replica's tools import it too."""

from __future__ import annotations

import re

# ---- the spec's shapes -------------------------------------------------------------------

ENVIRONMENTS_KEY = "environments"
# The compose replica: the only environment that may leave `protected` unsaid.
LOCAL_ENV = "local"
PROTECTED_KEY = "protected"
PROTECTED_MIN_BACKUP_DAYS = 7  # a protected environment keeps at least a week of backups
ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
SSM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE|API_KEY|CREDENTIAL)", re.I)
SECRET_VALUE = re.compile(
    r"(AKIA[0-9A-Z]{16}|-----BEGIN|ghp_[A-Za-z0-9]{20,}|xox[bap]-|sk_live_|GOCSPX-)"
)
# An ELBv2 health-check matcher: "200", "200,302", "200-299" (the ALB stand-in's too).
MATCHER = re.compile(r"^\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*$")
TLS_POLICIES = frozenset(
    {
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
        "ELBSecurityPolicy-TLS-1-2-2017-01",
        "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
        "ELBSecurityPolicy-FS-1-2-Res-2020-10",
        "ELBSecurityPolicy-2016-08",
    }
)
SUPPORTED_POSTGRES_MAJORS = range(13, 18)
CADDY_MODES = ("alb", "direct")
# A release version names a directory and a systemd unit instance.
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# ---- SSM parameters ----------------------------------------------------------------------

# Derived from the spec; the spec may not set them by hand.
DERIVED_PARAMETERS = frozenset(
    {
        "FRONTEND_BASE_URL",
        "VITE_API_BASE",
        "GOOGLE_REDIRECT_URI",
        "DJANGO_ALLOWED_HOSTS",
        "DJANGO_CSRF_TRUSTED_ORIGINS",
        "DB_NAME",
        "DB_USER",
        "DB_PORT",
        "JOBTORY_ENV",
        "DB_SSLMODE",
        "DB_SSLROOTCERT",
    }
)
# Filled in from a live resource (the RDS endpoint) unless the spec gives a value (local).
RUNTIME_PARAMETERS = frozenset({"DB_HOST"})

# Names ssm.values may not set, in any environment: they change what runs (the loader,
# the interpreter, the server, the trust store), not how the app behaves. The app's and
# the hosts' environment comes from SSM (ssm_env), so a value here reaches every process.
# `X*` is a prefix. (docs/spec.md lists them; docs/security.md says why.)
RESERVED_NAMES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("LD_*",), "the dynamic loader reads it (a library injected into every process)"),
    (("GCONV_PATH",), "glibc loads code from it"),
    (
        ("PYTHON*",),
        "the Python interpreter reads it (PYTHONPATH, PYTHONSTARTUP, ...; PYTHON is the "
        "interpreter app/start.sh runs)",
    ),
    (("PATH", "HOME", "SHELL", "IFS", "ENV", "BASH_ENV"), "the shell and its programs read it"),
    (("GUNICORN_*",), "gunicorn's settings (bind address, trusted proxies) are the release's"),
    (("DJANGO_SETTINGS_MODULE",), "it picks the settings module: the release's"),
    (("DJANGO_BUILD_ONLY",), "build time only: it fills required settings with placeholders"),
    (("APP_VERSION",), "the release sets it"),
    (("AWS_*",), "the AWS SDK reads it (credentials, endpoint): hosts use their role"),
    (("PG*",), "libpq reads it (PGSSLMODE, PGHOST, ...): the database settings are DB_*"),
    (
        ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"),
        "it picks the certificate authorities the app trusts",
    ),
    (
        ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"),
        "it routes the app's outgoing requests (the OIDC provider's) through a proxy",
    ),
    (("SSM_PREFIX", "JOBTORY_*"), "the deployer's own setting"),
)
# Secrets only the hosts' operators use (the DuckDNS updater), never the app: they live
# under their own prefix, which the app's loader and the hosts' env file never read.
OPS_SECRETS = frozenset({"DUCKDNS_TOKEN"})
OPS_PREFIX = "/{stack}/_ops/{env}/"  # like the deploy lock's /{stack}/_deploy/{env}/
# The shapes `params set` checks before any call.
SECRET_KEY_MIN_LENGTH = 50  # Django's check --deploy (security.W009): 50+ characters,
SECRET_KEY_MIN_UNIQUE = 5  # 5+ different ones, not Django's own throwaway prefix
SECRET_KEY_INSECURE_PREFIX = "django-insecure-"
DB_PASSWORD_LENGTH = range(8, 129)  # RDS PostgreSQL master password: 8-128 printable
DB_PASSWORD_FORBIDDEN = '/"@ '  # ASCII, none of these
DUCKDNS_TOKEN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# The app's boolean words (app/config/env.py).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
HSTS_MIN_SECONDS = 31536000  # the app's default: one year
ADMIN_CIDR_WIDEST = 16  # network.admin_cidr: at most a /16 (65,536 addresses)
OAUTH_CALLBACK_PATH = "/auth/google/callback"

# ---- the release store (aws.store, hosts.store) ------------------------------------------

# Everything a host may read lives under this key prefix of the store: the instance role
# may GetObject there and nowhere else in the bucket.
RELEASES_PREFIX = "releases/"
# A release's manifest (the sha256 of every object it needs), and its objects, stored
# under the sha256 of their content: an object already in the store is never uploaded
# again. A release name never collides with "objects" (it is <commit>-<digest>).
RELEASE_MANIFEST_KEY = RELEASES_PREFIX + "{name}/manifest.json"
RELEASE_OBJECT_KEY = RELEASES_PREFIX + "objects/sha256/{sha256}"
RELEASE_MANIFEST_FORMAT = "jobtory-release/1"
RELEASE_NONCURRENT_DAYS = range(1, 3651)  # releases.noncurrent_days

# ---- ports -------------------------------------------------------------------------------

POSTGRES_PORT = 5432
HTTP_PORT = 80
HTTPS_PORT = 443
CADDY_ADMIN_DEFAULT = "localhost:2019"  # Caddy's own default when a config names none

# ---- a host's layout (EC2 and the fleet replica) -----------------------------------------

HOST_ROOT = "/srv/jobtory"
HOST_ETC = "/etc/jobtory"
HOST_STATIC_ROOT = f"{HOST_ROOT}/current/app/frontend"
HOST_BIND = "127.0.0.1:8000"  # gunicorn, on the host's loopback only
HOST_CANDIDATE_BIND = "127.0.0.1:8001"  # a new release's check before the switch
# Caddy's admin API on a unix socket, group-writable: the web user's group (which the
# deploy's SSH user joins) may reach it through `ssh -L PORT:SOCKET`; no other local
# user can reconfigure Caddy, as anyone could on a loopback TCP port.
HOST_CADDY_SOCKET = "/run/jobtory-caddy/admin.sock"
HOST_CADDY_ADMIN = f"unix/{HOST_CADDY_SOCKET}|0660"
# The database's CA bundle on a host (rds.ca_bundle, installed by the hosts deploy; the
# replica mounts its db's local CA there): the app verifies the server's certificate and
# name with it, never trusting a server it cannot verify (DB_SSLMODE, DB_SSLROOTCERT).
HOST_DB_CA_DIR = f"{HOST_ETC}/db-ca"
HOST_DB_CA = f"{HOST_DB_CA_DIR}/ca.pem"
DB_SSLMODE = "verify-full"
# Where AWS publishes each region's RDS CA bundle (docs/security.md): download it on a
# machine that can reach it, commit it next to the spec, name it in rds.ca_bundle.
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/{region}/{region}-bundle.pem"
HOST_PYTHON = "3.13"  # Debian 13 (trixie); Ubuntu 24.04 has 3.12: set JOBTORY_HOST_PYTHON

# ---- defaults of the deploy commands ------------------------------------------------------

KEEP_RELEASES = 3  # releases kept per host
LOCK_STALE_AFTER = 30 * 60.0  # seconds; a rolling deploy of a few hosts takes minutes
READY_TIMEOUT = 180.0  # seconds a host may take to pass the balancer's health checks
PYINFRA_TIMEOUT = 1800.0  # seconds one host's deploy may take
AWS_WAIT_TIMEOUT = 900.0  # seconds of each AWS wait (certificate, database, replacement)
AWS_PROGRESS_SECONDS = 30.0  # a wait prints its status at least this often
# A Multi-AZ RDS create (a standby in a second AZ, its first backup) often takes well over
# 15 minutes, and a big allocation longer: its wait is an hour (JOBTORY_RDS_WAIT_TIMEOUT).
RDS_MULTI_AZ_WAIT_TIMEOUT = 3600.0
# A new instance profile is refused by CreateAutoScalingGroup / RunInstances for seconds
# to minutes ("Invalid IAM Instance Profile name"): retried this long (JOBTORY_PROFILE_TIMEOUT).
PROFILE_PROPAGATION_TIMEOUT = 300.0
# An instance refresh replaces one batch at a time, each waiting for its warmup and the
# checkpoints' delays: it is followed this long (JOBTORY_REFRESH_TIMEOUT).
REFRESH_TIMEOUT = 3600.0

# ---- retries -----------------------------------------------------------------------------

AWS_MAX_ATTEMPTS = 8  # botocore's standard mode, with backoff
CADDY_CONFLICT_RETRIES = 5  # If-Match conflicts (412) before a config update gives up
DNS_TRIES = 2  # per nameserver, UDP then TCP
