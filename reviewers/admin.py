from __future__ import annotations

from django.contrib import admin

from reviewers.models import Adjudication, Escalation


@admin.register(Escalation)
class EscalationAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "reason", "status", "claimed_by", "created_at"]
    list_filter = ["status", "reason"]
    raw_id_fields = ["pair"]


@admin.register(Adjudication)
class AdjudicationAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "expert", "decision", "preference", "created_at"]
    raw_id_fields = ["pair", "escalation"]
