from accounts.throttle import throttled
from core import views as core_views
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # /healthz and /readyz are answered by core.middleware.HealthCheckMiddleware
    # before host validation; these routes only make them visible to reverse().
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("api/version", core_views.version, name="version"),
    path("api/request-info", core_views.request_info, name="request-info"),
    path("api/csrf/", core_views.csrf, name="csrf"),
    path("api/me/", core_views.me, name="me"),
    path("api/", include("problems.urls")),
    path("auth/", include("accounts.urls")),
    # Before admin.site.urls: the same path, so the admin's own links reach it too.
    path("admin/login/", throttled(admin.site.login), name="admin-login"),
    path("admin/", admin.site.urls),
]

handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.page_not_found"
handler500 = "core.views.server_error"
