"""What the app accepts from the provider's discovery document: its own issuer only, and
https for every endpoint outside `local`."""

from __future__ import annotations

import pytest

from tests.app.support import fake_provider_in_process
from tests.app.test_oidc import authorize, browser, start_login


def test_a_discovery_document_naming_another_issuer_is_refused(
    django_app: dict[str, str],
) -> None:
    from accounts import oidc

    with fake_provider_in_process(issuer="https://accounts.google.com") as provider:
        response = browser().get("/auth/google/login")
        assert response.status_code == 502
        assert "names the issuer 'https://accounts.google.com'" in response.json()["error"]
        assert provider.internal_url in response.json()["error"]  # the configured one
    oidc.clear_cache()


def test_the_issuer_may_differ_by_a_trailing_slash_only(django_app: dict[str, str]) -> None:
    with fake_provider_in_process() as provider:
        type(provider).issuer = property(lambda self: self.internal_url + "/")
        client = browser()
        assert (
            client.get("/auth/google/callback", authorize(start_login(client))).status_code == 302
        )


def test_an_http_issuer_is_refused_outside_local_before_any_request(
    django_app: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts import oidc
    from django.test import override_settings

    oidc.clear_cache()
    monkeypatch.setattr(oidc, "get_json", lambda *_: pytest.fail("fetched over http"))
    with override_settings(OIDC_REQUIRE_HTTPS=True):
        response = browser().get("/auth/google/login")
    assert response.status_code == 502
    assert "issuer (GOOGLE_OIDC_ISSUER) must be https" in response.json()["error"]


HTTPS_DOCUMENT = {
    "issuer": "https://accounts.example",
    "authorization_endpoint": "https://accounts.example/o/oauth2/v2/auth",
    "token_endpoint": "https://oauth2.example/token",
    "jwks_uri": "https://www.example/oauth2/v3/certs",
    "userinfo_endpoint": "https://openidconnect.example/v1/userinfo",
}


@pytest.mark.parametrize("endpoint", sorted(HTTPS_DOCUMENT))
def test_every_endpoint_must_be_https_outside_local(
    django_app: dict[str, str], monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    from accounts import oidc
    from django.test import override_settings

    plain = HTTPS_DOCUMENT[endpoint].replace("https://", "http://")
    document = {**HTTPS_DOCUMENT, endpoint: plain}
    monkeypatch.setattr(oidc, "get_json", lambda *_: dict(document))
    with override_settings(OIDC_REQUIRE_HTTPS=True):
        oidc.clear_cache()
        with pytest.raises(oidc.OIDCError, match=f"{endpoint}.* must be https"):
            oidc.discover("https://accounts.example" if endpoint != "issuer" else plain)
        monkeypatch.setattr(oidc, "get_json", lambda *_: dict(HTTPS_DOCUMENT))
        assert oidc.discover("https://accounts.example") == HTTPS_DOCUMENT
    oidc.clear_cache()
