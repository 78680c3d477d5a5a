"""Evaluation sets on the model page and the dashboard (htmx fragment), and their upload."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from annotation.models import Campaign
from annotation.roles import Role, user_has_role
from annotation.selectors import campaign_for_admin
from core.http import error_into
from core.requests import SignedInRequest
from scoring.evaluation.reading import evaluation_upload_bound
from scoring.evaluation.selectors import evaluation_table
from scoring.evaluation.services import evaluation_set_upload_file


class EvaluationSetForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, help_text="Default: the file's name.")
    file = forms.FileField(help_text="JSONL, JSON, CSV or Parquet, optionally .gz")
    shared = forms.BooleanField(required=False, help_text="Shared by every campaign.")


def _render(
    request: SignedInRequest,
    campaign: Campaign,
    *,
    form: EvaluationSetForm | None = None,
    error: str = "",
    message: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "campaign": campaign,
        "table": evaluation_table(campaign=campaign),
        "form": form or EvaluationSetForm(),
        "upload_error": error,
        "upload_message": message,
        "can_share": user_has_role(request.user, Role.ADMIN),
    }
    if request.htmx and status >= 400:
        # htmx swaps only 2xx, 409 and 422 (the responseHandling in _head.html): a refused
        # upload's panel, sent with its 400 or 403, was never shown.
        status = 422
    return render(request, "scoring/_evaluations.html", context, status=status)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def campaign_evaluations(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    """The fragment (the model page and the dashboard load it); without htmx the model page."""
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    if not request.htmx:
        return redirect("scoring-campaign-models", campaign_id=campaign.pk)
    return _render(request, campaign)


@login_required
@require_POST
@evaluation_upload_bound
def evaluation_set_upload_view(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    form = EvaluationSetForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render(request, campaign, form=form, error="Choose a file.", status=400)
    if form.cleaned_data["shared"] and not user_has_role(request.user, Role.ADMIN):
        # As the API's shared route: a campaign's admin must not replace every campaign's set.
        error = "Only a site admin can upload a set shared by every campaign."
        return _render(request, campaign, form=form, error=error, status=403)
    upload = form.cleaned_data["file"]
    filename = upload.name or "evaluation.jsonl"
    refused: dict[str, Any] = {}
    with error_into(refused):
        refused["set"], refused["note"] = evaluation_set_upload_file(
            campaign=None if form.cleaned_data["shared"] else campaign,
            name=form.cleaned_data["name"] or filename,
            upload=upload,
            filename=filename,
            user=request.user,
        )
    if "error" in refused:
        return _render(
            request, campaign, form=form, error=refused["error"], status=refused["error_status"]
        )
    evaluation_set = refused["set"]
    stored = (
        f"{evaluation_set.name}: {evaluation_set.pairs_count} pairs in "
        f"{len(evaluation_set.subsets)} subsets"
    )
    # With the broker down the set is stored all the same; the note says its evaluation waits.
    note = refused["note"]
    message = f"{stored}. {note}" if note else f"{stored}; ready versions are being evaluated."
    if request.htmx:
        return _render(request, campaign, message=message)
    return redirect("scoring-campaign-models", campaign_id=campaign.pk)
