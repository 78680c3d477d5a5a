from __future__ import annotations

from django.contrib import admin

from scoring.models import ExportSnapshot, Job, ModelVersion


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "campaign", "kind", "status", "progress", "created_at"]
    list_filter = ["kind", "status"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["number", "campaign", "mode", "heldout_accuracy", "is_active", "created_at"]


admin.site.register(ExportSnapshot)
