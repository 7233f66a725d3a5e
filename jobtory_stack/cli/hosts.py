"""`deploy.py hosts`: the rolling host deploy, its audit log, its lock and the user data.

The domain is jobtory_stack.hosts (pyinfra and boto3 are imported by the handler only).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jobtory_stack.cli.common import EXIT_ERROR, EXIT_OK, env_options, out, resolve_env
from jobtory_stack.errors import HostsError
from jobtory_stack.hosts.settings import DeployOptions, parse_kv
from jobtory_stack.spec.constants import (
    CADDY_MODES,
    KEEP_RELEASES,
    LOCK_STALE_AFTER,
    READY_TIMEOUT,
)

DESCRIPTION = """\
`deploy.py hosts`: the pyinfra deploy of the app to the environment's hosts, rolling.

    deploy.py hosts --env local [--version V]       the fleet replica (compose profile fleet)
    deploy.py hosts --env prod --version V          EC2 hosts found by tags + ASG membership
    deploy.py hosts --env prod --audit              who deployed what, when, with what result
    deploy.py hosts --env prod --user-data --version NAME   the ASG's user data for a release

With an Auto Scaling group, the release is first published to the release store and
the launch template moved to it (scale-out and replacement instances boot it).
One host at a time: plan (pyinfra --dry); nothing to change -> leave the host alone;
else take it out of the load balancer (drain), deploy (pyinfra/deploy.py), put it back
and wait until the balancer's health checks pass, then the next host. A deploy lock in
SSM (jobtory_stack.deploy_lock) keeps two deploys apart; every deploy appends one audit
line there. Host side, the same module answers `env-status` for the deploy's facts.

Docs: docs/hosts.md. The pyinfra side (facts, operations, tasks): pyinfra/.
"""


def options_from(args: argparse.Namespace) -> DeployOptions:
    return DeployOptions(
        spec=Path(args.spec),
        version=args.version,
        source=Path(args.source) if args.source else None,
        keep=args.keep,
        only=tuple(args.only or ()),
        lock_timeout=args.lock_timeout,
        ready_timeout=args.ready_timeout,
        caddy_mode=args.caddy_mode,
    )


def cmd_user_data(args: argparse.Namespace) -> int:
    from jobtory_stack.hosts.launch import user_data_for

    env = resolve_env(args)
    if not args.version:
        raise HostsError("--user-data needs --version (a published release new instances boot)")
    aws_env = parse_kv(args.aws_env) if args.aws_env else None
    print(user_data_for(env, args.version, aws_env), end="")
    return EXIT_OK


def cmd_audit_or_unlock(args: argparse.Namespace) -> int:
    from jobtory_stack.aws.client import aws_errors, client_for
    from jobtory_stack.hosts.lock import force_unlock, parameter_names, read_audit

    env = resolve_env(args)
    lock_name, audit_name = parameter_names(env.stack_name, env.name)
    with aws_errors():
        ssm = client_for(env, "ssm")
        if args.unlock:
            holder = force_unlock(ssm, lock_name)
            out(f"unlocked {lock_name} (held by {holder.owner})" if holder else "not locked")
            return EXIT_OK
        for line in read_audit(ssm, audit_name):
            out(json.dumps(line, sort_keys=True))
    return EXIT_OK


def cmd_hosts(args: argparse.Namespace) -> int:
    if args.user_data:
        return cmd_user_data(args)
    if args.audit or args.unlock:
        return cmd_audit_or_unlock(args)
    from jobtory_stack.hosts.launch import prepare_release
    from jobtory_stack.hosts.rolling import DeployFailed, deploy

    env = resolve_env(args)
    # with an Auto Scaling group: publish the release; the deploy moves the launch
    # template to it under its lock (a static inventory: nothing published)
    options = prepare_release(env, options_from(args), out, allow_dirty=args.allow_dirty)
    try:  # SIGTERM interrupts the deploy as Ctrl-C does (hosts.rolling.deploy)
        report = deploy(env, options, out, allow_downtime=args.allow_downtime)
    except DeployFailed as exc:
        if args.json:
            out(json.dumps(exc.report.as_dict()))
        raise
    if args.json:
        out(json.dumps(report.as_dict()))
    return EXIT_OK if not report.result.startswith("failed") else EXIT_ERROR


def register(sub: Any) -> None:
    p = sub.add_parser(
        "hosts",
        parents=[env_options()],
        help="rolling pyinfra deploy of the app to the environment's hosts",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", help="release version (default: a digest of the sources)")
    p.add_argument("--source", help="build the release from this checkout (default: this repo)")
    p.add_argument(
        "--keep",
        type=int,
        default=KEEP_RELEASES,
        help=f"releases kept per host (default: {KEEP_RELEASES})",
    )
    p.add_argument("--only", action="append", help="deploy only this host (repeatable)")
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=LOCK_STALE_AFTER,
        help="seconds without a heartbeat after which a held deploy lock is stale "
        "(default: %(default).0f; a running deploy renews it every 30 s)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=READY_TIMEOUT,
        help="seconds a host may take to pass the balancer's health checks",
    )
    p.add_argument(
        "--caddy-mode",
        choices=CADDY_MODES,
        help="Caddy's mode on the hosts (default: the spec's caddy.mode); direct = no "
        "balancer to drain from (today's single host)",
    )
    p.add_argument(
        "--allow-downtime",
        action="store_true",
        help="a single-host fleet: drain its only healthy target anyway (never with others)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary line at the end")
    p.add_argument("--audit", action="store_true", help="print the deploy audit log and exit")
    p.add_argument("--unlock", action="store_true", help="remove a (stale) deploy lock and exit")
    p.add_argument("--user-data", action="store_true", help="print the ASG user data and exit")
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="with an Auto Scaling group: publish a release of a dirty tree (named ...-dirty)",
    )
    p.add_argument("--aws-env", help="with --user-data: extra AWS settings K=V,K=V (emulators)")
    p.set_defaults(handler=cmd_hosts)
