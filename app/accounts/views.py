"""/auth/google/login, /auth/google/callback, /auth/logout."""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlencode, urlsplit

from core.http import error
from django.conf import settings
from django.contrib.auth import login, logout
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from logs.models import LogRecord

from accounts import oidc
from accounts.models import User

log = logging.getLogger(__name__)

SESSION_KEY = "oidc_login"
SCOPE = "openid email profile"


@require_GET
@never_cache
def google_login(request: HttpRequest) -> HttpResponse:
    # The state/nonce live in a host-only session cookie, and the provider returns
    # to GOOGLE_REDIRECT_URI's host: start there (e.g. www.example.com -> example.com).
    callback = urlsplit(settings.GOOGLE_REDIRECT_URI)
    if request.get_host().lower() != callback.netloc.lower():
        query = request.META.get("QUERY_STRING", "")
        target = f"{callback.scheme}://{callback.netloc}{request.path}"
        return HttpResponseRedirect(target + (f"?{query}" if query else ""))
    try:
        document = oidc.discover()
    except oidc.OIDCError as exc:
        return error(exc.status, exc.message)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    # PKCE (RFC 7636): a code intercepted on its way back is useless without the
    # verifier, which never leaves this session.
    verifier = secrets.token_urlsafe(64)
    request.session[SESSION_KEY] = {"state": state, "nonce": nonce, "code_verifier": verifier}
    params = {
        "client_id": settings.GOOGLE_CLIENT_ID,
        "redirect_uri": settings.GOOGLE_REDIRECT_URI,
        "response_type": "code",
        "scope": SCOPE,
        "state": state,
        "nonce": nonce,
        "code_challenge": oidc.pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    login_hint = request.GET.get("login_hint", "").strip()
    if login_hint:
        params["login_hint"] = login_hint[:254]
    endpoint = document["authorization_endpoint"]
    separator = "&" if "?" in endpoint else "?"
    return HttpResponseRedirect(endpoint + separator + urlencode(params))


@require_GET
@never_cache
def google_callback(request: HttpRequest) -> HttpResponse:
    try:
        user = _complete_login(request)
    except oidc.OIDCError as exc:
        log.info("google sign-in failed: %s", exc.message)
        LogRecord.objects.create(
            level=LogRecord.Level.WARNING, source="auth", message=f"sign-in failed: {exc.message}"
        )
        return error(exc.status, f"Google sign-in failed: {exc.message}")
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    LogRecord.objects.create(
        level=LogRecord.Level.INFO, source="auth", message="signed in", user=user
    )
    return HttpResponseRedirect(settings.FRONTEND_BASE_URL + "/")


def _complete_login(request: HttpRequest) -> User:
    if request.GET.get("error"):
        raise oidc.OIDCError(f"the provider answered {request.GET['error'][:100]!r}")
    pending = request.session.pop(SESSION_KEY, None)
    state = request.GET.get("state", "")
    code = request.GET.get("code", "")
    if not isinstance(pending, dict) or not {"state", "nonce", "code_verifier"} <= set(pending):
        raise oidc.OIDCError(
            "no sign-in is in progress in this browser session (start again at "
            "/auth/google/login; cookies must be enabled)"
        )
    if not state or not hmac.compare_digest(state, pending["state"]):
        raise oidc.OIDCError("the state parameter does not match this sign-in attempt")
    if not code:
        raise oidc.OIDCError("the provider did not return an authorization code")
    document = oidc.discover()
    tokens = oidc.exchange_code(document, code, pending["code_verifier"])
    _header, claims = oidc.decode_id_token(tokens["id_token"], document["jwks_uri"])
    oidc.validate_claims(claims, document["issuer"], pending["nonce"])
    return _upsert_user(claims)


def _upsert_user(claims: dict[str, object]) -> User:
    sub = str(claims["sub"])
    email = str(claims.get("email") or "")
    name = str(claims.get("name") or "")
    with transaction.atomic():
        user, created = User.objects.select_for_update().get_or_create(
            google_sub=sub,
            defaults={"email": email, "name": name},
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        else:
            # Refresh what Google may have changed; keep old values it did not send.
            fresh = (email or user.email, name or user.name)
            if (user.email, user.name) != fresh:
                user.email, user.name = fresh
                user.save(update_fields=["email", "name"])
    if not user.is_active:
        raise oidc.OIDCError("this account is disabled", status=403)
    return user


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return JsonResponse({"signed_in": False})
