"""The migration with the REAL app behind today's Caddy: gunicorn + Django on a throwaway
PostgreSQL, configured from SSM by path (the hosts' one loader), the fake OIDC provider.

Before: `/auth/google/login` on the DuckDNS name sends the browser to the provider with
the DuckDNS redirect URI. The flow runs (moto, a real Caddy, the HAProxy ALB stand-in)
while a bounded loop asks the app's `/api/version` (Django's host validation included)
on the old path and then the new one. "Restarting the hosts" here = start a gunicorn
with the new SSM values, put it into Caddy's upstreams, drain and stop the old one (what
the rolling host deploy does per host with the load balancer). After: through the ALB
stand-in, `/auth/google/login` redirects with the redirect URI on the new domain.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest

from jobtory_stack.aws import params
from jobtory_stack.aws.core import new_ctx
from jobtory_stack.caddy.admin import CaddyAdmin
from jobtory_stack.migrate.flow import Migration, check_all, new_migration, run, with_mode
from jobtory_stack.spec.model import Environment
from jobtory_stack.ssm_env import load_env
from tests.alb.conftest import RunningAlb
from tests.app.conftest import database, fake_oidc, postgres  # noqa: F401  (fixtures)
from tests.app.support import APP_DIR, Postgres, app_env, start_sh_env, wait_http
from tests.conftest import free_port
from tests.helpers import ROOT
from tests.migrate.conftest import DUCKDNS, URL_PARAMETERS, running_direct_caddy
from tests.migrate.test_migrate import NEW_HOST, migration_loop, watching_admin

pytestmark = [pytest.mark.aws, pytest.mark.caddy]


class AppHosts:
    """gunicorn processes of the real app; each start reads SSM by path, like a host."""

    def __init__(self, prefix: str, endpoint: str, local: dict[str, str], logs: Path) -> None:
        self.prefix, self.endpoint, self.local, self.logs = prefix, endpoint, local, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> str:
        ssm = boto3.client("ssm", endpoint_url=self.endpoint, region_name="ap-northeast-2")
        port = free_port()
        # the URLs and allowed hosts from SSM (what migrate changes), then this machine's
        # database, secrets and OIDC provider
        env = start_sh_env({**load_env(self.prefix, ssm), **self.local}, port)
        with (self.logs / f"gunicorn-{port}.log").open("wb") as out:
            proc = subprocess.Popen(
                ["sh", str(APP_DIR / "start.sh")], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, "gunicorn (start.sh)", timeout=40)
        dial = f"127.0.0.1:{port}"
        self.procs[dial] = proc
        return dial

    def stop(self, dial: str) -> None:
        proc = self.procs.pop(dial)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for dial in list(self.procs):
            self.stop(dial)


@pytest.fixture
def app_hosts(
    aws_env: str,
    local_env: Environment,
    postgres: Postgres,  # noqa: F811
    database: str,  # noqa: F811
    fake_oidc: str,  # noqa: F811
    tmp_path: Path,
) -> Iterator[AppHosts]:
    # the app's test settings, except the values derived from the domain: those come
    # from SSM, where migrate changes them
    settings = app_env(postgres, database, fake_oidc)
    local = {k: v for k, v in settings.items() if k not in URL_PARAMETERS}
    local["APP_VERSION"] = "migrate-test"
    # this machine's test PostgreSQL speaks no TLS (verify-full, which SSM says, is proven
    # against the replica's db in tests/app/test_db_tls.py)
    local["DB_SSLMODE"] = "prefer"
    hosts = AppHosts(local_env.ssm_prefix, aws_env, local, tmp_path)
    yield hosts
    hosts.stop_all()


def redirect_uri(response: httpx.Response) -> str:
    assert response.status_code == 302, (response.status_code, response.text[:300])
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return query["redirect_uri"][0]


def test_migrate_with_the_real_app_moves_the_oauth_redirect_and_drops_nothing(
    aws_env: str,
    local_env: Environment,
    app_hosts: AppHosts,
    start_alb: Callable[..., RunningAlb],
    tmp_path: Path,
) -> None:
    # today: SSM on the DuckDNS name, one app host behind Caddy in direct mode
    params.sync(new_ctx(with_mode(local_env, "direct"), None, lambda line: None))
    current = [app_hosts.start()]
    with running_direct_caddy(local_env, tmp_path, current[0]) as caddy:
        alb = start_alb(n_targets=0, extra_targets=(f"127.0.0.1:{caddy.site.http_port}",))
        old_ca = ssl.create_default_context(cafile=str(caddy.ca_root()))
        with httpx.Client(verify=old_ca, timeout=10, trust_env=False) as client:
            r = client.get(
                f"https://127.0.0.1:{caddy.site.https_port}/auth/google/login",
                headers={"Host": f"{DUCKDNS}:8443"},
                extensions={"sni_hostname": DUCKDNS},
            )
        assert redirect_uri(r) == f"https://{DUCKDNS}:8443/auth/google/callback"

        def restart(m: Migration) -> None:
            """New gunicorn with the new SSM values in, old one drained out."""
            new = app_hosts.start()
            with CaddyAdmin(caddy.admin_address) as admin:
                admin.add_upstream(new)
                admin.drain(current[0], timeout=15)
            app_hosts.stop(current[0])
            current[0] = new
            m.site_overrides["upstreams"] = (new,)
            m.out(f"  restarted: gunicorn now {new}")

        loop = migration_loop(caddy, alb, path="/api/version", echo=False)
        lines: list[str] = []
        m = new_migration(
            local_env,
            None,
            lines.append,
            spec_path=ROOT / "stack.toml",
            caddy_admins=(caddy.admin_address,),
            site_overrides=dict(caddy.overrides),
            caddy_linger=0.5,
            host_restart=restart,
            admin_factory=watching_admin(loop),
        )
        m.ctx.wait_timeout = 60
        loop.start()
        try:
            assert run(m) == [2, 3, 4, 5, 6, 7, 8]
        finally:
            loop.finish()
        print(
            f"app loop: {loop.total} requests {dict(loop.results)}; retried {loop.retries}; "
            f"ALB 502 on an empty response: {loop.alb_empty}"
        )
        assert not loop.failures, loop.failures[:5]
        assert loop.alb_empty <= 2  # see migration_loop: a single target
        assert loop.count("old") > 20 and loop.count("new") > 20, dict(loop.results)
        assert loop.retries <= max(5, loop.total // 50)
        assert sum("restarted: gunicorn now" in line for line in lines) == 2  # steps 5 and 7
        assert {s.number: st.label for s, st in check_all(m)} == {
            i: "done" for i in range(1, 8)
        } | {8: "manual"}

        # after: through the ALB stand-in, the sign-in starts with the new redirect URI
        with httpx.Client(verify=alb.ssl_context(), timeout=10, trust_env=False) as client:
            r = client.get(
                f"{alb.https_url}/auth/google/login",
                headers={"Host": f"{NEW_HOST}:8443"},
                extensions={"sni_hostname": NEW_HOST},
            )
            assert redirect_uri(r) == f"https://{NEW_HOST}:8443/auth/google/callback"
            assert r.headers["location"].startswith(f"{app_hosts.local['GOOGLE_OIDC_ISSUER']}/")
            # and the old name is no longer an allowed host
            r = client.get(f"{alb.https_url}/api/version", headers={"Host": DUCKDNS})
            assert r.status_code == 400
