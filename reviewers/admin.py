from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from reviewers.models import Adjudication, Escalation


class ReadOnlyAdmin(admin.ModelAdmin):
    """Escalations open through the rules and close through adjudication, whose decisions are
    final: the Django admin only shows them, so nobody edits a decision behind the services."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdmin):
    list_display = ["id", "pair", "campaign", "reason", "status", "claimed_by", "deadline"]
    list_filter = ["status", "reason", "campaign"]
    raw_id_fields = ["pair"]
    # claimed_by is nullable, which the admin's own select_related does not follow.
    list_select_related = ["pair", "campaign", "claimed_by"]


@admin.register(Adjudication)
class AdjudicationAdmin(ReadOnlyAdmin):
    list_display = ["id", "pair", "expert", "decision", "preference", "created_at"]
    list_filter = ["decision"]
    raw_id_fields = ["pair", "escalation"]
