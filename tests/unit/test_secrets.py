"""Secrets, the spec/deployer part: the shapes `params set` checks, the values the
deployer generates, the operators' own prefix, and multi-line values through the hosts'
env file (read back the way systemd's EnvironmentFile= reads it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.checks.security.base import _check_secret_key  # security.W009's test

from jobtory_stack.aws.secrets import new_value
from jobtory_stack.errors import SpecError
from jobtory_stack.spec.derived import derive
from jobtory_stack.spec.loader import load_stack
from jobtory_stack.spec.rules import secret_problem
from jobtory_stack.ssm_env import render_env_file
from tests.helpers import ROOT, private_key_pem
from tests.unit.test_spec import shipped_doc, spec_error, write_toml

# ---- shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DJANGO_SECRET_KEY", "s3cr3t-but-only-31-characters!", "needs 50+ characters"),
        ("DJANGO_SECRET_KEY", "ab" * 30, "5+ different ones"),
        ("DJANGO_SECRET_KEY", "django-insecure-" + "x1y2z3w4v5" * 5, "no 'django-insecure-'"),
        ("DB_PASSWORD", "short7!", "RDS takes 8-128 printable ASCII characters"),
        ("DB_PASSWORD", "x" * 129, "RDS takes 8-128"),
        ("DB_PASSWORD", "has/slash-inside", 'except / " @ and space'),
        ("DB_PASSWORD", 'has"quote-inside', "RDS takes"),
        ("DB_PASSWORD", "has@at-inside", "RDS takes"),
        ("DB_PASSWORD", "has space inside", "RDS takes"),
        ("DB_PASSWORD", "non-ascii-ü-inside", "RDS takes"),
        ("DB_PASSWORD", "tab\tinside-it", "RDS takes"),
        ("DUCKDNS_TOKEN", "not-a-uuid", "a DuckDNS token is a UUID"),
        ("GOOGLE_CLIENT_SECRET", "", "no value on stdin"),
    ],
)
def test_secrets_of_the_wrong_shape_are_refused(name: str, value: str, expected: str) -> None:
    problem = secret_problem(name, value)
    assert problem is not None and expected in problem
    if value:
        assert value not in problem  # the value is never repeated


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_SECRET_KEY", "Zq3" + "abcdefghij" * 5),
        ("DB_PASSWORD", "Correct-Horse_Battery9"),
        ("DB_PASSWORD", "!#$%&'()*+,-.:;<=>?[]^_`{|}~0"),
        ("DUCKDNS_TOKEN", "0f6a1c2e-9b7d-4e3a-8c51-5d2f0e7a9b13"),
        ("GOOGLE_CLIENT_SECRET", "anything-google-issued"),
    ],
)
def test_secrets_of_the_right_shape_pass(name: str, value: str) -> None:
    assert secret_problem(name, value) is None


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "DB_PASSWORD", "GOOGLE_CLIENT_SECRET"])
def test_generated_secrets_have_the_shape_they_need(name: str) -> None:
    for _ in range(200):
        value = new_value(name)
        assert secret_problem(name, value) is None
    key = new_value("DJANGO_SECRET_KEY")
    assert len(key) >= 50 and _check_secret_key(key)  # Django's check --deploy: no W009


# ---- the operators' secrets live under their own prefix -----------------------------------


def test_the_duckdns_token_is_an_operators_secret() -> None:
    env = load_stack(ROOT / "stack.toml").env("prod")
    d = derive(env)
    assert "DUCKDNS_TOKEN" not in d.secret_names
    assert d.ops_parameter_name("DUCKDNS_TOKEN") == "/jobtory/_ops/prod/DUCKDNS_TOKEN"
    assert not env.ssm_ops_prefix.startswith(env.ssm_prefix)  # the app's loader never sees it


def test_an_operators_secret_is_never_the_apps(tmp_path: Path) -> None:
    path = tmp_path
    doc = shipped_doc()
    doc["ssm"]["secrets"] = [*doc["ssm"]["secrets"], "DUCKDNS_TOKEN"]
    doc["ssm"]["ops_secrets"] = []
    assert (
        "ssm.secrets[3]: DUCKDNS_TOKEN is an operator's secret, never the app's; move it to "
        "ssm.ops_secrets (kept under /jobtory/_ops/prod/, which the app never loads)"
    ) in spec_error(path, doc, "prod")
    doc = shipped_doc()
    doc["ssm"]["prefix"] = "/jobtory/"
    assert (
        "ssm.prefix: /jobtory/ holds the operators' prefix /jobtory/_ops/prod/, and the app "
        "loads everything under its own; use /jobtory/prod/"
    ) in spec_error(path, doc, "prod")
    doc = shipped_doc()
    doc["ssm"]["ops_secrets"] = ["GOOGLE_CLIENT_SECRET"]
    with pytest.raises(SpecError, match="GOOGLE_CLIENT_SECRET is also an app parameter"):
        load_stack(write_toml(path / "stack.toml", doc)).env("prod")


# ---- multi-line values survive the env file --------------------------------------------------


def systemd_environment_file(text: str) -> dict[str, str]:
    """What systemd hands a unit from `EnvironmentFile=`: a port of parse_env_file_internal
    (systemd src/basic/env-file.c, v257) for the states our files use and their neighbours:
    keys, unquoted, single- and double-quoted values, escapes, comments."""
    env: dict[str, str] = {}
    state, key, value = "pre_key", "", ""
    need_escape = '"\\`$'

    def push() -> None:
        env[key.strip()] = value

    for c in text:
        if state == "pre_key":
            if c in "#;":
                state = "comment"
            elif not c.isspace():
                state, key, value = "key", c, ""
        elif state == "key":
            if c in "\n\r":
                state = "pre_key"
            elif c == "=":
                state = "pre_value"
            else:
                key += c
        elif state == "pre_value":
            if c in "\n\r":
                push()
                state = "pre_key"
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "\\":
                state = "value_escape"
            elif not c.isspace():
                state, value = "value", value + c
        elif state == "value":
            if c in "\n\r":
                value = value.rstrip()
                push()
                state = "pre_key"
            elif c == "\\":
                state = "value_escape"
            else:
                value += c
        elif state == "value_escape":
            state = "value"
            if c not in "\n\r":
                value += c
        elif state == "single":
            if c == "'":
                state = "pre_value"
            else:
                value += c
        elif state == "double":
            if c == '"':
                state = "pre_value"
            elif c == "\\":
                state = "double_escape"
            else:
                value += c
        elif state == "double_escape":
            state = "double"
            if c in need_escape:
                value += c
            elif c != "\n":
                value += "\\" + c
        elif state == "comment" and c in "\n\r":
            state = "pre_key"
    if state in {"pre_value", "value", "value_escape", "single", "double", "double_escape"}:
        push()
    return env


PEM = private_key_pem()  # a multi-line secret value
VALUES = {
    "A_PEM_KEY": PEM,
    "QUOTES": "she said \"hi\" and 'bye'",
    "BACKSLASHES": "C:\\path\\to\\n\\x and a trailing \\",
    "LITERAL_BACKSLASH_N": "two characters: \\n (not a newline)",
    "SHELLISH": "$HOME ${PATH} `id` $(id)",
    "SPACES": "  leading and trailing  ",
    "HASH_AND_EQUALS": "#not-a-comment=still;value",
    "CRLF": "line one\r\nline two",
    "EMPTY": "",
    "UNICODE": "서울 Asia/Seoul",
}


def test_multi_line_and_odd_values_survive_the_env_file() -> None:
    assert systemd_environment_file(render_env_file(VALUES)) == VALUES


def test_the_parser_port_reads_systemd_examples() -> None:
    # the parser itself, on inputs whose meaning systemd's documentation and tests fix
    text = 'A=plain\nB="quoted \\"x\\" \\$y"\nC=\'single \\n\'\n# comment\nD= spaced  \n'
    assert systemd_environment_file(text) == {
        "A": "plain",
        "B": 'quoted "x" $y',
        "C": "single \\n",
        "D": "spaced",
    }
