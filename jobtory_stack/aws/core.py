"""The small shared core of the reconciler.

- `Ctx`: the environment, its derived values, boto3 clients (endpoint + retries), the
  ids known so far (observed, or recorded by a change's handler: what `Ref`s resolve
  to), the keys an earlier change of the plan will produce (`planned`), the reporter,
  and a counter of mutating API calls (every operation not named Describe*/Get*/List*).
- tag helpers: every resource carries {"stack": ..., "env": ...}; that is ownership.
- bounded waits with progress (`wait_for`, on `ctx.sleep` / `ctx.clock`: tests inject
  both), `settle` for deletes AWS refuses while dependents drain, and `propagated` for
  calls AWS refuses until a new instance profile has propagated.

The plan model (Change, Ref, Plan) is aws.plan; the reporter aws.report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
)

from jobtory_stack.aws.client import (
    Endpoint,
    check_regions,
    error_code,
    make_client,
    make_session,
    resolve_endpoint,
)
from jobtory_stack.aws.plan import ADOPTED_TAG, Change, Ref, adopts, resolve
from jobtory_stack.aws.report import Reporter
from jobtory_stack.errors import AwsError
from jobtory_stack.spec.constants import (
    AWS_PROGRESS_SECONDS,
    AWS_WAIT_TIMEOUT,
    PROFILE_PROPAGATION_TIMEOUT,
)
from jobtory_stack.spec.derived import Derived, derive
from jobtory_stack.spec.model import Environment

if TYPE_CHECKING:
    from mypy_boto3_acm import ACMClient
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_rds import RDSClient
    from mypy_boto3_route53 import Route53Client
    from mypy_boto3_ssm import SSMClient

READ_PREFIXES = ("Describe", "Get", "List")


# ---- tags ----------------------------------------------------------------------------------


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """[{"Key": k, "Value": v}] (EC2, ELBv2, RDS, ACM, IAM, SSM all take this shape)."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_dict(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in tags or ()}


def owned(tags: Mapping[str, str], ownership: Mapping[str, str]) -> bool:
    return all(tags.get(k) == v for k, v in ownership.items())


def adopted(tags: Mapping[str, str]) -> bool:
    """Taken over by apply (it existed, untagged, before the stack): see plan.ADOPTED_TAG."""
    return tags.get(ADOPTED_TAG["Key"]) == ADOPTED_TAG["Value"]


# how a plan shows a take-over
ADOPTION_SHOWN = "tags: (none) -> stack, env, adopted=true (an existing resource, taken over)"


def adoption_tags(ownership: Mapping[str, str]) -> list[dict[str, str]]:
    """The tags apply writes on a resource it takes over: ownership + adopted=true."""
    return [*tag_list(ownership), dict(ADOPTED_TAG)]


# ---- the context ---------------------------------------------------------------------------


