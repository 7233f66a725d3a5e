from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(
        self, google_sub: str, email: str = "", password: str | None = None, **extra: Any
    ) -> User:
        if not google_sub:
            raise ValueError("google_sub is required")
        user = self.model(google_sub=google_sub, email=self.normalize_email(email), **extra)
        if password:
            user.set_password(password)
        else:
            # Google users sign in through OIDC only.
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(
        self, google_sub: str, email: str = "", password: str | None = None, **extra: Any
    ) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(google_sub, email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person, identified by the `sub` claim of their Google ID token.

    `sub` never changes for a Google account; email and name may, and are
    refreshed at every sign-in.
    """

    google_sub = models.CharField("Google subject", max_length=255, unique=True)
    email = models.EmailField(blank=True, db_index=True)
    name = models.CharField(max_length=255, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "google_sub"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ("email",)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.email or self.google_sub

    def get_full_name(self) -> str:
        return self.name

    def get_short_name(self) -> str:
        return self.name.split(" ")[0] if self.name else self.email


class LoginFailure(models.Model):
    """A failed password sign-in at /admin/login/ (accounts/throttle.py counts them).

    In the database, not a per-process cache: every gunicorn worker on every host sees
    the same count. Rows older than the throttle window are deleted as new ones come.
    """

    ip = models.CharField(max_length=45, db_index=True)  # an IPv6 address fits
    username = models.CharField(max_length=255, db_index=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-at",)
