"""`deploy.py migrate` against a real moto server, a real Caddy and the HAProxy ALB stand-in.

The whole flow runs from today's state (Caddy terminating TLS for jobtory.duckdns.org)
to the planned one, is killed after step 4 and resumed, with `--check` asked before,
in between and after, while a bounded request loop runs on the old and the new path.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import ssl
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import httpx
import pytest

from jobtory_stack.aws import params
from jobtory_stack.aws.core import new_ctx
from jobtory_stack.aws.delegation import parse_resolver
from jobtory_stack.caddy.admin import CaddyAdmin, bridge_config
from jobtory_stack.errors import MigrateError
from jobtory_stack.migrate.flow import (
    STEPS,
    Migration,
    check_all,
    check_caddy,
    new_migration,
    oauth_lines,
    run,
    run_caddy,
    with_mode,
)
from jobtory_stack.spec.derived import derive
from jobtory_stack.spec.model import Environment
from tests.alb.conftest import RunningAlb
from tests.helpers import ROOT
from tests.migrate.conftest import DUCKDNS, DirectCaddy, DnsResponder
from tests.request_loop import Path as LoopPath
from tests.request_loop import RequestLoop

pytestmark = [pytest.mark.aws, pytest.mark.caddy]

NEW_HOST = "jobtory.localhost"
REGISTRAR_NS = ["ns1.porkbun.com", "ns2.porkbun.com"]


class KillFlow(Exception):
    """Injected after a step: the process dying there."""


def states(m: Migration) -> dict[int, str]:
    return {step.number: state.label for step, state in check_all(m)}


# ---- the request loop: old path until the bridge, new path from then on ---------------------


def migration_loop(
    caddy: DirectCaddy, alb: RunningAlb, path: str = "/api/loop", echo: bool = True
) -> RequestLoop:
    """tests/request_loop.py's loop (<= 120 s, <= 12000 requests): `old` = HTTPS straight
    to Caddy with SNI/Host jobtory.duckdns.org (today's users), `new` = HTTPS through the
    ALB stand-in with Host jobtory.localhost. The switch comes when Caddy's bridge config
    is loaded (both paths served): the moment a user switches is any moment inside the
    bridge. With `echo`, a 200 must come from the echo upstream for this very path. With a
    single host there is no other target to drain it to during its final reload, so the
    ALB's 502 on an empty response (`alb_empty`) may happen; it is counted and reported."""
    return RequestLoop(
        old=LoopPath(caddy.site.https_port, DUCKDNS, ssl_context(str(caddy.ca_root()))),
        new=LoopPath(alb.config.https_port, NEW_HOST, alb.ssl_context()),
        url_path=path,
        ok=(lambda r: r.json()["path"] == path) if echo else (lambda r: True),
    )


def ssl_context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def watching_admin(loop: RequestLoop) -> Callable[[str], CaddyAdmin]:
    """CaddyAdmin whose load() flips the loop to the new path once the bridge is running."""

    class Watching(CaddyAdmin):
        def load(self, config: Any) -> bool:
            changed = super().load(config)
            servers = ((config or {}).get("apps", {}).get("http", {}) or {}).get("servers", {})
            if any(name.startswith("bridge_") for name in servers):
                loop.switch()
            return changed

    return Watching


def migration(
    env: Environment, caddy: DirectCaddy, dns: DnsResponder, lines: list[str], **kw: Any
) -> Migration:
    options: dict[str, Any] = {
        "spec_path": ROOT / "stack.toml",
        "resolver": parse_resolver(dns.address),
        "verify_delegation": True,
        "caddy_admins": (caddy.admin_address,),
        "site_overrides": caddy.overrides,
        "caddy_linger": 0.5,
        "skip_hosts": True,
        "dns_timeout": 1.0,
    }
    options.update(kw)
    m = new_migration(env, None, lines.append, **options)
    m.ctx.wait_timeout = 60
    return m


# ---- the flow ------------------------------------------------------------------------------


def test_migrate_direct_to_alb_resumes_after_a_kill_and_drops_nothing(
    aws_env: str,
    local_env: Environment,
    direct_caddy: DirectCaddy,
    dns_responder: DnsResponder,
    start_alb: Callable[..., RunningAlb],
    moto_host: Callable[[Environment], str],
) -> None:
    host_id = moto_host(local_env)
    # today's SSM values: the env in direct mode, URLs on the DuckDNS name
    params.sync(new_ctx(with_mode(local_env, "direct"), None, lambda line: None))
    ssm = boto3.client("ssm", endpoint_url=aws_env)
    allowed = f"{local_env.ssm_prefix}DJANGO_ALLOWED_HOSTS"
    assert ssm.get_parameter(Name=allowed)["Parameter"]["Value"] == DUCKDNS
    dns_responder.records[NEW_HOST] = list(REGISTRAR_NS)  # the registrar's own NS, for now
    alb = start_alb(n_targets=0, extra_targets=(f"127.0.0.1:{direct_caddy.site.http_port}",))
    loop = migration_loop(direct_caddy, alb)
    lines: list[str] = []
    m = migration(local_env, direct_caddy, dns_responder, lines, admin_factory=watching_admin(loop))
    started = time.monotonic()
    loop.start()
    try:
        # before: only the domain step is done; Caddy reports direct mode
        before = check_all(m)
        assert {s.number: st.label for s, st in before} == {
            1: "done",
            2: "todo",
            3: "todo",
            4: "todo",
            5: "todo",
            6: "todo",
            7: "todo",
            8: "manual",
        }
        assert "direct" in before[4][1].detail
        assert f"DJANGO_ALLOWED_HOSTS={DUCKDNS}" in before[6][1].detail

        # 1st run: the zone is created and its NS printed, but the resolver still answers
        # the registrar's NS: the flow stops at step 2 and says what to set
        with pytest.raises(MigrateError, match="delegation is not in place"):
            run(m)
        route53 = boto3.client("route53", endpoint_url=aws_env)
        zone = route53.list_hosted_zones_by_name(DNSName=f"{NEW_HOST}.")["HostedZones"][0]
        zone_ns = route53.get_hosted_zone(Id=zone["Id"])["DelegationSet"]["NameServers"]
        assert all(f"    {ns.rstrip('.')}" in lines for ns in zone_ns)
        assert states(m)[2] == "todo"

        # the registrar now delegates to Route 53; 2nd run is killed after step 4
        dns_responder.records[NEW_HOST] = [ns.rstrip(".") for ns in zone_ns]
        ran: list[int] = []

        def kill_after_4(number: int) -> None:
            ran.append(number)
            if number == 4:
                raise KillFlow

        with pytest.raises(KillFlow):
            run(m, after_step=kill_after_4)
        assert ran == [3, 4]  # step 2's check is done now: the delegation answers
        assert "steps 1-2 are done: resuming at step 3" in lines
        assert states(m) == {
            1: "done",
            2: "done",
            3: "done",
            4: "done",
            5: "todo",
            6: "todo",
            7: "todo",
            8: "manual",
        }
        assert direct_caddy.mode() == "direct" and loop.path == "old"

        # a fresh process re-runs: it resumes at step 5 and completes
        lines.clear()
        again = migration(
            local_env, direct_caddy, dns_responder, lines, admin_factory=watching_admin(loop)
        )
        during: dict[int, str] = {}

        def record_allowed(number: int) -> None:
            during[number] = ssm.get_parameter(Name=allowed)["Parameter"]["Value"]

        assert run(again, after_step=record_allowed) == [5, 6, 7, 8]
        # the app accepts both names while Caddy switches; step 7 leaves only the new ones
        assert during[5] == f"{DUCKDNS},{NEW_HOST},www.{NEW_HOST}"
        assert during[7] == f"{NEW_HOST},www.{NEW_HOST}"
        assert "steps 1-4 are done: resuming at step 5" in lines
        time.sleep(1.0)  # a second of traffic on the new path after the last change
    finally:
        loop.finish()
    elapsed = time.monotonic() - started

    # after: every automated step is done, the manual one says so
    assert states(again) == {i: "done" for i in range(1, 8)} | {8: "manual"}
    assert direct_caddy.mode() == "alb"

    # forced from step 1 again: every step runs, and none changes anything
    lines.clear()
    rerun = migration(local_env, direct_caddy, dns_responder, lines)
    assert run(rerun, from_step=1) == list(range(1, 9))
    assert rerun.ctx.mutations == [], rerun.ctx.mutations
    assert "  caddy " + direct_caddy.admin_address + ": already alb" in lines

    print(
        f"migrate loop: {loop.total} requests in {elapsed:.1f}s {dict(loop.results)}; "
        f"retried once: {loop.retries}; ALB 502 on an empty response: {loop.alb_empty}"
    )
    assert not loop.failures, Counter(loop.failures).most_common(5)
    assert loop.alb_empty <= 2
    assert loop.count("old") > 20 and loop.count("new") > 20, dict(loop.results)
    assert loop.retries <= max(5, loop.total // 50)

    # the AWS side: ALB with 80 -> 443 and HTTPS on the ISSUED cert, today's host a target
    elbv2 = boto3.client("elbv2", endpoint_url=aws_env)
    d = derive(again.env)
    lb = elbv2.describe_load_balancers(Names=[d.resource_name("alb")])["LoadBalancers"][0]
    listeners = {
        int(x["Port"]): x
        for x in elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    }
    assert listeners[80]["DefaultActions"][0]["RedirectConfig"]["StatusCode"] == "HTTP_301"
    cert_arn = listeners[443]["Certificates"][0]["CertificateArn"]
    acm = boto3.client("acm", endpoint_url=aws_env)
    cert = acm.describe_certificate(CertificateArn=cert_arn)["Certificate"]
    assert cert["Status"] == "ISSUED" and cert_arn.split(":")[3] == "ap-northeast-2"
    assert sorted(cert["SubjectAlternativeNames"]) == sorted(d.domain_hosts)
    tg = elbv2.describe_target_groups(Names=[d.resource_name("tg")])["TargetGroups"][0]
    targets = elbv2.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])
    assert host_id in {t["Target"]["Id"] for t in targets["TargetHealthDescriptions"]}
    asg = boto3.client("autoscaling", endpoint_url=aws_env).describe_auto_scaling_groups(
        AutoScalingGroupNames=[d.resource_name("asg")]
    )["AutoScalingGroups"][0]
    assert (asg["MinSize"], asg["MaxSize"]) == (local_env.asg.min_size, local_env.asg.max_size)

    # SSM holds the new URLs
    prefix = local_env.ssm_prefix
    got = {
        p["Name"][len(prefix) :]: p["Value"]
        for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=prefix)
        for p in page["Parameters"]
    }
    assert got["FRONTEND_BASE_URL"] == f"https://{NEW_HOST}:8443"
    assert got["VITE_API_BASE"] == f"https://{NEW_HOST}:8443/api"
    assert got["GOOGLE_REDIRECT_URI"] == f"https://{NEW_HOST}:8443/auth/google/callback"
    assert got["DJANGO_ALLOWED_HOSTS"] == f"{NEW_HOST},www.{NEW_HOST}"

    # HTTPS through the ALB stand-in reaches the app through Caddy in alb mode
    with httpx.Client(verify=alb.ssl_context(), timeout=5, trust_env=False) as client:
        r = client.get(
            f"{alb.https_url}/auth/google/login",
            headers={"Host": NEW_HOST},
            extensions={"sni_hostname": NEW_HOST},
        )
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert seen["X-Forwarded-Proto"] == "https" and seen["Host"] == NEW_HOST

    # step 8 printed what to add and what to remove
    assert f"      add     https://{NEW_HOST}:8443/auth/google/callback" in lines
    assert f"      remove  https://{DUCKDNS}:8443/auth/google/callback" in lines