@dataclass
class Ctx:
    env: Environment
    endpoint: Endpoint = field(default_factory=Endpoint)
    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    wait_timeout: float = float(os.environ.get("JOBTORY_WAIT_TIMEOUT", AWS_WAIT_TIMEOUT))
    poll_seconds: float | None = None
    # a wait's status line at least this often, even unchanged
    progress_seconds: float = float(
        os.environ.get("JOBTORY_PROGRESS_SECONDS", AWS_PROGRESS_SECONDS)
    )
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    # the NS a domain's parent zone delegates it to (aws.delegation.delegated_ns when
    # None, except on an emulator, whose zones public DNS does not know)
    delegation: Callable[[str], list[str]] | None = field(default=None, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    ids: dict[str, str] = field(default_factory=dict)  # what Refs resolve to
    planned: set[str] = field(default_factory=set)  # ids an earlier planned change creates
    mutations: list[str] = field(default_factory=list)
    secret_values: dict[str, str] = field(default_factory=dict, repr=False)  # fetched this run
    secrets_file: Path | None = None  # the local replica's secrets (params family)
    read_only: bool = False  # plan/status: never write (not even the secrets file)
    release: str | None = None  # the release new ASG instances boot (scaling)
    artifact_url: str | None = None
    adopt_existing: bool = False  # a protected env's apply may take over untagged resources
    # destroy: what a family leaves in place, for a later family's deletions that depend
    # on it (a kept database keeps its password parameter)
    kept: set[str] = field(default_factory=set)
    _session: boto3.session.Session | None = None
    _clients: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    report: Reporter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # through `out` at each line: callers may swap `out` (migrate --check collects)
        self.report = Reporter(lambda line: self.out(line))

    @property
    def d(self) -> Derived:
        return derive(self.env)

    @property
    def tags(self) -> dict[str, str]:
        return self.d.tags

    @property
    def endpoint_url(self) -> str | None:
        return self.endpoint.url

    @property
    def emulator(self) -> bool:
        """An emulator is behind the endpoint (explicitly so: see aws.client)."""
        return self.endpoint.emulator is not None

    @property
    def poll(self) -> float:
        if self.poll_seconds is not None:
            return self.poll_seconds
        env_value = os.environ.get("JOBTORY_POLL_SECONDS")
        if env_value:
            return float(env_value)
        return 0.2 if self.emulator else 5.0

    def session(self) -> boto3.session.Session:
        if self._session is None:
            self._session = make_session(self.env.region, self.endpoint)
        return self._session

    def client(self, service: str, region: str | None = None, config: Config | None = None) -> Any:
        """A cached client with retries (or `config`), the call counter and CLIENT_HOOKS."""
        region = region or self.env.region
        key = (service, region, id(config) if config else 0)
        if key not in self._clients:
            self._clients[key] = make_client(
                self.session(),
                service,
                region,
                self.endpoint,
                config,
                first_hook=lambda c: c.meta.events.register("before-call", self._count),
            )
        return self._clients[key]

    def _count(self, model: Any, **_: Any) -> None:
        name = str(model.name)
        if not name.startswith(READ_PREFIXES):
            self.mutations.append(name)

    def ref(self, key: str) -> str | Ref:
        """An id: a Ref to what an earlier change of the plan (re)creates, else the one
        known now; a Ref too when unknown (applying it then fails, saying so)."""
        if key in self.planned or key not in self.ids:
            return Ref(key)
        return self.ids[key]

    def resolve(self, params: Any) -> Any:
        """A change's parameters with its Refs and Secrets filled in (just before a call)."""
        return resolve(params, self.ids, self.secret_values)

    # typed clients
    @property
    def ec2(self) -> EC2Client:
        return cast("EC2Client", self.client("ec2"))

    @property
    def rds(self) -> RDSClient:
        return cast("RDSClient", self.client("rds"))

    @property
    def ssm(self) -> SSMClient:
        return cast("SSMClient", self.client("ssm"))

    @property
    def route53(self) -> Route53Client:
        return cast("Route53Client", self.client("route53"))

    @property
    def acm(self) -> ACMClient:
        return cast("ACMClient", self.client("acm", self.env.certificate_region))

    @property
    def elbv2(self) -> ElasticLoadBalancingv2Client:
        return cast("ElasticLoadBalancingv2Client", self.client("elbv2", self.env.alb_region))

    @property
    def autoscaling(self) -> AutoScalingClient:
        return cast("AutoScalingClient", self.client("autoscaling"))

    @property
    def iam(self) -> IAMClient:
        return cast("IAMClient", self.client("iam"))

    def wait_for(
        self, what: str, check: Callable[[], str | None], timeout: float | None = None
    ) -> None:
        """Poll `check` (None = done, else a status) with progress lines; bounded."""
        limit = self.wait_timeout if timeout is None else timeout
        start = self.clock()
        last_status: str | None = None
        last_print = 0.0
        while True:
            status = check()
            if status is None:
                return
            elapsed = self.clock() - start
            if status != last_status or elapsed - last_print >= self.progress_seconds:
                self.report.progress(what, status, elapsed)
                last_status, last_print = status, elapsed
            if elapsed >= limit:
                raise AwsError(
                    f"timed out after {limit:.0f}s waiting for {what} (still {status}); "
                    "re-run apply later: it resumes where it stopped"
                )
            self.sleep(self.poll)


def refuse_takeovers(ctx: Ctx, changes: Iterable[Change]) -> None:
    """Before the first call: a protected environment takes over existing resources (an
    untagged one with the stack's name) only when asked (--adopt-existing)."""
    if not ctx.env.protected or ctx.adopt_existing:
        return
    taken = [f"{c.resource} {c.name}" for c in changes if adopts(c)]
    if taken:
        raise AwsError(
            f"{ctx.env.name} is protected and this would take over what the stack did not "
            f"create: {', '.join(taken)}; check they belong to {ctx.env.name} and pass "
            "--adopt-existing (they are tagged adopted=true: destroy keeps them unless "
            "--include-adopted)"
        )


def settle(
    ctx: Ctx,
    what: str,
    call: Callable[[], object],
    codes: frozenset[str] = frozenset({"DependencyViolation"}),
) -> None:
    """Run a delete AWS refuses while dependents drain (a deleted ALB's network interfaces,
    a certificate still attached for a minute), retrying within the wait bound."""

    def attempt() -> str | None:
        try:
            call()
        except ClientError as exc:
            if error_code(exc) in codes:
                return f"{error_code(exc)}, dependents still draining"
            raise
        return None

    ctx.wait_for(what, attempt)


PROFILE_NOT_YET = "invalid iam instance profile"  # AWS's words, in either error code


def profile_not_propagated(exc: ClientError) -> bool:
    """AWS refusing a new instance profile it has not propagated yet (seconds to minutes
    after CreateInstanceProfile): ValidationError (Auto Scaling) or
    InvalidParameterValue (EC2), "Invalid IAM Instance Profile name"."""
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    code = error_code(exc)
    return code in {"ValidationError", "InvalidParameterValue"} and PROFILE_NOT_YET in message


def propagated(ctx: Ctx, what: str, call: Callable[[], Any]) -> Any:
    """`call`, retried with backoff while AWS says the instance profile is not there yet
    (bounded: PROFILE_PROPAGATION_TIMEOUT, JOBTORY_PROFILE_TIMEOUT), with progress."""
    limit = float(os.environ.get("JOBTORY_PROFILE_TIMEOUT", PROFILE_PROPAGATION_TIMEOUT))
    start = ctx.clock()
    delay = ctx.poll
    while True:
        try:
            return call()
        except ClientError as exc:
            if not profile_not_propagated(exc):
                raise
            elapsed = ctx.clock() - start
            if elapsed >= limit:
                raise AwsError(
                    f"{what}: AWS still does not know the new instance profile after "
                    f"{limit:.0f}s ({error_code(exc)}); re-run apply: it resumes here"
                ) from None
            ctx.report.progress(what, "the new instance profile is propagating, retrying", elapsed)
            ctx.sleep(delay)
            delay = min(delay * 2, 30.0)


def new_ctx(
    env: Environment,
    endpoint_flag: str | None = None,
    out: Callable[[str], None] | None = None,
    emulator: str | None = None,
) -> Ctx:
    check_regions(env)
    ctx = Ctx(env, endpoint=resolve_endpoint(env, endpoint_flag, emulator))
    if out is not None:
        ctx.out = out
    return ctx
