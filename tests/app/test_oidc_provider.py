"""What the app accepts from the provider's discovery document: its own issuer only."""

from __future__ import annotations

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
