from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from annotation.aspects import AspectError, parse_aspects
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
from annotation.services.api_tokens import api_token_digest, api_token_issue
from annotation.services.campaigns import (
    SETTINGS_FIXED_ONCE_PAIRS,
    CampaignSettingLocked,
    campaign_changes_check,
    campaign_fixed_settings,
    campaign_set_annotators_per_pair,
    campaign_settings_saved,
)
from annotation.services.imports import campaign_rounds_lock
from annotation.services.members import member_add, member_remove
from core.admin_paging import EstimatedCountPaginator


class CampaignAdminForm(ModelForm):
    """Refuses what the settings API refuses (``campaign_changes_check``): an aspect that
    labels rate, dropped or given another scale. (The admin builds its Meta: model and
    fields.)"""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.instance.pk is None or "aspects" not in self.changed_data:
            return cleaned
        try:
            parse_aspects(cleaned.get("aspects"))
        except AspectError:
            return cleaned  # Campaign.clean says what is wrong with them
        stored = Campaign.objects.only("aspects").get(pk=self.instance.pk)
        changed = Campaign(pk=self.instance.pk, aspects=cleaned["aspects"])
        try:
            campaign_changes_check(
                campaign=changed, changed={"aspects": (stored.aspects, cleaned["aspects"])}
            )
        except CampaignSettingLocked as locked:
            raise ValidationError({"aspects": locked.message}) from locked
        return cleaned