# ---- smaller checks ------------------------------------------------------------------------


def test_cloudflare_registrar_is_refused_with_the_reason(local_env: Environment) -> None:
    domain = local_env.domain.model_copy(update={"registrar": "cloudflare"})
    env = local_env.__class__(local_env.name, local_env.doc.model_copy(update={"domain": domain}))
    m = new_migration(env, "http://127.0.0.1:9", lambda line: None)
    state = STEPS[0].check(m)
    assert not state.done and "Cloudflare Registrar requires Cloudflare DNS" in state.detail
    with pytest.raises(MigrateError, match="cannot have its NS delegated to Route 53"):
        run(m)  # step 1 is checked first, so nothing else is touched


def test_oauth_lines_add_new_and_remove_duckdns(local_env: Environment) -> None:
    m = new_migration(local_env, "http://127.0.0.1:9", lambda line: None)
    text = "\n".join(oauth_lines(m))
    assert f"add     https://{NEW_HOST}:8443\n" in text
    assert f"add     https://www.{NEW_HOST}:8443\n" in text
    assert f"remove  https://{DUCKDNS}:8443\n" in text
    assert f"remove  https://{DUCKDNS}:8443/auth/google/callback" in text
    assert "cannot change the console" in text


def test_step7_waits_for_a_host_deploy_after_the_ssm_change(
    aws_env: str, local_env: Environment
) -> None:
    """Without --skip-hosts, step 7 is done only when a host deploy (the audit log) ran
    after the SSM values changed: the hosts' env files are re-rendered from SSM."""
    from datetime import UTC, datetime, timedelta

    from jobtory_stack.aws import params
    from jobtory_stack.hosts.lock import AuditRecord, append_audit, parameter_names

    m = new_migration(local_env, None, lambda line: None, skip_hosts=False)
    step7 = STEPS[6]
    assert not step7.check(m).done
    params.sync(m.ctx)
    state = step7.check(m)
    assert not state.done and "no host deploy since" in state.detail
    _, audit = parameter_names(local_env.stack_name, local_env.name)
    soon = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ssm = boto3.client("ssm", endpoint_url=aws_env)
    record = AuditRecord("t@h", "local", "r1", soon, 1.0, "failed: x", ["ec2-1"], 0)
    append_audit(ssm, audit, record)
    assert not step7.check(m).done  # a failed deploy does not count
    record = AuditRecord("t@h", "local", "r1", soon, 1.0, "ok", ["ec2-1", "ec2-2"], 3)
    append_audit(ssm, audit, record)
    state = step7.check(m)
    assert state.done and "ec2-1, ec2-2" in state.detail


def test_step5_finishes_a_bridge_left_by_a_stopped_run(
    aws_env: str,
    local_env: Environment,
    direct_caddy: DirectCaddy,
    dns_responder: DnsResponder,
) -> None:
    lines: list[str] = []
    m = migration(local_env, direct_caddy, dns_responder, lines)
    # a run killed inside step 5: the host serves both ways (bridge) and nothing else
    with CaddyAdmin(direct_caddy.admin_address) as admin:
        current = admin.config("")
        final = admin.adapt_site(m.target_site(current["admin"]["listen"]))
        admin.load(bridge_config(alb=final, direct=current))
    assert not check_caddy(m).done
    run_caddy(m)
    assert direct_caddy.mode() == "alb"
    assert any("bridged already (by an earlier run)" in line for line in lines), lines
    assert check_caddy(m).done
