"""Model registry, "Retrain now" and job progress pages (htmx).

Each URL serves a full page, or to htmx just its fragment (``templates/scoring/_*.html``), so
the admin dashboard can embed the same fragments. POSTs from plain forms redirect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import trigger_client_event

from annotation.models import Campaign
from annotation.selectors import campaign_for_admin
from core.http import error_into
from core.requests import SignedInRequest
from scoring.jobs.runner import job_cancel
from scoring.loop.cross_validation import cross_validation_jobs
from scoring.loop.params import LoopParams
from scoring.loop.registry import (
    model_version_activate,
    model_version_rollback,
)
from scoring.loop.requests import loop_request
from scoring.loop.training import (
    LOOP_OPTIONS,
    base_model_check_access,
    job_params_from_settings,
    loop_options_for,
)
from scoring.loop.training_fields import RetrainForm
from scoring.loop.versions import (
    current_model_job,
    job_for_admin,
    job_log_tail,
    model_version_for_admin,
    model_versions_for_campaign,
)
from scoring.models import Job


def _versions_context(campaign: Campaign, error: str = "") -> dict:
    return {
        "campaign": campaign,
        "versions": model_versions_for_campaign(campaign=campaign),
        "registry_error": error,
    }


def _job_context(job: Job | None) -> dict:
    return {"job": job, "log_lines": job_log_tail(job=job) if job is not None else []}


@login_required
@vary_on_headers("HX-Request")
def campaign_models(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    if request.htmx:
        return render(request, "scoring/_model_versions.html", _versions_context(campaign))
    context = {
        **_versions_context(campaign),
        **_job_context(current_model_job(campaign=campaign)),
        "cross_validations": cross_validation_jobs(campaign=campaign),
    }
    return render(request, "scoring/models.html", context)


def _registry_change(
    request: SignedInRequest, campaign: Campaign, change: Callable[[], object]
) -> HttpResponse:
    refused: dict[str, Any] = {}
    with error_into(refused):
        change()
    if request.htmx:
        error = refused.get("error", "")
        return render(request, "scoring/_model_versions.html", _versions_context(campaign, error))
    return redirect("scoring-campaign-models", campaign_id=campaign.pk)


@login_required
@require_POST
def model_version_activate_view(request: SignedInRequest, version_id: int) -> HttpResponse:
    version = model_version_for_admin(version_id=version_id, user=request.user)
    return _registry_change(
        request, version.campaign, lambda: model_version_activate(version=version)
    )


@login_required
@require_POST
def model_version_rollback_view(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    return _registry_change(request, campaign, lambda: model_version_rollback(campaign=campaign))


@login_required
@require_POST
def campaign_retrain(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    """ "Retrain now": start the loop job (or show the one already running)."""
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    form = RetrainForm(request.POST)
    checked: dict[str, Any] = {}
    if form.is_valid():
        with error_into(checked):
            base_model_check_access(
                base_model=form.cleaned_data.get("base_model"), campaign=campaign, user=request.user
            )
            checked["params"] = {
                **job_params_from_settings(form.cleaned_data),
                **_loop_options(request.POST, campaign),
            }
        if "error" in checked:
            form.add_error(None, checked["error"])
    params = checked.get("params")
    if params is None:
        if request.htmx:
            errors = "; ".join(
                f"{name.replace('__all__', 'settings')}: {' '.join(str(m) for m in messages)}"
                for name, messages in form.errors.items()
            )
            return render(request, "scoring/_retrain_error.html", {"error": errors}, status=422)
        form.initial = loop_options_for(campaign=campaign)  # for boxes the post did not send
        context = {
            **_versions_context(campaign),
            "retrain_form": form,
            "job": None,
            "cross_validations": cross_validation_jobs(campaign=campaign),
        }
        return render(request, "scoring/models.html", context, status=400)
    job = loop_request(campaign=campaign, user=request.user, params=params)
    if request.htmx:
        return render(request, "scoring/_job_progress.html", _job_context(job))
    return redirect("scoring-job", job_id=job.pk)


def _loop_options(data: QueryDict, campaign: Campaign) -> dict[str, Any]:
    """The Retrain form's loop options. Each box sends a hidden "false" before its "true",
    so the last value is the box's state; a post without them (an older page, a script)
    keeps the campaign's choice rather than turning them off."""
    options: dict[str, Any] = loop_options_for(campaign=campaign)
    sent = {name: data[name] for name in LOOP_OPTIONS if name in data}
    checked = LoopParams.from_params(sent, fields=LOOP_OPTIONS)  # a JobError names a bad one
    options.update({name: getattr(checked, name) for name in sent})
    return options


@login_required
@vary_on_headers("HX-Request")
def job_detail(request: SignedInRequest, job_id: int) -> HttpResponse:
    job = job_for_admin(job_id=job_id, user=request.user)
    if request.htmx:
        response = render(request, "scoring/_job_progress.html", _job_context(job))
        if job.is_finished:
            # The card's last poll: the version list beside it (_model_versions.html) reloads
            # once, for the version the job may have trained, activated or evaluated.
            trigger_client_event(response, "model-job-finished")
        return response
    return render(request, "scoring/job.html", _job_context(job))


@login_required
@require_POST
def job_cancel_view(request: SignedInRequest, job_id: int) -> HttpResponse:
    job = job_cancel(job=job_for_admin(job_id=job_id, user=request.user))
    if request.htmx:
        return render(request, "scoring/_job_progress.html", _job_context(job))
    return redirect("scoring-job", job_id=job.pk)
