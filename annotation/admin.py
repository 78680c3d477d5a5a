from __future__ import annotations

from django.contrib import admin

from annotation.models import (
    Assignment,
    Campaign,
    CampaignMember,
    CodeRun,
    Corpus,
    Document,
    Evidence,
    ImportJob,
    Label,
    MemberTransition,
    Pair,
    Rewrite,
    Round,
)


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "item_kind",
        "scale",
        "annotators_per_pair",
        "agreement_target",
        "created_at",
    ]
    search_fields = ["name"]


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "campaign",
        "status",
        "provenance",
        "priority",
        "is_gold",
        "task_category",
    ]
    list_filter = ["campaign", "status", "provenance", "is_gold"]
    search_fields = ["external_id", "content_hash"]
    raw_id_fields = ["round"]
    show_full_result_count = False  # counting millions of rows on every page is slow


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "status", "kind", "swapped", "lease_expires_at"]
    list_filter = ["status", "kind"]
    raw_id_fields = ["pair", "annotator", "round"]
    show_full_result_count = False


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "preference", "confidence", "created_at"]
    raw_id_fields = ["assignment", "pair", "annotator"]
    show_full_result_count = False


admin.site.register(Round)
admin.site.register(Evidence)
admin.site.register(CodeRun)
admin.site.register(ImportJob)
admin.site.register(Corpus)
admin.site.register(Document)


@admin.register(CampaignMember)
class CampaignMemberAdmin(admin.ModelAdmin):
    # Read-only state: changes go through the members page or API, which record transitions.
    list_display = ["user", "campaign", "role", "state", "added_at"]
    list_filter = ["role", "state"]
    search_fields = ["user__username", "campaign__name"]
    readonly_fields = ["state", "qualification"]


@admin.register(MemberTransition)
class MemberTransitionAdmin(admin.ModelAdmin):
    list_display = ["member", "from_state", "to_state", "reason", "at", "by"]
    list_filter = ["to_state"]
@admin.register(Rewrite)
class RewriteAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "based_on", "author", "created_at"]
    raw_id_fields = ["pair", "label", "assignment"]
