from django.contrib import admin

from logs.models import LogRecord


@admin.register(LogRecord)
class LogRecordAdmin(admin.ModelAdmin):
    list_display = ("created_at", "level", "source", "message", "user")
    list_filter = ("level", "source")
    search_fields = ("message", "source")
    date_hierarchy = "created_at"
    raw_id_fields = ("user",)
    readonly_fields = ("created_at",)
