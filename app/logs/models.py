from django.conf import settings
from django.db import models


class LogRecord(models.Model):
    """Metadata about an event: what, where, when, who. No payloads, no secrets."""

    class Level(models.TextChoices):
        DEBUG = "debug"
        INFO = "info"
        WARNING = "warning"
        ERROR = "error"

    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    source = models.CharField(max_length=100, db_index=True)
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="log_records",
    )

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"[{self.level}] {self.source}: {self.message[:60]}"

    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.message = self.message[:500]
        super().save(*args, **kwargs)
