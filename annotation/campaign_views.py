"""The site admin's "New campaign" page: the first settings, then on to importing pairs."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation.models import Campaign
from annotation.roles import Role, user_has_role
from annotation.services.campaigns import CREATE_FIELDS, campaign_create
from core.errors import ApplicationError
from core.requests import SignedInRequest


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = CREATE_FIELDS
        help_texts = {
            "annotators_per_pair": "Labels each pair gets before a consensus (3 is usual).",
            "gold_share": "Share of the work served as gold checks (0 to 1).",
            "retest_share": "Share of completed pairs sent back to one more annotator.",
            "round_size": "Pairs a round of the loop takes from the pool.",
            "auto_retrain": "Retrain as soon as a round is done.",
        }

    def validate_unique(self) -> None:
        """The service checks the name (and says so with a 409 on the API)."""


@login_required
@require_http_methods(["GET", "POST"])
def campaign_new(request: SignedInRequest) -> HttpResponse:
    if not user_has_role(request.user, Role.ADMIN):
        raise Http404  # as for other admin pages: no probing
    form = CampaignForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                campaign = campaign_create(created_by=request.user, **form.cleaned_data)
            except ApplicationError as error:
                form.add_error(None, error.message)
            else:
                messages.success(
                    request,
                    f"Campaign {campaign.name} created. Import its pairs, then add its members.",
                )
                return redirect("import-page", campaign_id=campaign.pk)
    return render(request, "annotation/campaign_new.html", {"form": form}, status=status)
