from django.contrib import admin

from problems.models import Problem, Submission


@admin.register(Problem)
class ProblemAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "created_by", "created_at")
    search_fields = ("title",)
    raw_id_fields = ("created_by",)


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ("id", "problem", "user", "language", "status", "created_at")
    list_filter = ("status", "language")
    raw_id_fields = ("problem", "user")
