"""The one loader of an environment's settings from SSM Parameter Store.

Used at app start (replica and EC2) and to render a host's env file, so both
see exactly the same values. Secrets are decrypted in memory only: they never
go on a command line, and nothing here logs a value.

    python -m jobtory_stack.ssm_env --prefix /jobtory/local/ --exec -- gunicorn ...
    python -m jobtory_stack.ssm_env --prefix /jobtory/prod/ --write /etc/jobtory/env
    python -m jobtory_stack.ssm_env --prefix /jobtory/prod/ --status /etc/jobtory/env
"""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jobtory_stack.aws.client import Endpoint, make_client, make_session


def ssm_client(region: str | None = None, endpoint_url: str | None = None) -> Any:
    """An SSM client from the host's own settings (instance profile, AWS_DEFAULT_REGION);
    AWS_ENDPOINT_URL (botocore's own variable) points it at the replica's emulator."""
    endpoint = Endpoint(endpoint_url)
    return make_client(make_session(region, endpoint), "ssm", region, endpoint)


@contextmanager
def no_secret_logging() -> Iterator[None]:
    """botocore logs decrypted response bodies at DEBUG: never while reading a secret."""
    loggers = [logging.getLogger(name) for name in ("botocore", "boto3", "urllib3")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def load_env(prefix: str, client: Any | None = None) -> dict[str, str]:
    """Every parameter under `prefix` (recursive, decrypted) as {NAME: value}.

    NAME is the path below the prefix with '/' turned into '_', so
    /jobtory/prod/DB_HOST becomes DB_HOST.
    """
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise ValueError(f"SSM prefix must start and end with '/': {prefix!r}")
    client = client or ssm_client()
    env: dict[str, str] = {}
    paginator = client.get_paginator("get_parameters_by_path")
    with no_secret_logging():
        for page in paginator.paginate(Path=prefix, Recursive=True, WithDecryption=True):
            for param in page["Parameters"]:
                name = param["Name"][len(prefix) :].replace("/", "_")
                env[name] = param["Value"]
    return env


def load_env_with_retry(prefix: str, timeout: float = 60.0) -> dict[str, str]:
    """load_env, retried while the parameter store is still starting (replica boot)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return load_env(prefix)
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"ssm_env: cannot read {prefix} from SSM: {exc}") from None
            time.sleep(1)


# Inside double quotes systemd's EnvironmentFile parser (src/basic/env-file.c) unescapes
# only these after a backslash, keeps any other backslash as it is, and keeps a newline as
# a newline: so a multi-line value (a PEM key) is written with its real newlines.
ENV_FILE_ESCAPED = '\\"`$'


def render_env_file(env: dict[str, str]) -> str:
    """systemd EnvironmentFile syntax: every value double-quoted, the characters systemd
    unescapes there escaped, newlines kept (what systemd reads back is the value)."""
    lines = []
    for name in sorted(env):
        value = "".join(f"\\{c}" if c in ENV_FILE_ESCAPED else c for c in env[name])
        lines.append(f'{name}="{value}"')
    return "\n".join(lines) + "\n"


def write_env_file(path: Path, env: dict[str, str]) -> bool:
    """Atomically write the env file with mode 0600; returns True when it changed."""
    content = render_env_file(env)
    if path.exists() and path.read_text() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".env.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def env_status(prefix: str, path: Path, owner: str | None = None) -> str:
    """ "in-sync" when `path` holds exactly SSM's values now (mode 0600, owner), else
    "differs" / "missing". Prints nothing else: never a value."""
    want = render_env_file(load_env_with_retry(prefix, timeout=30))
    try:
        st = path.stat()
        have = path.read_text()
    except FileNotFoundError:
        return "missing"
    if have != want or st.st_mode & 0o777 != 0o600:
        return "differs"
    if owner is not None and pwd.getpwuid(st.st_uid).pw_name != owner:
        return "differs"
    return "in-sync"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobtory_stack.ssm_env", description=__doc__)
    parser.add_argument(
        "--prefix", default=os.environ.get("SSM_PREFIX"), help="e.g. /jobtory/prod/"
    )
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for SSM")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", type=Path, metavar="PATH", help="write a 0600 env file")
    action.add_argument("--exec", action="store_true", help="run the command after '--'")
    action.add_argument(
        "--status",
        type=Path,
        metavar="PATH",
        help="is the env file at PATH in sync with SSM? (one word: in-sync, differs, missing)",
    )
    parser.add_argument("--owner", help="with --status: the env file's expected owner")
    # Split at '--' ourselves: argparse's REMAINDER handling of '--' changed in 3.13.
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not args.prefix:
        parser.error("--prefix (or SSM_PREFIX) is required")
    if args.exec and not command:
        parser.error("--exec needs a command: --exec -- gunicorn ...")
    if args.status:
        print(env_status(args.prefix, args.status, args.owner))
        return 0
    env = load_env_with_retry(args.prefix, timeout=args.wait)
    if args.write:
        changed = write_env_file(args.write, env)
        print(f"{args.write}: {len(env)} parameters, {'changed' if changed else 'unchanged'}")
        return 0
    os.execvpe(command[0], command, {**os.environ, **env})


if __name__ == "__main__":
    sys.exit(main())
