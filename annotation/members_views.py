"""The campaign members page (admins): list, add one, add many (CSV of user names or a
group), invite (and resend a pending invitation), remove, and move a member on (admit a
qualifier, restore a quarantined one).

The members are listed 100 a page in the API's keyset order (user name, then id:
``core.paging.keyset_page``), with "Previous"/"Next" links carrying the cursor and an optional
user-name filter ``q``. Every form posts to a URL that carries the page's query (``q``,
``after``/``before``), so that an action comes back to the page it was taken on.

POST/redirect/GET: each action redirects back to that page with a message; an input the
services reject re-renders that page with the error, status 400.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation.models import Campaign, CampaignMember
from annotation.selectors import (
    MEMBERS_ORDER,
    campaign_for_admin,
    campaign_members,
    campaign_members_ordered,
)
from annotation.services.members import (
    BulkResult,
    csv_text_from_upload,
    member_add,
    member_admit,
    member_invite,
    member_reinvite,
    member_remove,
    member_restore,
    members_add_group,
    members_add_usernames,
    usernames_from_csv,
)
from core.errors import BadRequest
from core.http import error_into
from core.paging import keyset_page, query_string
from core.requests import SignedInRequest

TEMPLATE = "annotation/members.html"
ROLE_CHOICES = CampaignMember.Role.choices
PAGE_SIZE = 100


class ListingForm(forms.Form):
    """Which page of the list: the user-name filter and the cursor of a page link."""

    q = forms.CharField(max_length=150, required=False, strip=True)
    after = forms.CharField(max_length=2000, required=False)
    before = forms.CharField(max_length=2000, required=False)


def _listing(request: SignedInRequest) -> dict[str, str]:
    """The page's query parameters that are set (read from the query string on a POST too,
    where each form's URL carries them); BadRequest for a filter or cursor out of shape."""
    form = ListingForm(request.GET)
    if not form.is_valid():
        raise BadRequest("The member filter or page cursor is not valid: follow the page links.")
    return {name: value for name, value in form.cleaned_data.items() if value}


def _back(campaign: Campaign, listing: dict[str, str]) -> HttpResponse:
    """Back to the page the action was taken on."""
    url = reverse("campaign-members", args=[campaign.pk])
    query = query_string(**listing)
    return redirect(f"{url}?{query}" if query else url)


class _MembersForm(forms.Form):
    """The page shows four of these: each gets ids of its own (``add_username``), so that no
    two share one and each label names a field of its own form; POST names stay the same."""

    id_prefix = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", f"{self.id_prefix}_%s")
        super().__init__(*args, **kwargs)


class AddMemberForm(_MembersForm):
    id_prefix = "add"
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class BulkMembersForm(_MembersForm):
    id_prefix = "bulk"
    usernames = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        help_text="CSV: one user name per row (first column); a 'username' header is skipped.",
    )
    csv_file = forms.FileField(required=False, label="or a CSV file")
    role = forms.ChoiceField(choices=ROLE_CHOICES)

    def text(self) -> str:
        upload = self.cleaned_data.get("csv_file")
        if upload is not None:
            return csv_text_from_upload(upload)
        return self.cleaned_data.get("usernames") or ""


class GroupMembersForm(_MembersForm):
    id_prefix = "group"
    group = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class InviteForm(_MembersForm):
    id_prefix = "invite"
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES)


