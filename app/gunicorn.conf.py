"""gunicorn settings for the jobtory app (run from app/: gunicorn -c gunicorn.conf.py).

Everything is overridable from the environment; defaults suit one container
behind Caddy.
"""

import os
from urllib.parse import urlsplit, urlunsplit

from gunicorn.glogging import Logger

wsgi_app = "config.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM (rolling deploy, ASG scale-in) finish in-flight requests first.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Longer than Caddy's idle upstream keep-alive would be ideal; Caddy reconnects anyway.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "200"))
# Development only (compose/dev.yaml): restart workers when a source file changes.
reload = os.environ.get("GUNICORN_RELOAD", "") == "1"

# Only Caddy talks to gunicorn. Only these peers may set X-Forwarded-Proto for
# gunicorn's own wsgi.url_scheme (Django uses SECURE_PROXY_SSL_HEADER itself).
# In compose, set it to the Docker network's range (CIDRs are accepted).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# client (X-Real-IP set by Caddy), peer, time, request, status, bytes, ms, referer, agent
access_log_format = '%({x-real-ip}i)s %(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'

#: Paths whose query strings never reach a log (OAuth codes and state).
REDACTED_PREFIXES = ("/auth/",)


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))


class RedactingLogger(Logger):
    """Access log without the query strings of /auth/* (authorization codes!)."""

    def atoms(self, resp, req, environ, request_time):  # type: ignore[no-untyped-def]
        atoms = super().atoms(resp, req, environ, request_time)
        path = environ.get("PATH_INFO", "")
        if path.startswith(REDACTED_PREFIXES):
            atoms["r"] = "{} {} {}".format(
                environ.get("REQUEST_METHOD"), path, environ.get("SERVER_PROTOCOL")
            )
            atoms["q"] = ""
        referer = atoms.get("f", "-")
        if "/auth/" in referer:
            atoms["f"] = _without_query(referer)
        return atoms


logger_class = RedactingLogger
