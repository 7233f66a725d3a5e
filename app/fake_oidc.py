#!/usr/bin/env python3
"""A fake OpenID Connect provider for local use and tests (stdlib + cryptography).

    python app/fake_oidc.py --port 9400 \
        --public-url http://127.0.0.1:9400 --internal-url http://oidc:9400

- The discovery document's issuer is the INTERNAL url (what the app is
  configured with, GOOGLE_OIDC_ISSUER); authorization_endpoint is on the PUBLIC
  url (the browser goes there); token/userinfo endpoints are on the INTERNAL url
  (the app calls them server to server).
- /authorize auto-approves: it redirects to redirect_uri with code and state.
  It requires PKCE with S256 (code_challenge, code_challenge_method=S256), and
  /token the matching code_verifier, so the replica proves the app sends them.
  The user comes from login_hint: an email ("alice@example.test") or a subject
  ("alice"); without it a fixed test user signs in.
- /token (client_secret_post or client_secret_basic) returns an RS256 id_token
  with iss/aud/sub/email/name/nonce/exp, as Google does. The RSA key is made at
  start (never stored); its public half is at /jwks (the discovery's jwks_uri), so
  the app verifies the replica's tokens exactly as it verifies Google's.
- /last-authorize returns the last authorize request's parameters as JSON, so
  tests can assert e.g. the redirect_uri the app sent. /healthz answers "ok".

Not a security boundary: every request is approved.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

DEFAULT_USER = {
    "sub": "100000000000000000001",
    "email": "test.user@example.test",
    "name": "Test User",
}
CODE_TTL = 300


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_challenge(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode()).digest())


def b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class Signer:
    """An RSA key made at start (a fresh one each run, never written anywhere)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid}
        return {"keys": [{**jwk, "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e)}]}

    def make_jwt(self, claims: dict[str, Any]) -> str:
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode()
        signature = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{b64url(signature)}"


def user_from_hint(hint: str) -> dict[str, str]:
    hint = hint.strip()
    if not hint:
        return dict(DEFAULT_USER)
    if "@" in hint:
        email = hint.lower()
        digest = hashlib.sha256(email.encode()).hexdigest()
        sub = str(int(digest[:15], 16)).rjust(21, "1")[:21]
        local = email.split("@", 1)[0]
        return {"sub": sub, "email": email, "name": local.replace(".", " ").title()}
    return {"sub": hint, "email": f"{hint}@example.test", "name": hint.title()}


class Provider:
    """The provider's state, shared by all handler threads."""

    def __init__(
        self,
        public_url: str,
        internal_url: str,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self.internal_url = internal_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.signer = Signer()
        self.lock = threading.Lock()
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.last_authorize: dict[str, str] | None = None

    @property
    def issuer(self) -> str:
        return self.internal_url

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.public_url}/authorize",
            "token_endpoint": f"{self.internal_url}/token",
            "userinfo_endpoint": f"{self.internal_url}/userinfo",
            "jwks_uri": f"{self.internal_url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["iss", "aud", "sub", "email", "email_verified", "name", "nonce"],
        }


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-oidc/1"
    provider: Provider  # set on the subclass by make_server()
    quiet = False

    # --- plumbing ------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            sys.stderr.write("fake-oidc: " + (format % args) + "\n")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Path only: codes and states in query strings stay out of the log.
        self.log_message("%s %s %s", self.command, urlsplit(self.path).path, code)

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    # --- routes --------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/.well-known/openid-configuration":
            self.send_json(200, self.provider.discovery())
        elif path == "/authorize":
            self.authorize()
        elif path == "/userinfo":
            self.userinfo()
        elif path == "/jwks":
            self.send_json(200, self.provider.signer.jwks())
        elif path == "/last-authorize":
            with self.provider.lock:
                last = self.provider.last_authorize
            if last is None:
                self.send_json(404, {"error": "no authorize request yet"})
            else:
                self.send_json(200, last)
        elif path == "/healthz":
            self.send_text(200, "ok")
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path == "/token":
            self.token()
        else:
            self.send_json(404, {"error": "not found"})

    def authorize(self) -> None:
        params = self.query()
        with self.provider.lock:
            self.provider.last_authorize = dict(params)
        redirect_uri = params.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.send_text(400, "invalid_request: redirect_uri must be an absolute http(s) URL")
            return
        problems = []
        if params.get("response_type") != "code":
            problems.append("response_type must be 'code'")
        if not params.get("client_id"):
            problems.append("client_id is required")
        elif self.provider.client_id and params["client_id"] != self.provider.client_id:
            problems.append("unknown client_id")
        if "openid" not in params.get("scope", "").split():
            problems.append("scope must include 'openid'")
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            problems.append("PKCE is required: code_challenge with code_challenge_method=S256")
        if problems:
            self.send_text(400, "invalid_request: " + "; ".join(problems))
            return
        code = secrets.token_urlsafe(24)
        with self.provider.lock:
            self.provider.codes[code] = {
                "client_id": params["client_id"],
                "redirect_uri": redirect_uri,
                "nonce": params.get("nonce"),
                "code_challenge": params["code_challenge"],
                "user": user_from_hint(params.get("login_hint", "")),
                "expires": time.time() + CODE_TTL,
            }
        query = parse_qs(parts.query)
        query["code"] = [code]
        if "state" in params:
            query["state"] = [params["state"]]
        location = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _client_credentials(self, form: dict[str, str]) -> tuple[str, str]:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                raw = base64.b64decode(auth[6:]).decode()
                client_id, _, client_secret = raw.partition(":")
                return client_id, client_secret
            except (ValueError, UnicodeDecodeError):
                return "", ""
        return form.get("client_id", ""), form.get("client_secret", "")

    def token(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body).items()}
        client_id, client_secret = self._client_credentials(form)
        if not client_id or not client_secret:
            self.send_json(401, {"error": "invalid_client"})
            return
        if self.provider.client_id and client_id != self.provider.client_id:
            self.send_json(401, {"error": "invalid_client"})
            return
        if self.provider.client_secret and client_secret != self.provider.client_secret:
            self.send_json(401, {"error": "invalid_client"})
            return
        if form.get("grant_type") != "authorization_code":
            self.send_json(400, {"error": "unsupported_grant_type"})
            return
        with self.provider.lock:
            grant = self.provider.codes.pop(form.get("code", ""), None)
        if (
            grant is None
            or grant["expires"] < time.time()
            or grant["client_id"] != client_id
            or grant["redirect_uri"] != form.get("redirect_uri")
            or pkce_challenge(form.get("code_verifier", "")) != grant["code_challenge"]
        ):
            self.send_json(400, {"error": "invalid_grant"})
            return
        user = grant["user"]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.provider.issuer,
            "aud": client_id,
            "azp": client_id,
            "sub": user["sub"],
            "email": user["email"],
            "email_verified": True,
            "name": user["name"],
            "iat": now,
            "exp": now + 3600,
        }
        if grant["nonce"]:
            claims["nonce"] = grant["nonce"]
        access_token = secrets.token_urlsafe(24)
        with self.provider.lock:
            self.provider.access_tokens[access_token] = claims
        self.send_json(
            200,
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "openid email profile",
                "id_token": self.provider.signer.make_jwt(claims),
            },
        )

    def userinfo(self) -> None:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self.provider.lock:
            claims = self.provider.access_tokens.get(token)
        if claims is None:
            self.send_json(401, {"error": "invalid_token"})
            return
        keys = ("sub", "email", "email_verified", "name")
        self.send_json(200, {k: claims[k] for k in keys})


def make_server(
    host: str,
    port: int,
    public_url: str,
    internal_url: str,
    client_id: str | None = None,
    client_secret: str | None = None,
    quiet: bool = False,
) -> ThreadingHTTPServer:
    provider = Provider(public_url, internal_url, client_id, client_secret)
    handler = type("BoundHandler", (Handler,), {"provider": provider, "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--public-url", help="base URL the browser uses (authorize)")
    parser.add_argument("--internal-url", help="base URL the app uses (issuer, token)")
    parser.add_argument("--client-id", help="accept only this client_id")
    parser.add_argument("--client-secret", help="accept only this client secret")
    parser.add_argument("--quiet", action="store_true", help="no request log")
    args = parser.parse_args(argv)
    default_url = f"http://127.0.0.1:{args.port}"
    public_url = args.public_url or default_url
    internal_url = args.internal_url or public_url
    server = make_server(
        args.host,
        args.port,
        public_url,
        internal_url,
        args.client_id,
        args.client_secret,
        args.quiet,
    )
    print(
        f"fake-oidc: listening on {args.host}:{args.port} "
        f"(issuer {internal_url}, authorize at {public_url}/authorize)",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
