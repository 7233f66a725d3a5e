from django.conf import settings
from django.db import models


class Problem(models.Model):
    title = models.CharField(max_length=200)
    statement = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="problems",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return self.title


class Submission(models.Model):
    class Language(models.TextChoices):
        PYTHON = "python"
        JAVASCRIPT = "javascript"
        JAVA = "java"
        CPP = "cpp"
        C = "c"
        GO = "go"

    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    problem = models.ForeignKey(Problem, on_delete=models.CASCADE, related_name="submissions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions"
    )
    language = models.CharField(max_length=20, choices=Language.choices)
    code = models.TextField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"#{self.pk} {self.problem_id} by {self.user_id} ({self.status})"
