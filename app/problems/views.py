"""JSON API: reads are open, writes need a signed-in session and CSRF."""

from __future__ import annotations

from typing import Any

from core.http import BadRequest, api_view, error, json_body
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from logs.models import LogRecord

from problems.models import Problem, Submission

MAX_PAGE = 200


def _time(value: Any) -> str:
    """ISO 8601 in the site's time zone (Asia/Seoul)."""
    return timezone.localtime(value).isoformat()


def problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "id": problem.pk,
        "title": problem.title,
        "statement": problem.statement,
        "created_by": problem.created_by.name if problem.created_by else None,
        "created_at": _time(problem.created_at),
    }


def submission_json(submission: Submission, viewer: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": submission.pk,
        "problem": submission.problem_id,
        "user": submission.user.name or f"user {submission.user_id}",
        "language": submission.language,
        "status": submission.status,
        "created_at": _time(submission.created_at),
    }
    if viewer.is_authenticated and viewer.pk == submission.user_id:
        data["code"] = submission.code
    return data


def _limit(request: HttpRequest) -> int:
    raw = request.GET.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("invalid query", {"limit": ["must be an integer"]}) from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest("invalid query", {"limit": [f"must be between 1 and {MAX_PAGE}"]})
    return limit


def _text(
    data: dict[str, Any],
    name: str,
    errors: dict[str, list[str]],
    *,
    required: bool,
    max_length: int | None = None,
) -> str:
    value = data.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        errors[name] = ["must be a string"]
        return ""
    value = value.strip()
    if required and not value:
        errors[name] = ["this field is required"]
    elif max_length is not None and len(value) > max_length:
        errors[name] = [f"at most {max_length} characters"]
    return value


@api_view(("GET", "POST"))
def problems(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        data = json_body(request)
        errors: dict[str, list[str]] = {}
        title = _text(data, "title", errors, required=True, max_length=200)
        statement = _text(data, "statement", errors, required=False, max_length=20000)
        if errors:
            raise BadRequest("invalid fields", errors)
        problem = Problem.objects.create(title=title, statement=statement, created_by=request.user)
        LogRecord.objects.create(
            source="problems", message=f"problem {problem.pk} created", user=request.user
        )
        return JsonResponse(problem_json(problem), status=201)
    limit = _limit(request)
    queryset = Problem.objects.select_related("created_by")
    items = [problem_json(p) for p in queryset[:limit]]
    return JsonResponse({"count": queryset.count(), "results": items})


@api_view(("GET",))
def problem_detail(request: HttpRequest, problem_id: int) -> HttpResponse:
    problem = Problem.objects.select_related("created_by").filter(pk=problem_id).first()
    if problem is None:
        return error(404, f"problem {problem_id} does not exist")
    return JsonResponse(problem_json(problem))


@api_view(("GET", "POST"))
def submissions(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        data = json_body(request)
        errors: dict[str, list[str]] = {}
        problem = None
        problem_id = data.get("problem")
        if problem_id is None or problem_id == "":
            errors["problem"] = ["this field is required"]
        elif not isinstance(problem_id, int) or isinstance(problem_id, bool):
            errors["problem"] = ["must be a problem id (integer)"]
        else:
            problem = Problem.objects.filter(pk=problem_id).first()
            if problem is None:
                errors["problem"] = [f"problem {problem_id} does not exist"]
        language = _text(data, "language", errors, required=True)
        if language and language not in Submission.Language.values:
            errors["language"] = ["must be one of: " + ", ".join(Submission.Language.values)]
        code = _text(data, "code", errors, required=True, max_length=100_000)
        if errors:
            raise BadRequest("invalid fields", errors)
        assert problem is not None
        submission = Submission.objects.create(
            problem=problem, user=request.user, language=language, code=code
        )
        LogRecord.objects.create(
            source="submissions",
            message=f"submission {submission.pk} for problem {problem.pk}",
            user=request.user,
        )
        return JsonResponse(submission_json(submission, request.user), status=201)
    limit = _limit(request)
    queryset = Submission.objects.select_related("user")
    problem_filter = request.GET.get("problem")
    if problem_filter:
        if not problem_filter.isdigit():
            raise BadRequest("invalid query", {"problem": ["must be a problem id (integer)"]})
        queryset = queryset.filter(problem_id=int(problem_filter))
    items = [submission_json(s, request.user) for s in queryset[:limit]]
    return JsonResponse({"count": queryset.count(), "results": items})