def _render(
    request: SignedInRequest,
    campaign: Campaign,
    listing: dict[str, str],
    *,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    members = campaign_members_ordered(campaign=campaign)
    name = listing.get("q", "")
    if name:
        members = members.filter(user__username__icontains=name)
    page = keyset_page(
        members,
        order=MEMBERS_ORDER,
        size=PAGE_SIZE,
        after=listing.get("after"),
        before=listing.get("before"),
    )
    context: dict[str, Any] = {
        "campaign": campaign,
        "rows": campaign_members(campaign=campaign, members=page.rows),
        "page": page,
        "page_size": PAGE_SIZE,
        "total": members.count(),
        "q": name,
        # The forms post to URLs carrying this, to come back to this very page.
        "page_query": query_string(**listing),
        "first_query": query_string(q=name),
        "next_query": page.next_cursor and query_string(q=name, after=page.next_cursor),
        "previous_query": page.previous_cursor
        and query_string(q=name, before=page.previous_cursor),
        "groups": Group.objects.order_by("name").values_list("name", flat=True),
        "add_form": AddMemberForm(),
        "bulk_form": BulkMembersForm(),
        "group_form": GroupMembersForm(),
        "invite_form": InviteForm(),
        "error": error,
    }
    return render(request, TEMPLATE, context, status=status)


@login_required
@require_GET
def members_page(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    return _render(request, campaign, _listing(request))


def _bulk_message(result: BulkResult) -> str:
    text = f"Added {len(result.added)} member(s)."
    if result.already:
        text += f" {len(result.already)} were members already (role updated)."
    return text


def _apply(request: SignedInRequest, campaign: Campaign, action: str) -> str:
    """Run the action the form names; the message to show. Raises BadRequest on bad input."""
    if action == "add":
        form = AddMemberForm(request.POST)
        if not form.is_valid():
            raise BadRequest("Give a user name and a role.")
        user = get_user_model().objects.filter(username=form.cleaned_data["username"]).first()
        if user is None:
            raise BadRequest(f"No user named {form.cleaned_data['username']!r}.")
        member_add(campaign=campaign, user=user, role=form.cleaned_data["role"], by=request.user)
        return f"{user.get_username()} is a member ({form.cleaned_data['role']})."
    if action == "bulk":
        bulk = BulkMembersForm(request.POST, request.FILES)
        if not bulk.is_valid():
            raise BadRequest("Give user names (or a CSV file) and a role.")
        names = usernames_from_csv(bulk.text())
        result = members_add_usernames(
            campaign=campaign,
            usernames=names,
            role=bulk.cleaned_data["role"],
            by=request.user,
        )
        return _bulk_message(result)
    if action == "group":
        group = GroupMembersForm(request.POST)
        if not group.is_valid():
            raise BadRequest("Give a group and a role.")
        result = members_add_group(
            campaign=campaign,
            group_name=group.cleaned_data["group"],
            role=group.cleaned_data["role"],
            by=request.user,
        )
        return _bulk_message(result)
    if action == "invite":
        invite = InviteForm(request.POST)
        if not invite.is_valid():
            raise BadRequest("Give a user name, a valid e-mail (or none) and a role.")
        invitation = member_invite(
            campaign=campaign,
            username=invite.cleaned_data["username"],
            email=invite.cleaned_data["email"],
            role=invite.cleaned_data["role"],
            by=request.user,
        )
        link = request.build_absolute_uri(invitation.set_password_path)
        return (
            f"Invited {invitation.member.user.get_username()}. Send them this one-time link to set "
            f"their password: {link}"
        )
    raise BadRequest(f"Unknown action {action!r}.")


@login_required
@require_POST
def members_change(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    listing = _listing(request)  # before acting: a bad page link changes nothing
    outcome: dict[str, Any] = {}
    with error_into(outcome):  # a refusal is shown on the page, above the forms
        outcome["notice"] = _apply(request, campaign, request.POST.get("action", ""))
    if "error" in outcome:
        return _render(
            request, campaign, listing, error=outcome["error"], status=outcome["error_status"]
        )
    messages.success(request, outcome["notice"])
    return _back(campaign, listing)


@login_required
@require_POST
def member_change(request: SignedInRequest, campaign_id: int, user_id: int) -> HttpResponse:
    """Remove a member, admit a qualifier, restore a quarantined member, or resend a pending
    invitee's invitation (a new one-time link)."""
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    listing = _listing(request)  # before acting: a bad page link changes nothing
    action = request.POST.get("action", "")
    if action == "remove":
        removal: dict[str, Any] = {}
        with error_into(removal):  # the campaign's last admin, for one: said on the page, 409
            member_remove(campaign=campaign, user_id=user_id, by=request.user)
        if "error" in removal:
            return _render(
                request, campaign, listing, error=removal["error"], status=removal["error_status"]
            )
        messages.success(request, "Removed from the campaign.")
        return _back(campaign, listing)
    member = get_object_or_404(
        CampaignMember.objects.select_related("campaign"), campaign=campaign, user_id=user_id
    )
    if action == "resend_invitation":
        outcome: dict[str, Any] = {}
        with error_into(outcome):  # not a pending invitee: said on the page, 409
            invitation = member_reinvite(campaign=campaign, user_id=user_id, by=request.user)
        if "error" in outcome:
            return _render(
                request, campaign, listing, error=outcome["error"], status=outcome["error_status"]
            )
        link = request.build_absolute_uri(invitation.set_password_path)
        messages.success(
            request,
            f"New invitation for {member.user.get_username()}: send them this one-time link to "
            f"set their password (the link given before no longer works): {link}",
        )
        return _back(campaign, listing)
    if action == "admit":
        done = member_admit(member=member, reason="admitted by an admin", by=request.user)
    elif action == "restore":
        done = member_restore(member=member, by=request.user)
    else:
        return _render(request, campaign, listing, error=f"Unknown action {action!r}.", status=400)
    if done:
        messages.success(request, f"{member.user.get_username()} is now {member.state}.")
    else:
        messages.info(request, f"{member.user.get_username()} is {member.state}: nothing to do.")
    return _back(campaign, listing)
