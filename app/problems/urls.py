from django.urls import path

from problems import views

urlpatterns = [
    path("problems/", views.problems, name="problems"),
    path("problems/<int:problem_id>/", views.problem_detail, name="problem-detail"),
    path("submissions/", views.submissions, name="submissions"),
]
