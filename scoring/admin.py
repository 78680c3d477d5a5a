from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.errors import ApplicationError
from scoring.loop.registry import model_version_activate, model_version_archive
from scoring.models import ExportSnapshot, Job, ModelVersion


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Jobs are created by their services and moved on by their workers (claims fenced by
    attempt, cancel through the job pages and API): here they are only shown. An edited status
    would orphan a running worker or revive a finished job."""

    list_display = ["id", "campaign", "kind", "status", "progress", "created_at"]
    list_filter = ["kind", "status"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions are registered by training jobs and change state only through the registry
    (``scoring.loop.registry``), which keeps one ready, non-gold version active per campaign
    and never archives the active one: every field is read-only here, and Activate and
    Archive are actions that go through it."""

    list_display = [
        "number",
        "campaign",
        "kind",
        "mode",
        "heldout_accuracy",
        "status",
        "is_active",
        "created_at",
    ]
    list_filter = ["status", "kind", "is_active"]
    actions = ["activate", "archive"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: ModelVersion | None = None
    ) -> list[str]:
        return [field.name for field in ModelVersion._meta.fields if not field.auto_created]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a version is a checkpoint a training job registered

    @admin.action(description="Activate the selected version (one per campaign)")
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        campaigns = Counter(queryset.values_list("campaign_id", flat=True))
        several = [pk for pk, count in campaigns.items() if count > 1]
        if several:
            # Each activation replaces the last: only one of them could end up active.
            self.message_user(
                request,
                "a campaign has one active version: select one version per campaign",
                messages.ERROR,
            )
            queryset = queryset.exclude(campaign_id__in=several)
        self._apply(request, queryset, model_version_activate, "is now the active version")

    @admin.action(description="Archive the selected versions")
    def archive(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        self._apply(request, queryset, model_version_archive, "is archived")

    def _apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[ModelVersion],
        change: Callable[..., ModelVersion],
        done: str,
    ) -> None:
        for version in queryset.select_related("campaign").order_by("campaign_id", "number"):
            try:
                change(version=version)
            except ApplicationError as error:
                self.message_user(request, f"{version}: {error.message}", messages.ERROR)
            else:
                self.message_user(request, f"{version} {done}", messages.SUCCESS)


admin.site.register(ExportSnapshot)
