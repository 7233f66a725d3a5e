"""The launch template's user data: what it carries, its size, and that the program it
runs to fetch and verify the release is the one tests/aws/test_user_data_verify.py runs."""

from __future__ import annotations

import base64
import subprocess

import pytest

from jobtory_stack.errors import HostsError
from jobtory_stack.render.user_data import USER_DATA_LIMIT, fetch_program, render_user_data

SHA = "5" * 64


def script(**changes: str) -> str:
    values = {"bucket": "jobtory-prod-releases-123456789012", "region": "ap-northeast-2",
              "manifest_sha256": SHA, **changes}  # fmt: skip
    return render_user_data("prod", "1b7527bc9e-d97ee317947b", **values)


def test_it_names_the_release_its_manifest_sha256_and_the_store() -> None:
    text = script()
    assert text.startswith("#!/bin/bash\n")
    assert "\nVERSION=1b7527bc9e-d97ee317947b\n" in text
    assert f"\nMANIFEST_SHA256={SHA}\n" in text
    assert "\nBUCKET=jobtory-prod-releases-123456789012\n" in text
    assert "\nREGION=ap-northeast-2\n" in text
    assert "@local pyinfra/deploy.py" in text
    assert "curl" not in text and "https://" not in text  # no public URL: the store only
    check = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_the_fetch_program_is_embedded_verbatim_before_anything_is_unpacked() -> None:
    text = script()
    program = fetch_program()
    assert f"<<'FETCH_RELEASE'\n{program}\nFETCH_RELEASE\n" in text
    assert text.index("FETCH_RELEASE\n") < text.index("tar -x")  # verified, then unpacked
    assert text.index("python3-boto3") < text.index("FETCH_RELEASE")  # from Debian's archive


def test_it_stays_under_the_16_kb_user_data_limit() -> None:
    text = script(manifest_sha256=SHA)
    encoded = base64.b64encode(text.encode())
    # EC2's limit is 16 KB; kept even for the base64 form the launch template stores
    assert len(encoded) < USER_DATA_LIMIT, len(encoded)


def test_the_replicas_settings_are_exported_for_the_fetch() -> None:
    text = render_user_data("local", "v1", bucket="b", region="r", manifest_sha256=SHA,
                            aws_env={"AWS_ENDPOINT_URL": "http://aws:4566"})  # fmt: skip
    assert "AWS_ENV=AWS_ENDPOINT_URL=http://aws:4566" in text
    assert 'export "${kv?}"' in text


@pytest.mark.parametrize("bad", ["abc", "A" * 64, "5" * 63])
def test_a_manifest_sha256_is_64_lowercase_hex_digits(bad: str) -> None:
    with pytest.raises(HostsError, match="64 lowercase hex"):
        script(manifest_sha256=bad)


def test_no_release_yet_renders_a_script_that_says_so_at_boot() -> None:
    assert "\nMANIFEST_SHA256=''\n" in script(manifest_sha256="")
