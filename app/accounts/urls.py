from django.urls import path

from accounts import views

app_name = "auth"

urlpatterns = [
    path("google/login", views.google_login, name="google-login"),
    path("google/callback", views.google_callback, name="google-callback"),
    path("logout", views.logout_view, name="logout"),
]
