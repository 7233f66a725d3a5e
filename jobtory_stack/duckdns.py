"""Update the DuckDNS record of the direct-mode host (today's production).

The token is read from SSM Parameter Store (SecureString, decrypted in memory):
it never goes on a command line, into the environment of a child, or into a log.
Requests are logged with the token redacted. It is an operator's secret (the spec's
ssm.ops_secrets): it lives under the environment's operators' prefix
/<stack>/_ops/<env>/, never under the app's, which the app and the hosts' env file load
whole (`deploy.py params set --env prod DUCKDNS_TOKEN` puts it there).

    scripts/duckdns-update --domain jobtory.duckdns.org --prefix /jobtory/_ops/prod/
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from jobtory_stack.ssm_env import no_secret_logging, ssm_client

DEFAULT_ENDPOINT = "https://www.duckdns.org/update"
TOKEN_PARAMETER = "DUCKDNS_TOKEN"
REDACTED = "REDACTED"

log = logging.getLogger("jobtory_stack.duckdns")

_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


class DuckDNSError(RuntimeError):
    """A failed update; the message never contains the token."""


def subdomains(domain: str) -> str:
    """'jobtory.duckdns.org' (or 'jobtory', or a comma list) -> 'jobtory'."""
    names = []
    for part in domain.split(","):
        name = part.strip().lower().removesuffix(".").removesuffix(".duckdns.org")
        if not _SUBDOMAIN_RE.match(name):
            raise DuckDNSError(
                f"domain {part.strip()!r} is not a DuckDNS name (<name>.duckdns.org)"
            )
        names.append(name)
    if not names:
        raise DuckDNSError("no domain given")
    return ",".join(names)


def token_parameter_name(prefix: str, parameter: str = TOKEN_PARAMETER) -> str:
    if parameter.startswith("/"):
        return parameter
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise DuckDNSError(f"SSM prefix must start and end with '/': {prefix!r}")
    return prefix + parameter


def token_from_ssm(name: str, client: Any | None = None) -> str:
    """The decrypted token; errors name the parameter, never a value."""
    try:
        with no_secret_logging():
            client = client or ssm_client()
            response = client.get_parameter(Name=name, WithDecryption=True)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        if code == "ParameterNotFound":
            raise DuckDNSError(
                f"SSM parameter {name} not found (put the token there as a SecureString)"
            ) from None
        raise DuckDNSError(f"cannot read SSM parameter {name}: {code}") from None
    except BotoCoreError as exc:
        raise DuckDNSError(f"cannot read SSM parameter {name}: {type(exc).__name__}") from None
    token = str(response["Parameter"]["Value"]).strip()
    if not token:
        raise DuckDNSError(f"SSM parameter {name} is empty")
    return token


def redacted_url(endpoint: str, params: dict[str, str]) -> str:
    shown = {key: (REDACTED if key == "token" else value) for key, value in params.items()}
    return str(httpx.URL(endpoint, params=shown))


class _RedactToken(logging.Filter):
    """Keeps the token out of httpx/httpcore debug logs (they log request URLs)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg = message.replace(self.token, REDACTED)
            record.args = ()
        return True


def update(
    domain: str,
    token: str,
    ip: str | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
    timeout: float = 10.0,
) -> str:
    """GET <endpoint>?domains=..&token=..&ip=.. ; returns DuckDNS's answer ("OK").

    An empty ip lets DuckDNS use the address the request comes from.
    Raises DuckDNSError on "KO", an HTTP error or no answer.
    """
    params = {"domains": subdomains(domain), "token": token, "ip": ip or ""}
    shown = redacted_url(endpoint, params)
    guard = _RedactToken(token)
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    for logger in loggers:
        logger.addFilter(guard)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.get(endpoint, params=params)
    except httpx.HTTPError as exc:
        reason = str(exc).replace(token, REDACTED) or type(exc).__name__
        raise DuckDNSError(f"GET {shown} failed: {type(exc).__name__}: {reason}") from None
    finally:
        for logger in loggers:
            logger.removeFilter(guard)
    answer = response.text.strip().replace(token, REDACTED)
    first = answer.splitlines()[0] if answer else ""
    if response.status_code != 200:
        raise DuckDNSError(f"GET {shown} -> HTTP {response.status_code}")
    if first != "OK":
        raise DuckDNSError(
            f"GET {shown} -> {first or 'empty answer'} (DuckDNS refused: wrong token or domain?)"
        )
    log.info("GET %s -> OK", shown)
    return first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="duckdns-update", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--domain",
        default=os.environ.get("DUCKDNS_DOMAIN"),
        help="e.g. jobtory.duckdns.org (env DUCKDNS_DOMAIN)",
    )
    parser.add_argument(
        "--prefix",
        default=os.environ.get("SSM_PREFIX"),
        help="the environment's operators' SSM prefix, e.g. /jobtory/_ops/prod/ (env "
        "SSM_PREFIX); not the app's prefix, which the app loads whole",
    )
    parser.add_argument(
        "--parameter",
        default=os.environ.get("DUCKDNS_TOKEN_PARAMETER", TOKEN_PARAMETER),
        help="token parameter under the prefix, or a full /path (default DUCKDNS_TOKEN)",
    )
    parser.add_argument("--ip", default="", help="address to set (default: the caller's)")
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("DUCKDNS_ENDPOINT", DEFAULT_ENDPOINT),
        help="update URL (env DUCKDNS_ENDPOINT; tests point it at a local fake)",
    )
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if not args.domain:
        parser.error("--domain (or DUCKDNS_DOMAIN) is required")
    if not args.prefix and not args.parameter.startswith("/"):
        parser.error("--prefix (or SSM_PREFIX) is required")
    logging.basicConfig(level=logging.INFO, format="duckdns-update: %(message)s")
    for noisy in ("httpx", "httpcore", "botocore", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # they log URLs
    try:
        name = token_parameter_name(args.prefix or "/", args.parameter)
        token = token_from_ssm(name)
        update(args.domain, token, ip=args.ip, endpoint=args.endpoint, timeout=args.timeout)
    except DuckDNSError as exc:
        print(f"duckdns-update: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
