"""`deploy.py migrate`: the guideline's eight steps (jobtory_stack.migrate)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtory_stack.cli.common import env_options, out, resolve_env
from jobtory_stack.migrate.guideline import STEP_NAMES

if TYPE_CHECKING:
    from jobtory_stack.migrate.flow import Migration

DESCRIPTION = """\
`deploy.py migrate`: the deployment guideline's eight planned steps as one resumable flow.

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
rolling host deploy (`hosts.deploy`). Step 8 only prints: nobody can change the Google
console from here.

Runbook: docs/runbook-migrate.md.
"""


def migration_from_args(args: argparse.Namespace) -> Migration:
    from jobtory_stack.aws.delegation import parse_resolver
    from jobtory_stack.hosts.balancers import static_balancer
    from jobtory_stack.migrate.flow import new_migration

    env = resolve_env(args)
    m = new_migration(
        env,
        args.endpoint_url,
        out,
        spec_path=args.spec,
        resolver=parse_resolver(args.resolver) if args.resolver else None,
        verify_delegation=args.verify_delegation or bool(args.resolver),
        caddy_admins=tuple(args.caddy_admin or ()),
        skip_hosts=args.skip_hosts,
        balancer=static_balancer(env, Path(args.spec)),  # the fleet replica: its stand-in
    )
    if args.wait_timeout is not None:
        m.ctx.wait_timeout = args.wait_timeout
    m.ctx.secrets_file = args.secrets_file
    m.ctx.release = args.release or os.environ.get("JOBTORY_RELEASE_VERSION")
    m.ctx.artifact_url = args.artifact_url or os.environ.get("JOBTORY_ARTIFACT_URL")
    m.ctx.adopt_existing = args.adopt_existing
    return m


def cmd_migrate(args: argparse.Namespace) -> int:
    from jobtory_stack.migrate.flow import STEPS, check_all, first_pending, run

    m = migration_from_args(args)
    if args.check:
        notes: list[str] = []
        m.ctx.out = notes.append  # the reconcilers' remarks go after the table
        states = check_all(m)
        width = max(len(s.name) for s in STEPS)
        for step, state in states:
            out(f"{step.number} {step.name:<{width}}  {state.label:<6}  {state.detail}")
        nxt = first_pending(states)
        out(f"next: step {nxt}" if nxt else "all automated steps are done (8 is manual)")
        for note in dict.fromkeys(notes):
            out(note)
        return 0
    run(m, from_step=args.from_step)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "migrate",
        parents=[env_options()],
        help="the guideline's 8 steps: direct mode (DuckDNS) -> domain + ACM + ALB + ASG",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--check", action="store_true", help="report which steps are done; change nothing"
    )
    p.add_argument(
        "--from-step",
        type=int,
        choices=range(1, len(STEP_NAMES) + 1),
        metavar="N",
        help="start at step N and run every step from there (default: the first not done)",
    )
    p.add_argument(
        "--endpoint-url", help="AWS endpoint (emulator); default AWS_ENDPOINT_URL / spec"
    )
    p.add_argument(
        "--verify-delegation",
        action="store_true",
        help="step 2: require the registrar's NS to point at the zone (asks --resolver)",
    )
    p.add_argument(
        "--resolver",
        metavar="HOST:PORT",
        help="DNS resolver for the delegation check (implies --verify-delegation; "
        "default: the first nameserver in /etc/resolv.conf)",
    )
    p.add_argument(
        "--caddy-admin",
        action="append",
        metavar="ADDR",
        help="step 5: a host's Caddy admin API (localhost:2019, unix//path); repeat per host",
    )
    p.add_argument(
        "--skip-hosts",
        action="store_true",
        help="step 7: write SSM only; do not run the rolling host deploy",
    )
    p.add_argument("--secrets-file", type=Path, help="the replica's secrets file (params sync)")
    p.add_argument("--wait-timeout", type=float, help="bound of each wait in seconds")
    p.add_argument("--release", help="step 6: the release new ASG instances boot")
    p.add_argument("--artifact-url", metavar="URL", help="step 6: where instances fetch it")
    p.add_argument(
        "--adopt-existing",
        action="store_true",
        help="a protected environment: take over today's untagged SSM parameters "
        "(tagged adopted=true)",
    )
    p.set_defaults(handler=cmd_migrate)
