"""The CLI's reference: every command's --help and the exit codes of a set of good and
bad invocations. `python -m tests.unit.cli_reference.generate` rewrites reference.json;
tests/unit/test_cli_reference.py compares the running CLI against it, so a restructuring
that changes what users see fails there. Only `alb` (a replica tool) may differ.

Invocations name spec files by placeholder: {bad_region}, {bad_toml}, {unprotected}
(prod without `protected`) and {weakened} (ssm.values with DJANGO_DEBUG = "true") are
written next to the test; {missing} is a path that does not exist.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from jobtory_stack.cli import main
from jobtory_stack.cli.main import build_parser

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference.json"
COLUMNS = "100"  # argparse wraps help at $COLUMNS
EXCLUDED = ("alb",)  # moves out of the product with the ALB stand-in

# (argv, what it checks); the expected exit code is recorded by `generate`.
INVOCATIONS: tuple[tuple[str, ...], ...] = (
    (),
    ("nosuchcommand",),
    ("validate",),
    ("validate", "--env", "prod"),
    ("validate", "--env", "nope"),
    ("validate", "--spec", "{missing}"),
    ("validate", "--spec", "{bad_toml}"),
    ("show", "--env", "prod", "--json"),
    ("show", "--env", "local"),
    ("show", "--bogus"),
    ("oauth", "--env", "prod"),
    ("oauth", "--env", "nope"),
    ("render", "postgres-conf"),
    ("render", "caddyfile", "--env", "prod"),
    ("render", "caddyfile", "--mode", "sideways"),
    ("render", "nothing"),
    ("plan", "--env", "staging", "--spec", "{bad_region}"),
    ("plan", "--env", "nope"),
    ("apply", "--wat"),
    ("destroy", "--env", "prod"),
    # the confirmation rule: refused before any AWS call (the runner's stdin is no terminal)
    ("destroy", "--env", "staging"),
    ("destroy", "--env", "prod", "--yes"),
    ("destroy", "--env", "prod", "--yes", "--confirm-env", "staging"),
    ("validate", "--env", "prod", "--spec", "{unprotected}"),
    ("validate", "--env", "prod", "--spec", "{weakened}"),
    # params set: the name and the value's shape before any call (the runner's stdin is empty)
    ("params", "set", "--env", "staging", "DJANGO_SECRET_KEY"),
    ("params", "set", "--env", "staging", "NOT_A_SECRET"),
    ("status", "--env", "nope"),
    ("params",),
    ("params", "set"),
    ("params", "get", "--env", "nope"),
    ("hosts", "--user-data", "--env", "local"),
    ("hosts", "--keep", "many"),
    ("hosts", "--caddy-mode", "sideways"),
    ("hosts", "--env", "local", "--version", "bad version!"),
    # release: bad input and the confirmation rule, before any AWS call
    ("release",),
    ("release", "prune", "--env", "staging", "--keep", "0"),
    ("release", "prune", "--env", "prod", "--yes"),
    ("release", "list", "--env", "staging", "--keep-release", "bad name!"),
    ("caddy",),
    ("caddy", "render", "--mode", "alb", "--upstream", "127.0.0.1:8000", "--static-root", "/srv"),
    ("caddy", "render", "--mode", "alb"),
    (
        "caddy",
        "render",
        "--mode",
        "alb",
        "--upstream",
        "127.0.0.1:8000",
        "--static-root",
        "/srv",
        "--trusted-proxy",
        "10.0.0.0/16",
        "--host",
        "jobtory.com",
    ),
    ("caddy", "nothing"),
    ("migrate", "--from-step", "9"),
    ("migrate", "--env", "nope"),
)


def spec_files(tmp: Path) -> dict[str, str]:
    """The placeholder -> path map, with the files written into `tmp`."""
    shipped = (HERE.parents[2] / "stack.toml").read_text()
    bad_region = tmp / "bad-region.toml"
    bad_region.write_text(
        shipped.replace('region = "ap-northeast-2"', 'region = "xx-nowhere-9"', 1)
    )
    bad_toml = tmp / "bad.toml"
    bad_toml.write_text("[stack\nname = \n")
    unprotected = tmp / "unprotected.toml"
    unprotected.write_text(shipped.replace("\nprotected = true\n", "\n", 1))
    weakened = tmp / "weakened.toml"
    weakened.write_text(shipped.replace("[ssm.values]\n", '[ssm.values]\nDJANGO_DEBUG = "true"\n'))
    return {
        "{bad_region}": str(bad_region),
        "{bad_toml}": str(bad_toml),
        "{unprotected}": str(unprotected),
        "{weakened}": str(weakened),
        "{missing}": str(tmp / "no-such-stack.toml"),
    }


def expand(argv: tuple[str, ...], files: dict[str, str]) -> list[str]:
    return [files.get(arg, arg) for arg in argv]


@contextlib.contextmanager
def quiet_columns() -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = COLUMNS
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def run(argv: list[str]) -> int:
    """main(argv) in-process with stdin closed; its exit code (argparse's SystemExit too)."""
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), quiet_columns():
            try:
                return main(argv)
            except SystemExit as exc:
                return int(exc.code or 0)
    finally:
        sys.stdin = stdin


def command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_paths(sub, (*prefix, name))


def help_texts() -> dict[str, str]:
    with quiet_columns():
        parser = build_parser([])
        return {
            " ".join(("deploy.py", *path)): without_excluded(sub.format_help())
            for path, sub in command_paths(parser)
            if not path or path[0] not in EXCLUDED
        }


def without_excluded(text: str) -> str:
    """The top-level command list without the excluded commands' lines."""
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if line.split()[:1] not in ([name] for name in EXCLUDED)
    )


def exit_codes(files: dict[str, str]) -> dict[str, int]:
    return {" ".join(argv): run(expand(argv, files)) for argv in INVOCATIONS}


def main_generate() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        reference = {"help": help_texts(), "exit_codes": exit_codes(spec_files(Path(tmp)))}
    REFERENCE.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
    print(
        f"wrote {REFERENCE}: {len(reference['help'])} help texts, "
        f"{len(reference['exit_codes'])} invocations"
    )


if __name__ == "__main__":
    main_generate()
