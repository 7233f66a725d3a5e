"""The one way to reach AWS: where (region, endpoint), whether that endpoint is an
emulator (an explicit setting, never guessed from the URL), sessions and clients with
retries, and the translation of botocore failures into one-line AwsErrors.

The emulator setting comes from the caller, else JOBTORY_AWS_EMULATOR, else the spec's
`aws.emulator` (the `local` environment: moto). An endpoint URL alone means a real AWS
API behind it (a VPC endpoint, a proxy): no emulator workaround ever runs there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)
from botocore.parsers import ResponseParserError

from jobtory_stack.errors import AwsError
from jobtory_stack.spec.constants import AWS_MAX_ATTEMPTS
from jobtory_stack.spec.model import Environment

EMULATOR_VARIABLE = "JOBTORY_AWS_EMULATOR"
EMULATORS = ("moto", "localstack")
DUMMY_CREDENTIALS = ("testing", "testing")  # what moto and LocalStack accept
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": AWS_MAX_ATTEMPTS},
    connect_timeout=10,
    read_timeout=60,
)
NO_RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 1})

# Called with every client made here: tests and the benchmark register botocore event
# handlers (count calls, inject faults).
CLIENT_HOOKS: list[Callable[[Any], None]] = []


@dataclass(frozen=True)
class Endpoint:
    """Where the AWS APIs are: None = AWS itself. `emulator` names the emulator behind
    `url` (moto, localstack), or None for a real AWS API."""

    url: str | None = None
    emulator: str | None = None

    @property
    def label(self) -> str:
        return f"{self.url} ({self.emulator})" if self.emulator else (self.url or "AWS")


def resolve_endpoint(
    env: Environment, flag: str | None = None, emulator: str | None = None
) -> Endpoint:
    """--endpoint-url, else AWS_ENDPOINT_URL (boto3's own variable, set inside compose),
    else the spec's aws.endpoint_url; the emulator: explicit, env variable, spec."""
    url = flag or os.environ.get("AWS_ENDPOINT_URL") or env.aws.endpoint_url
    kind = emulator or os.environ.get(EMULATOR_VARIABLE) or env.aws.emulator
    if kind and kind not in EMULATORS:
        raise AwsError(
            f"{EMULATOR_VARIABLE}={kind!r}: name one of {', '.join(EMULATORS)} or unset it"
        )
    if kind and not url:
        raise AwsError(
            f"the {kind} emulator needs an endpoint: pass --endpoint-url or set "
            "aws.endpoint_url in the spec"
        )
    return Endpoint(url, kind if url else None)


def known_regions() -> set[str]:
    session = boto3.session.Session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return regions


def check_regions(env: Environment) -> None:
    """Refuse a region AWS does not have before any call (the spec only checks its shape)."""
    known = known_regions()
    for where, region in (
        ("stack.region", env.region),
        ("alb.region", env.alb_region),
        ("certificate.region", env.certificate_region),
    ):
        if region not in known:
            raise AwsError(
                f"unknown AWS region {region!r} ({where} in the spec): "
                "use a region AWS offers, e.g. ap-northeast-2"
            )


_LOADER = botocore.loaders.create_loader()  # service models parsed once per process


def _botocore_session() -> botocore.session.Session:
    session = botocore.session.get_session()
    session.register_component("data_loader", _LOADER)
    return session


def make_session(region: str | None, endpoint: Endpoint) -> boto3.session.Session:
    """A session; on an emulator without configured credentials, its dummy ones."""
    try:
        session = boto3.session.Session(botocore_session=_botocore_session(), region_name=region)
        if endpoint.emulator and session.get_credentials() is None:
            session = boto3.session.Session(
                aws_access_key_id=DUMMY_CREDENTIALS[0],
                aws_secret_access_key=DUMMY_CREDENTIALS[1],
                botocore_session=_botocore_session(),
                region_name=region,
            )
    except ProfileNotFound as exc:
        raise AwsError(f"AWS profile not found ({exc}): check AWS_PROFILE") from None
    # boto3 appends its own data path to the (shared) loader on every session
    _LOADER.search_paths[:] = list(dict.fromkeys(_LOADER.search_paths))
    return session


def make_client(
    session: boto3.session.Session,
    service: str,
    region: str | None,
    endpoint: Endpoint,
    config: Config | None = None,
    first_hook: Callable[[Any], None] | None = None,
) -> Any:
    """A client with retries (or `config`), `first_hook`, then CLIENT_HOOKS."""
    client = session.client(
        service,  # type: ignore[call-overload]
        region_name=region,
        endpoint_url=endpoint.url,
        config=config or RETRY_CONFIG,
    )
    for hook in (first_hook, *CLIENT_HOOKS) if first_hook else CLIENT_HOOKS:
        hook(client)
    return client


def client_for(
    env: Environment, service: str, region: str | None = None, endpoint: Endpoint | None = None
) -> Any:
    """One client for `env` (its region unless `region`), outside a reconciler context."""
    endpoint = endpoint or resolve_endpoint(env)
    region = region or env.region
    return make_client(make_session(region, endpoint), service, region, endpoint)


# ---- errors --------------------------------------------------------------------------------

CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "AuthFailure",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "IncompleteSignature",
        "InvalidSignatureException",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "PriorRequestNotComplete",
        "SlowDown",
    }
)
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def explain(exc: BaseException) -> AwsError | None:
    """The one-line AwsError for a botocore failure; None for anything else."""
    if isinstance(exc, NoCredentialsError):
        return AwsError(
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY (an emulator needs none: pass --endpoint-url)"
        )
    if isinstance(exc, NoRegionError):
        return AwsError("no AWS region: set stack.region in the spec")
    if isinstance(exc, EndpointConnectionError):
        return AwsError(
            f"cannot reach the AWS endpoint {exc.kwargs.get('endpoint_url')}: "
            "is the emulator running / the network up?"
        )
    if isinstance(exc, ClientError):
        return _explain_client_error(exc)
    if isinstance(exc, BotoCoreError):
        return AwsError(f"AWS call failed: {str(exc).splitlines()[0]}")
    if isinstance(exc, ResponseParserError):
        return AwsError(
            "the endpoint answered with something that is not an AWS API response "
            "(an emulator gap or a proxy in the way?)"
        )
    return None


def _explain_client_error(exc: ClientError) -> AwsError:
    code = error_code(exc)
    op = exc.operation_name
    if code in CREDENTIAL_CODES:
        return AwsError(
            f"AWS rejected the credentials ({code}): check AWS_PROFILE / AWS_ACCESS_KEY_ID"
        )
    if code in THROTTLE_CODES:
        return AwsError(
            f"AWS kept throttling {op} ({code}) after {AWS_MAX_ATTEMPTS} attempts with "
            "backoff: wait a minute and re-run (apply resumes where it stopped)"
        )
    if code in DENIED_CODES:
        return AwsError(f"AWS denied {op} ({code}): the credentials lack permission for it")
    message = str(exc.response.get("Error", {}).get("Message", "")).splitlines()
    return AwsError(f"{op} failed ({code}): {message[0] if message else 'no detail'}")


@contextmanager
def aws_errors() -> Iterator[None]:
    """Translate botocore failures into one-line AwsErrors (after botocore's retries)."""
    try:
        yield
    except (BotoCoreError, ClientError, ResponseParserError) as exc:
        error = explain(exc)
        if error is None:
            raise
        raise error from None
