"""`deploy.py migrate`: the deployment guideline's eight planned steps as one resumable flow.

From today's production (one host, Caddy terminating TLS for `<duckdns_name>.duckdns.org`,
`caddy.mode = "direct"`) to the planned one (the domain in Route 53, an ACM certificate
in the ALB's region, the ALB in front, Caddy on plain :80, an ASG, SSM values and OAuth
URIs on the new domain; `caddy.mode = "alb"`).

Every step is a pair: `check(m) -> StepState` reads LIVE state (Route 53, ACM, ELBv2,
the Caddy admin API, SSM, the deploy audit log) and `run(m)` converges it. There is no
local state file, so `--check` is truthful by construction, and a re-run resumes at the
first step whose check is not done (`--from-step N` forces the start). Steps 2-4 and 6
reuse the AWS reconcilers' family functions (dns, loadbalancer, network, scaling,
params); step 5 uses the Caddy admin helper's zero-drop `switch_mode`; step 7 the
rolling host deploy (`hosts.rolling.deploy`). Step 8 only prints: nobody can change the Google
console from here.

Runbook: docs/runbook-migrate.md.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobtory_stack.aws import dns, loadbalancer, network, params, reconcile, scaling
from jobtory_stack.aws.client import aws_errors
from jobtory_stack.aws.core import Ctx, new_ctx, tag_list
from jobtory_stack.aws.delegation import delegated_ns, normalize_ns
from jobtory_stack.aws.plan import Change
from jobtory_stack.caddy.admin import CaddyAdmin, bridge_config, config_mode
from jobtory_stack.errors import CaddyError, HostsError, MigrateError
from jobtory_stack.hosts.balancers import Balancer, ElbBalancer
from jobtory_stack.hosts.lock import parameter_names, read_audit
from jobtory_stack.hosts.rolling import deploy
from jobtory_stack.hosts.settings import DeployOptions
from jobtory_stack.migrate.guideline import CLOUDFLARE_REFUSAL, STEP_NAMES
from jobtory_stack.render.caddyfile import CaddySite, Mode
from jobtory_stack.render.sites import host_site
from jobtory_stack.spec.constants import CADDY_ADMIN_DEFAULT
from jobtory_stack.spec.derived import Derived, derive
from jobtory_stack.spec.model import Environment

# ---- the migration context ---------------------------------------------------------------


def with_mode(env: Environment, mode: str) -> Environment:
    """The same environment with `caddy.mode` replaced (the spec file is not changed)."""
    caddy = env.doc.caddy.model_copy(update={"mode": mode})
    return replace(env, doc=env.doc.model_copy(update={"caddy": caddy}))


@dataclass(frozen=True)
class StepState:
    done: bool
    detail: str
    manual: bool = False  # cannot be checked from here (step 8: the Google console)

    @property
    def label(self) -> str:
        return "manual" if self.manual else ("done" if self.done else "todo")


@dataclass
class Migration:
    """Everything the steps need. `ctx` is the reconciler context of the TARGET
    environment (the spec with caddy.mode = "alb"); `old` is the same environment in
    direct mode (today's URLs on the DuckDNS name)."""

    ctx: Ctx
    old: Environment
    spec_path: Path | None = None
    resolver: tuple[str, int] | None = None
    verify_delegation: bool = False
    caddy_admins: tuple[str, ...] = ()
    site_overrides: dict[str, Any] = field(default_factory=dict)
    admin_factory: Callable[[str], CaddyAdmin] = CaddyAdmin
    caddy_linger: float = 2.0
    caddy_cert_timeout: float = 60.0
    skip_hosts: bool = False
    hosts_options: dict[str, Any] = field(default_factory=dict)
    # How hosts pick up changed SSM values. None: the rolling host deploy (hosts.deploy,
    # checked through its audit log). A callable replaces it (tests, custom fleets); its
    # effect cannot be checked from here, and step 7's check says so.
    host_restart: Callable[[Migration], None] | None = None
    # The load balancer as the traffic sees it (health, drain, restore). None: the ELBv2
    # target group. The fleet replica: its ALB stand-in (the emulator only models it).
    balancer: Balancer | None = None
    dns_timeout: float = 3.0
    spec_mode: str = "alb"  # caddy.mode as the spec file says (not changed by migrate)

    @property
    def env(self) -> Environment:
        return self.ctx.env

    @property
    def new(self) -> Derived:
        return derive(self.env)

    @property
    def was(self) -> Derived:
        return derive(self.old)

    def out(self, line: str) -> None:
        self.ctx.report.line(line)

    def target_site(self, admin_listen: str) -> CaddySite:
        """The alb-mode site of a host (as `deploy.py hosts` renders it), keeping the
        admin address Caddy listens on now (not the tunnel's end that reaches it)."""
        site = host_site(self.env, mode="alb")
        return replace(site, admin=admin_listen, **self.site_overrides)


def new_migration(
    env: Environment,
    endpoint_url: str | None = None,
    output: Callable[[str], None] | None = None,
    **options: Any,
) -> Migration:
    """A Migration for `env` as loaded from the spec (whatever its caddy.mode says)."""
    if not env.caddy.duckdns_name:
        raise MigrateError(
            "caddy.duckdns_name: required for migrate (today's host name "
            "<duckdns_name>.duckdns.org is where the migration starts)"
        )
    ctx = new_ctx(with_mode(env, "alb"), endpoint_url, output)
    return Migration(ctx=ctx, old=with_mode(env, "direct"), spec_mode=env.caddy.mode, **options)


# ---- shared look-ups ----------------------------------------------------------------------


def prime_ids(ctx: Ctx) -> list[Change]:
    """Observe the network (ids of the VPC, subnets, groups) and return its pending changes."""
    return network.plan(ctx)


def current_hosts(ctx: Ctx) -> list[str]:
    """Running instances that carry the environment's tags: today's hosts (and ASG ones)."""
    filters: list[Any] = [{"Name": f"tag:{k}", "Values": [v]} for k, v in ctx.tags.items()]
    filters.append({"Name": "instance-state-name", "Values": ["running"]})
    ids: list[str] = []
    for page in ctx.ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            ids.extend(i["InstanceId"] for i in reservation["Instances"])
    return sorted(ids)


def registered_targets(ctx: Ctx, tg_arn: str) -> dict[str, str]:
    return ElbBalancer(ctx.elbv2, tg_arn).health()


def ssm_values(ctx: Ctx, names: Sequence[str]) -> dict[str, tuple[str, datetime | None]]:
    full = [ctx.d.parameter_name(n) for n in names]
    found: dict[str, tuple[str, datetime | None]] = {}
    for i in range(0, len(full), 10):  # GetParameters takes 10 names at a time
        answer = ctx.ssm.get_parameters(Names=full[i : i + 10], WithDecryption=False)
        for p in answer["Parameters"]:
            short = p["Name"][len(ctx.env.ssm_prefix) :]
            found[short] = (p["Value"], p.get("LastModifiedDate"))
    return found


# ---- the steps ----------------------------------------------------------------------------


def check_domain(m: Migration) -> StepState:
    d = m.env.domain
    if d.registrar == "cloudflare":
        return StepState(False, f"refused: {CLOUDFLARE_REFUSAL}")
    if d.apex.endswith("duckdns.org"):
        return StepState(False, f"domain.apex {d.apex} is a DuckDNS name: buy the new domain")
    return StepState(True, f"{d.apex} at {d.registrar}: NS can be delegated to Route 53")


def run_domain(m: Migration) -> None:
    state = check_domain(m)
    if not state.done:
        raise MigrateError(f"step 1 (domain): {state.detail.removeprefix('refused: ')}")
    m.out(f"  {state.detail}")


def observed_delegation(m: Migration) -> list[str]:
    """The apex's NS as its parent zone delegates them (or as --resolver answers);
    a DnsError (a MigrateError) names the server that failed."""
    return delegated_ns(m.env.domain.apex, m.resolver, timeout=m.dns_timeout)


def check_zone(m: Migration) -> StepState:
    ctx = m.ctx
    zid, owned = dns.find_zone(ctx, dns.fqdn(m.env.domain.apex))
    if zid is None:
        return StepState(False, f"no Route 53 hosted zone for {m.env.domain.apex}")
    if not owned:
        return StepState(False, f"zone {zid} exists but is not tagged as this stack's")
    zone_ns = normalize_ns(
        ctx.route53.get_hosted_zone(Id=zid).get("DelegationSet", {}).get("NameServers", [])
    )
    if not m.verify_delegation:
        return StepState(
            True,
            f"zone {zid}; NS {' '.join(zone_ns)} (delegation not verified: --verify-delegation)",
        )
    try:
        seen = observed_delegation(m)
    except MigrateError as exc:
        return StepState(False, f"zone {zid} exists; delegation unknown: {exc}")
    if seen != zone_ns:
        return StepState(
            False,
            f"zone {zid} exists, but the resolver answers NS [{' '.join(seen) or 'none'}] "
            f"for {m.env.domain.apex}; the registrar must list {' '.join(zone_ns)}",
        )
    return StepState(True, f"zone {zid}; delegation verified: NS {' '.join(zone_ns)}")


def run_zone(m: Migration) -> None:
    ctx = m.ctx
    name = dns.fqdn(m.env.domain.apex)
    zid, owned = dns.find_zone(ctx, name)
    if zid is None:
        zone = ctx.route53.create_hosted_zone(
            Name=name,
            CallerReference=f"{ctx.d.resource_name('zone')}-{uuid.uuid4()}",
            HostedZoneConfig={"Comment": f"{ctx.env.stack_name} {ctx.env.name}"},
        )
        zid = dns.zone_id(zone["HostedZone"]["Id"])
        m.out(f"  + route53_zone {name} ({zid})")
    if not owned:
        ctx.route53.change_tags_for_resource(
            ResourceType="hostedzone",
            ResourceId=zid,
            AddTags=tag_list(ctx.tags),  # type: ignore[arg-type]
        )
    zone_ns = normalize_ns(
        ctx.route53.get_hosted_zone(Id=zid).get("DelegationSet", {}).get("NameServers", [])
    )
    m.out(
        f"  set these NS records at the registrar ({m.env.domain.registrar}) for "
        f"{m.env.domain.apex}:"
    )
    for ns in zone_ns:
        m.out(f"    {ns}")
    if m.verify_delegation:
        seen = observed_delegation(m)
        if seen != zone_ns:
            raise MigrateError(
                f"step 2 (hosted zone): the delegation is not in place yet: the resolver "
                f"answers NS [{' '.join(seen) or 'none'}] for {m.env.domain.apex}; set "
                f"{' '.join(zone_ns)} at {m.env.domain.registrar}, wait for the change to "
                "propagate (the TLD's NS TTL, up to 48 h), then re-run"
            )
        m.out("  delegation verified")


def check_certificate(m: Migration) -> StepState:
    ctx = m.ctx
    want = dns.desired(ctx)
    have = dns.observe(ctx, want)
    names = ", ".join(want.cert_names)
    region = ctx.env.certificate_region
    if have.cert_arn is None:
        return StepState(False, f"no ACM certificate for {names} in {region}")
    missing = dns.missing_validation(have)
    if missing:
        return StepState(False, f"validation records missing in the zone: {', '.join(missing)}")
    if have.cert_status != "ISSUED":
        return StepState(False, f"certificate {have.cert_status} for {names} in {region}")
    return StepState(True, f"ISSUED in {region} for {names}; validation records in the zone")


def run_certificate(m: Migration) -> None:
    if m.env.certificate_region != m.env.alb_region:  # the spec refuses this; be explicit
        raise MigrateError("the certificate must be in the ALB's region")
    reconcile.execute(m.ctx, dns.plan(m.ctx))


def check_loadbalancer(m: Migration) -> StepState:
    ctx = m.ctx
    net = prime_ids(ctx)
    if net:
        return StepState(False, f"the network needs {len(net)} change(s) first")
    dns.observe(ctx, dns.desired(ctx))  # the certificate's ARN for the listener
    pending = loadbalancer.plan(ctx)
    if pending:
        return StepState(
            False, "ALB: " + "; ".join(f"{c.action} {c.resource} {c.name}" for c in pending)
        )
    aliases = dns.alias_plan(ctx)
    if aliases:
        return StepState(False, f"{len(aliases)} alias record(s) to the ALB missing")
    targets = registered_targets(ctx, ctx.ids["tg"])
    missing = [i for i in current_hosts(ctx) if i not in targets]
    if missing:
        return StepState(False, f"hosts not in the target group: {', '.join(missing)}")
    return StepState(
        True,
        f"{ctx.d.resource_name('alb')} ({ctx.ids.get('alb_dns')}): 80 -> 301 https, "
        f"443 HTTPS on the certificate; target group {ctx.d.resource_name('tg')} "
        f"with {len(targets)} target(s)",
    )


def run_loadbalancer(m: Migration) -> None:
    ctx = m.ctx
    net = prime_ids(ctx)
    if net:
        m.out(f"  network: {len(net)} change(s) (the ALB's subnets and security groups)")
        reconcile.execute(ctx, net)
    have = dns.observe(ctx, dns.desired(ctx))
    if have.cert_status != "ISSUED":
        raise MigrateError("step 4 needs an ISSUED certificate: run step 3 first")
    reconcile.execute(ctx, loadbalancer.plan(ctx))
    reconcile.execute(ctx, dns.alias_plan(ctx))
    tg = ctx.ids["tg"]
    targets = registered_targets(ctx, tg)
    missing = [i for i in current_hosts(ctx) if i not in targets]
    if missing:
        ctx.elbv2.register_targets(
            TargetGroupArn=tg, Targets=[{"Id": i, "Port": 80} for i in missing]
        )
        for i in missing:
            m.out(f"  + target {i}:80 in {ctx.d.resource_name('tg')}")
    if not targets and not missing:
        m.out("  no running host carries the env's tags: the ASG (step 6) adds its own")


def check_caddy(m: Migration) -> StepState:
    if not m.caddy_admins:
        return StepState(
            False, "no Caddy admin address given (--caddy-admin ADDR, one per host): unknown"
        )
    modes: list[str] = []
    done = True
    for address in m.caddy_admins:
        try:
            with m.admin_factory(address) as admin:
                mode = config_mode(admin.config("")) or "empty"
        except CaddyError as exc:
            mode, done = f"unreachable ({exc})", False
        done = done and mode == "alb"
        modes.append(f"{address}: {mode}")
    return StepState(done, "; ".join(modes))


def run_caddy(m: Migration) -> None:
    """Every host to alb mode through its admin API, no restart, nothing refused.

    1. host by host: a bridge config (the alb server on :80 + the direct HTTPS site), held
       until the balancer sees one more healthy target (that host's: the new path serves
       it), so today's path keeps working meanwhile;
    2. after `caddy_linger` s (clients just redirected to https finish), host by host:
       the final alb config; while another target serves, the host is drained first (a
       reload can close an idle keep-alive connection the balancer is about to reuse,
       which an ALB answers with 502), and put back after."""
    if not m.caddy_admins:
        raise MigrateError(
            "step 5 needs the Caddy admin API of every host: --caddy-admin ADDR (repeat "
            "it; e.g. `ssh -N -L 127.0.0.1:2019:/run/jobtory-caddy/admin.sock admin@host` "
            "first, then --caddy-admin 127.0.0.1:2019)"
        )
    if not check_caddy(m).done:
        widen_app_hosts(m)
    prime_ids(m.ctx)
    tg = loadbalancer.observe(m.ctx, loadbalancer.desired(m.ctx)).tg_arn
    balancer = m.balancer or (ElbBalancer(m.ctx.elbv2, tg) if tg else None)
    bridged: list[tuple[str, Any, str | None]] = []  # admin, final config, balancer target
    for address in m.caddy_admins:
        step = bridge_host(m, address, balancer)
        if step is not None:
            bridged.append(step)
    if bridged:
        time.sleep(m.caddy_linger)
    for address, final, target in bridged:
        finish_host(m, balancer, address, final, target)
    if tg:
        wait_targets_healthy(m, tg)


def bridge_host(
    m: Migration, address: str, balancer: Balancer | None
) -> tuple[str, Any, str | None] | None:
    """Pass 1 for one host: the bridge config, held until the balancer serves the host.
    Returns what pass 2 needs, or None when the host needs no pass 2."""
    with m.admin_factory(address) as admin:
        current = admin.config("")
        before = config_mode(current) or "empty"
        listen = ((current or {}).get("admin") or {}).get("listen") or CADDY_ADMIN_DEFAULT
        final = admin.adapt_site(m.target_site(str(listen)))
        if current == final:
            m.out(f"  caddy {address}: already alb")
            return None
        if before != "direct":  # nothing served on the old path here: straight to alb
            admin.load(final)
            m.out(f"  caddy {address}: {before} -> alb")
            return None
        servers = ((current or {}).get("apps", {}).get("http", {}) or {}).get("servers", {})
        if any(name.startswith("bridge_") for name in servers):  # a run stopped here
            m.out(f"  caddy {address}: bridged already (by an earlier run)")
            return (address, final, None)
        seen = healthy_targets(balancer)
        admin.load(bridge_config(alb=final, direct=current))
        try:
            target = wait_one_more_healthy(m, balancer, seen)
        except BaseException:  # a timeout or Ctrl-C: today's path keeps serving
            admin.load(current)
            raise
    serving = f"; the balancer serves it as {target}" if target else ""
    m.out(f"  caddy {address}: bridge (alb on :80 + direct https){serving}")
    return (address, final, target)


def finish_host(
    m: Migration, balancer: Balancer | None, address: str, final: Any, target: str | None
) -> None:
    """Pass 2 for one host: the final alb config, drained while another target serves."""
    drain = balancer if target and healthy_targets(balancer) - {target} else None
    with balancer_errors():
        if drain and target:
            drain.drain(target)
        with m.admin_factory(address) as admin:
            admin.load(final)
        if drain and target:
            drain.restore(target, timeout=m.ctx.wait_timeout)
    drained = f", drained from {drain.name} meanwhile" if drain else ""
    m.out(f"  caddy {address}: direct -> alb (plain :80, no restart{drained})")


@contextmanager
def balancer_errors() -> Iterator[None]:
    try:
        yield
    except HostsError as exc:
        raise MigrateError(f"load balancer: {exc}") from None


def target_health(m: Migration, tg: str) -> dict[str, str]:
    with balancer_errors():
        return (m.balancer or ElbBalancer(m.ctx.elbv2, tg)).health()


def healthy_targets(balancer: Balancer | None) -> set[str]:
    if balancer is None:
        return set()
    with balancer_errors():
        return {t for t, state in balancer.health().items() if state == "healthy"}


def wait_one_more_healthy(m: Migration, balancer: Balancer | None, seen: set[str]) -> str | None:
    """Until a target beyond `seen` passes the balancer's health checks (the host just
    bridged); its id. None when no balancer or no registered target can be waited for."""
    if balancer is None:
        return None
    found: list[str] = []

    def check() -> str | None:
        with balancer_errors():
            states = balancer.health()
        if not set(states) - seen:  # every registered target serves already (or none)
            return None
        new = sorted(t for t, state in states.items() if state == "healthy" and t not in seen)
        if new:
            found.extend(new[:1])
            return None
        return ", ".join(f"{t} {state}" for t, state in sorted(states.items()))

    m.ctx.wait_for("the bridged host to pass the load balancer's health checks", check)
    return found[0] if found else None


TRANSITION_PARAMETERS = ("DJANGO_ALLOWED_HOSTS", "DJANGO_CSRF_TRUSTED_ORIGINS")


def widen_app_hosts(m: Migration) -> None:
    """Before Caddy serves the new names: let the app accept the old AND the new ones.

    Requests on the new domain reach Django as soon as Caddy is in alb mode, but its
    ALLOWED_HOSTS / CSRF origins (SSM, read at start) name only the DuckDNS host until
    step 7. So the two lists get the new names added (nothing removed), and the hosts
    are rolled (unless --skip-hosts); step 7 writes the final lists."""
    have = ssm_values(m.ctx, TRANSITION_PARAMETERS)
    changed = []
    for name in TRANSITION_PARAMETERS:
        current = have.get(name, ("", None))[0]
        items = [x for x in current.split(",") if x]
        wanted = items + [x for x in m.new.parameters[name].split(",") if x not in items]
        if wanted != items:
            params.put(m.ctx, name, ",".join(wanted), False, name in have, True)
            m.out(f"  {name}: {current or '(unset)'} -> {','.join(wanted)} (old and new)")
            changed.append(name)
    if not changed:
        return
    if m.skip_hosts:
        m.out(
            "  hosts NOT restarted (--skip-hosts): the app accepts the new names after its restart"
        )
        return
    time.sleep(1.0)
    roll_hosts(m, "direct")  # Caddy is switched right after, through its admin API


def wait_targets_healthy(m: Migration, tg: str) -> None:
    """After the switch the ALB's health checks get 200 instead of a redirect."""

    def check() -> str | None:
        states = target_health(m, tg)
        bad = {i: s for i, s in states.items() if s != "healthy"}
        return None if not bad else ", ".join(f"{i} {s}" for i, s in sorted(bad.items()))

    m.ctx.wait_for("the target group's targets to be healthy", check)


def check_scaling(m: Migration) -> StepState:
    ctx = m.ctx
    prime_ids(ctx)
    loadbalancer.observe(ctx, loadbalancer.desired(ctx))
    asg = ctx.env.asg
    pending = scaling.plan(ctx)
    if pending:
        return StepState(False, "; ".join(f"{c.action} {c.resource} {c.name}" for c in pending))
    return StepState(
        True,
        f"launch template, ASG {ctx.d.resource_name('asg')} (min {asg.min_size}, "
        f"max {asg.max_size}) and the target-tracking policy ({asg.target_cpu_percent}% CPU)",
    )


def run_scaling(m: Migration) -> None:
    ctx = m.ctx
    prime_ids(ctx)
    lb = loadbalancer.observe(ctx, loadbalancer.desired(ctx))
    if lb.tg_arn is None:
        raise MigrateError("step 6 needs the target group: run step 4 first")
    reconcile.execute(ctx, scaling.plan(ctx))


def audit_after(m: Migration, since: datetime) -> dict[str, Any] | None:
    """The latest successful host deploy that started after `since`, if any."""
    _, audit = parameter_names(m.env.stack_name, m.env.name)
    for record in reversed(read_audit(m.ctx.ssm, audit)):
        result = str(record.get("result", ""))
        try:
            started = datetime.strptime(str(record.get("started")), "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            continue
        if result in {"ok", "no change"} and started.replace(tzinfo=UTC) >= since:
            return dict(record)
    return None


def check_params(m: Migration) -> StepState:
    want = m.new.parameters
    have = ssm_values(m.ctx, list(want))
    stale = [n for n, v in want.items() if have.get(n, ("", None))[0] != v]
    if stale:
        shown = ", ".join(f"{n}={have.get(n, ('(missing)', None))[0]}" for n in stale[:3])
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        return StepState(False, f"SSM not on the new domain yet: {shown}{more}")
    base = f"SSM {m.env.ssm_prefix}: {len(want)} derived values on {m.new.base_url}"
    if m.skip_hosts:
        return StepState(True, f"{base}; hosts not checked (--skip-hosts)")
    if m.host_restart is not None:
        return StepState(True, f"{base}; hosts restarted by the caller (not checked here)")
    modified = [t for _, t in have.values() if t is not None]
    since = max(modified).astimezone(UTC).replace(microsecond=0) if modified else None
    record = audit_after(m, since) if since else None
    if record is None:
        return StepState(False, f"{base}; no host deploy since they changed (hosts keep old env)")
    return StepState(
        True,
        f"{base}; hosts re-rendered by the deploy of {record.get('started')} "
        f"({', '.join(record.get('hosts', []))})",
    )


def run_params(m: Migration) -> None:
    ctx = m.ctx
    have = ssm_values(ctx, list(m.new.parameters))
    for name, value in m.new.parameters.items():
        old = have.get(name, ("(unset)", None))[0]
        if old != value:
            m.out(f"  {name}: {old} -> {value}")
    params.sync(ctx, ctx.secrets_file)
    if m.skip_hosts:
        m.out(
            "  hosts NOT restarted (--skip-hosts): every process that read SSM at start "
            "keeps the old values until it restarts (replica: "
            "`docker compose -f compose/compose.yaml restart app`)"
        )
        return
    time.sleep(1.0)  # the audit's start time has 1 s resolution: start after the writes
    roll_hosts(m, "alb")


def roll_hosts(m: Migration, caddy_mode: Mode) -> None:
    """The rolling host deploy: drain, re-render the env file from SSM, restart, restore.
    `caddy_mode`: the Caddyfile the hosts get (whatever the spec's caddy.mode says)."""
    if m.host_restart is not None:
        m.out("  restarting the hosts (the caller's restarter)")
        m.host_restart(m)
        return
    if m.spec_path is None:
        raise MigrateError("step 7 needs the spec file for the host deploy (--spec)")
    options = DeployOptions(spec=m.spec_path, caddy_mode=caddy_mode, **m.hosts_options)
    m.out("  rolling host deploy (one host at a time, drained from the balancer first):")
    try:
        report = deploy(m.env, options, lambda line: m.out(f"    {line}"))
    except HostsError as exc:
        raise MigrateError(f"step 7: host deploy failed: {exc}") from None
    m.out(f"  restarted on: {', '.join(h.name for h in report.hosts) or 'none'}")


def check_oauth(m: Migration) -> StepState:
    return StepState(
        False,
        "Google Cloud console: cannot be checked from here (the step prints what to change)",
        manual=True,
    )


def oauth_lines(m: Migration) -> list[str]:
    new, old = m.new, m.was
    lines = [f"Google Cloud console > APIs & Services > Credentials > OAuth client ({m.env.name}):"]
    for title, want, had in (
        ("Authorized JavaScript origins", new.oauth_js_origins, old.oauth_js_origins),
        ("Authorized redirect URIs", new.oauth_redirect_uris, old.oauth_redirect_uris),
    ):
        lines.append(f"  {title}:")
        lines.extend(f"    add     {v}" for v in want if v not in had)
        lines.extend(f"    keep    {v}" for v in want if v in had)
        lines.extend(f"    remove  {v}" for v in had if v not in want)
    lines.append(
        "  remove the old entries only after nobody signs in on the old name any more; "
        "this command cannot change the console"
    )
    return lines


def run_oauth(m: Migration) -> None:
    for line in oauth_lines(m):
        m.out(f"  {line}")


@dataclass(frozen=True)
class Step:
    number: int
    name: str
    check: Callable[[Migration], StepState]
    run: Callable[[Migration], None]


STEPS: tuple[Step, ...] = tuple(
    Step(number, name, check, run)
    for number, (name, (check, run)) in enumerate(
        zip(
            STEP_NAMES,
            (
                (check_domain, run_domain),
                (check_zone, run_zone),
                (check_certificate, run_certificate),
                (check_loadbalancer, run_loadbalancer),
                (check_caddy, run_caddy),
                (check_scaling, run_scaling),
                (check_params, run_params),
                (check_oauth, run_oauth),
            ),
            strict=True,
        ),
        start=1,
    )
)


# ---- the flow -----------------------------------------------------------------------------


@contextmanager
def _errors() -> Iterator[None]:
    with aws_errors():
        yield


def check_all(m: Migration) -> list[tuple[Step, StepState]]:
    states = []
    for step in STEPS:
        with _errors():
            states.append((step, step.check(m)))
    return states


def first_pending(states: Sequence[tuple[Step, StepState]]) -> int | None:
    for step, state in states:
        if not state.done and not state.manual:
            return step.number
    return None


def run(
    m: Migration,
    from_step: int | None = None,
    after_step: Callable[[int], None] | None = None,
) -> list[int]:
    """Run the flow; returns the steps that ran. Without `from_step` it starts at the
    first step whose check is not done; a step whose check is done is skipped. With
    `from_step` every step from there runs (each is idempotent). After each step its
    check must say done (the manual step 8 excepted), else the flow stops there."""
    if from_step is None:
        start = len(STEPS)
        with _errors():
            for step in STEPS[:-1]:  # lazily: stop at the first step not done
                if not step.check(m).done:
                    start = step.number
                    break
        if start > 1:
            m.out(f"steps 1-{start - 1} are done: resuming at step {start}")
    else:
        start = from_step
    ran: list[int] = []
    for step in STEPS[start - 1 :]:
        m.out(f"step {step.number}/{len(STEPS)}: {step.name}")
        with _errors():
            if from_step is None and step.number != start:
                state = step.check(m)
                if state.done:
                    m.out(f"  done already: {state.detail}")
                    continue
            started = time.monotonic()
            step.run(m)
            state = step.check(m)
        if not state.done and not state.manual:
            raise MigrateError(
                f"step {step.number} ({step.name}) ran but is not done: {state.detail}"
            )
        m.out(
            f"  ok ({time.monotonic() - started:.1f}s)"
            + ("" if state.manual else f": {state.detail}")
        )
        ran.append(step.number)
        if after_step is not None:
            after_step(step.number)
    m.out(f"migration of {m.env.name} complete: served on {m.new.base_url} through the ALB")
    if m.spec_mode == "direct":
        m.out(
            'now set caddy.mode = "alb" in the spec: `deploy.py hosts` renders the spec\'s '
            "mode, and in direct mode it would take the hosts off the ALB again"
        )
    return ran
