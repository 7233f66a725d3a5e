"""The JSON API: reads open, writes need a session + CSRF, validation errors name fields."""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime
from typing import Any

import pytest
from django.test import Client

from tests.app.support import ORIGIN, csrf_token


def post(client: Client, url: str, body: Any, token: str | None, origin: str | None = ORIGIN):
    headers: dict[str, str] = {}
    if token is not None:
        headers["X-CSRFToken"] = token
    if origin is not None:
        headers["Origin"] = origin
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", headers=headers)


def test_create_and_read_a_problem(signed_in: tuple[Client, str, Any]) -> None:
    client, token, user = signed_in
    response = post(client, "/api/problems/", {"title": "Two Sum", "statement": "Add."}, token)
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["title"] == "Two Sum"
    assert created["created_by"] == user.name
    # created_at is in the site's time zone (Asia/Seoul, +09:00).
    stamp = datetime.fromisoformat(created["created_at"])
    assert stamp.utcoffset() == datetime.now(zoneinfo.ZoneInfo("Asia/Seoul")).utcoffset()

    anonymous = Client(HTTP_HOST="jobtory.test", HTTP_X_FORWARDED_PROTO="https")
    detail = anonymous.get(f"/api/problems/{created['id']}/")
    assert detail.status_code == 200
    assert detail.json() == created
    listing = anonymous.get("/api/problems/")
    assert listing.status_code == 200
    assert created["id"] in [p["id"] for p in listing.json()["results"]]
    assert listing.json()["count"] >= 1


def test_problem_stored_in_postgres(signed_in: tuple[Client, str, Any]) -> None:
    from django.db import connection
    from problems.models import Problem

    client, token, _ = signed_in
    response = post(client, "/api/problems/", {"title": "Stored"}, token)
    assert response.status_code == 201
    assert connection.vendor == "postgresql"
    assert Problem.objects.get(pk=response.json()["id"]).title == "Stored"


def test_missing_problem_is_404_json(client: Client) -> None:
    response = client.get("/api/problems/999999/")
    assert response.status_code == 404
    assert "999999" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": "   "}, "title"),
        ({"title": 42}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "statement": ["not", "text"]}, "statement"),
    ],
)
def test_problem_validation_errors_name_the_field(
    signed_in: tuple[Client, str, Any], body: dict[str, Any], field: str
) -> None:
    client, token, _ = signed_in
    response = post(client, "/api/problems/", body, token)
    assert response.status_code == 400
    payload = response.json()
    assert field in payload["fields"]
    assert field in payload["error"]


def test_invalid_json_is_400(signed_in: tuple[Client, str, Any]) -> None:
    client, token, _ = signed_in
    response = post(client, "/api/problems/", "{not json", token)
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


def test_anonymous_write_is_401(client: Client) -> None:
    token = csrf_token(client)
    response = post(client, "/api/problems/", {"title": "nope"}, token)
    assert response.status_code == 401
    assert "authentication required" in response.json()["error"]
    response = post(client, "/api/submissions/", {"problem": 1}, token)
    assert response.status_code == 401


def test_me_requires_sign_in(client: Client, signed_in: tuple[Client, str, Any]) -> None:
    anonymous = Client(HTTP_HOST="jobtory.test", HTTP_X_FORWARDED_PROTO="https")
    assert anonymous.get("/api/me/").status_code == 401
    me_client, _, user = signed_in
    me = me_client.get("/api/me/")
    assert me.status_code == 200
    assert me.json()["sub"] == user.google_sub


def test_method_not_allowed_is_json(signed_in: tuple[Client, str, Any]) -> None:
    client, token, _ = signed_in
    response = client.delete("/api/problems/", headers={"X-CSRFToken": token, "Origin": ORIGIN})
    assert response.status_code == 405
    assert "DELETE" in response.json()["error"]


def test_submissions_create_list_and_validate(signed_in: tuple[Client, str, Any]) -> None:
    client, token, user = signed_in
    problem = post(client, "/api/problems/", {"title": "FizzBuzz"}, token).json()
    body = {"problem": problem["id"], "language": "python", "code": "print(1)"}
    response = post(client, "/api/submissions/", body, token)
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["status"] == "pending"
    assert created["code"] == "print(1)"  # the author sees their code

    listing = client.get(f"/api/submissions/?problem={problem['id']}").json()
    assert [s["id"] for s in listing["results"]] == [created["id"]]
    anonymous = Client(HTTP_HOST="jobtory.test", HTTP_X_FORWARDED_PROTO="https")
    public = anonymous.get(f"/api/submissions/?problem={problem['id']}").json()
    assert public["results"][0]["id"] == created["id"]
    assert "code" not in public["results"][0]  # others see metadata only

    bad = post(client, "/api/submissions/", {"problem": 999999, "language": "cobol"}, token)
    assert bad.status_code == 400
    assert set(bad.json()["fields"]) == {"problem", "language", "code"}

    from logs.models import LogRecord

    record = LogRecord.objects.filter(source="submissions", user=user).first()
    assert record is not None and str(created["id"]) in record.message


def test_bad_query_parameters_are_400(client: Client) -> None:
    assert client.get("/api/problems/?limit=abc").json()["fields"] == {
        "limit": ["must be an integer"]
    }
    assert client.get("/api/submissions/?problem=x").status_code == 400