def _posts_pair_bound_change(request: HttpRequest, campaign: Campaign) -> bool:
    """Whether a POST of the campaign's change form asks for another item kind, scale or
    annotators per pair than the campaign has (a deletion: always), the settings whose change
    waits for imports. A field the form does not show (read-only) is no change."""
    if request.POST.get("post") == "yes" or "annotators_per_pair" not in request.POST:
        return True  # the confirmed deletion page, or a form of unknown shape
    return any(
        name in request.POST and request.POST[name] != str(getattr(campaign, name))
        for name in (*SETTINGS_FIXED_ONCE_PAIRS, "annotators_per_pair")
    )


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignAdminForm
    list_display = [
        "name",
        "item_kind",
        "scale",
        "annotators_per_pair",
        "agreement_target",
        "created_at",
    ]
    search_fields = ["name"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """The item kind and scale are fixed once the campaign has pairs, as in the settings
        API (``campaign_fixed_settings``): its pairs and labels were stored under them."""
        fixed = campaign_fixed_settings(campaign=obj) if obj is not None else []
        return [*super().get_readonly_fields(request, obj), *fixed]

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Campaign | None:
        """On a POST (a change or a deletion, each in the admin's transaction), the campaign
        as committed once its imports and settings changes have: the rounds lock, then the
        row, in the order the settings API takes them. Held until the POST commits, so the
        read-only fields, the form's checks and the save all see the same campaign (an
        import could add pairs between the check of the scale and its save)."""
        campaign = super().get_object(request, object_id, from_field)
        if campaign is None or request.method != "POST":
            return campaign
        if _posts_pair_bound_change(request, campaign):
            # Only then: an import holds the lock until it commits, hours for a large file,
            # and a change of the guidelines need not wait for it (as in the settings API).
            campaign_rounds_lock(campaign.pk)
        return Campaign.objects.select_for_update(of=("self",), no_key=True).get(pk=campaign.pk)

    def save_model(
        self, request: HttpRequest, obj: Campaign, form: ModelForm[Campaign], change: bool
    ) -> None:
        """A change writes the fields the form changed, not the whole row. A changed
        annotators per pair goes through its service: the campaign's pairs in rounds and not
        yet settled take it too, and the admin is told what changed. Other changes set off
        what they set off through the settings API (campaign_settings_saved: new
        qualification settings judge the qualifying members again)."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        plain = [name for name in form.changed_data if name != "annotators_per_pair"]
        if plain:
            obj.save(update_fields=plain)
        if "annotators_per_pair" in form.changed_data:
            per_pair = obj.annotators_per_pair
            obj.annotators_per_pair = form.initial["annotators_per_pair"]
            result = campaign_set_annotators_per_pair(campaign=obj, annotators_per_pair=per_pair)
            self.message_user(request, result.message)
        campaign_settings_saved(campaign=obj, changed=form.changed_data)


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
    # Counting millions of rows on every page is slow: no second, unfiltered count beside a
    # filtered one, and the unfiltered list counts from the table's statistics.
    show_full_result_count = False
    paginator = EstimatedCountPaginator


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "status", "kind", "swapped", "lease_expires_at"]
    list_filter = ["status", "kind"]
    raw_id_fields = ["pair", "annotator", "round"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "preference", "confidence", "created_at"]
    raw_id_fields = ["assignment", "pair", "annotator"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator


admin.site.register(Round)


# Their forms name an assignment (and a label): a select of every row would load the tables.
@admin.register(Evidence)
class EvidenceAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "assignment_id", "label_id", "created_at"]
    raw_id_fields = ["assignment", "label"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator


@admin.register(CodeRun)
class CodeRunAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "status", "created_at"]
    raw_id_fields = ["user", "assignment"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator


admin.site.register(ImportJob)
admin.site.register(Corpus)
admin.site.register(Document)

# DRF's token admin lists each key and adds a token by storing a generated key: here the table
# holds digests (annotation.services.api_tokens), so its key column is of no use to anyone and
# a key it made would never authenticate.
admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class ApiTokenAdmin(TokenAdmin):
    """API tokens by user: adding one issues a key through the service and shows it once, in
    a message; a token is never edited (delete it and add another to replace it)."""

    list_display = ("user", "created")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        key = api_token_issue(user=obj.user)
        obj.key = api_token_digest(key)
        obj._state.adding = False
        self.message_user(
            request,
            f"The API token of {obj.user}: {key} (copy it now: it is stored as a digest and "
            "cannot be shown again).",
            messages.WARNING,
        )


def _admin(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


@admin.register(CampaignMember)
class CampaignMemberAdmin(admin.ModelAdmin):
    # Read-only state: changes go through the members page or API, which record transitions.
    list_display = ["user", "campaign", "role", "state", "added_at"]
    list_filter = ["role", "state"]
    search_fields = ["user__username", "campaign__name"]
    raw_id_fields = ["user"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Who added them is the service's to record; a membership stays one user's in one
        campaign (remove it and add another instead)."""
        fixed = ["state", "qualification", "added_by"]
        return [*fixed, "user", "campaign"] if obj is not None else fixed

    def save_model(
        self,
        request: HttpRequest,
        obj: CampaignMember,
        form: ModelForm[CampaignMember],
        change: bool,
    ) -> None:
        """Through member_add, as the members page and API add and change members: a new
        annotator starts qualifying where the campaign qualifies them, and a member made an
        expert gives up their leases."""
        member = member_add(campaign=obj.campaign, user=obj.user, role=obj.role, by=_admin(request))
        obj.pk, obj.state = member.pk, member.state

    # Deleting here is removing from the campaign: through member_remove, so the state
    # history ends in "removed" (a quarantine stops counting) and their leases end.
    def delete_model(self, request: HttpRequest, obj: CampaignMember) -> None:
        member_remove(campaign=obj.campaign, user_id=obj.user_id, by=_admin(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CampaignMember]) -> None:
        for member in queryset.select_related("campaign"):
            member_remove(campaign=member.campaign, user_id=member.user_id, by=_admin(request))


@admin.register(MemberTransition)
class MemberTransitionAdmin(admin.ModelAdmin):
    list_display = ["user", "campaign", "from_state", "to_state", "reason", "at", "by"]
    list_filter = ["to_state"]
    list_select_related = ["user", "campaign", "by"]  # by is nullable: not followed by default
    raw_id_fields = ["member", "user", "campaign", "by"]


@admin.register(Rewrite)
class RewriteAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "based_on", "author", "created_at"]
    raw_id_fields = ["pair", "label", "assignment"]
