"""The admin dashboard (htmx): one URL serves the whole page or, to htmx, one panel.

Panels refresh themselves every few seconds (``?part=<name>``); the figures behind them are
cached briefly by ``scoring.dashboard.selectors``. Admins only: anyone else gets a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import trigger_client_event

from annotation.models import Campaign
from annotation.selectors import campaign_for_admin, campaign_quarantined
from core.http import error_into
from core.requests import SignedInRequest
from scoring.dashboard.selectors import (
    BUCKET_LABELS,
    agreement_panel,
    annotator_table,
    dashboard_campaigns,
    expert_queue_health,
    loop_effect_panel,
    models_panel,
    progress_summary,
    require_admin,
    silver_summary,
)
from scoring.datasets.curation import curation_create
from scoring.datasets.export import (
    DEFAULT_PROVENANCE,
    FORMATS,
    PROVENANCE_CHOICES,
    TIES_CHOICES,
    ExportFilters,
    InvalidExport,
    export_create,
)
from scoring.datasets.selectors import exports_recent
from scoring.loop.judged_pairs import DEFAULT_GOLD_SOURCES, GOLD_SOURCES
from scoring.loop.versions import current_model_job, job_log_tail

# Panels poll; a tab shown again after being hidden asks at once (static/scoring/dashboard.js).
REFRESH = "every 5s, dashboard-refresh from:body"
# The annotators panel shows this many (worst first) and links to the quality page for the rest.
DASHBOARD_ANNOTATORS = 20


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=[(name, name.upper()) for name in FORMATS])
    provenance = forms.MultipleChoiceField(
        choices=[(name, name) for name in PROVENANCE_CHOICES],
        initial=list(DEFAULT_PROVENANCE),
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    rounds = forms.CharField(required=False, help_text="Round numbers, e.g. 1, 2 (all if empty)")
    min_agreement = forms.FloatField(required=False, min_value=0, max_value=1)
    task_categories = forms.CharField(required=False, help_text="Comma-separated (all if empty)")
    include_silver = forms.BooleanField(required=False)
    silver_curated_only = forms.BooleanField(required=False)
    ties = forms.ChoiceField(
        choices=[("exclude", "leave out"), ("separate", "separate file")],
        initial="exclude",
    )
    outcomes = forms.TypedChoiceField(
        label="Both bad / both good",
        choices=[("separate", "separate file"), ("exclude", "leave out")],
        initial="separate",
        required=False,
        empty_value="separate",
    )
    rewrites = forms.BooleanField(
        required=False, help_text="Add (rewrite ≻ original) pairs, provenance 'rewrite'."
    )

    def clean_rounds(self) -> list[int]:
        text = self.cleaned_data["rounds"].replace(",", " ")
        try:
            return sorted({int(number) for number in text.split()})
        except ValueError as error:
            raise forms.ValidationError("Round numbers are whole numbers.") from error

    def clean_task_categories(self) -> list[str]:
        text = self.cleaned_data["task_categories"]
        return [item.strip() for item in text.split(",") if item.strip()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                data["filters"] = ExportFilters.from_params(
                    {
                        "rounds": data["rounds"],
                        "provenance": data["provenance"],
                        "min_agreement": data.get("min_agreement"),
                        "task_categories": data["task_categories"],
                        "include_silver": data["include_silver"],
                        "silver_curated_only": data["silver_curated_only"],
                        "ties": data["ties"] if data["ties"] in TIES_CHOICES else "exclude",
                        "outcomes": data["outcomes"],
                        "rewrites": data["rewrites"],
                    }
                )
            except InvalidExport as error:
                raise forms.ValidationError(str(error)) from error
        return data


class CurationForm(forms.Form):
    recycle = forms.BooleanField(required=False, help_text="Flip pairs both models reverse.")
    keep_threshold = forms.FloatField(initial=0.5, min_value=0, max_value=0.99)
    recycle_threshold = forms.FloatField(initial=0.9, min_value=0, max_value=0.99)
    train_gold = forms.BooleanField(
        required=False,
        initial=True,
        label="Train a gold model",
        help_text="On human-verified pairs only; off: the newest gold model, else the active one",
    )
    gold_sources = forms.MultipleChoiceField(
        required=False,
        choices=[(source, source) for source in GOLD_SOURCES],
        initial=list(DEFAULT_GOLD_SOURCES),
        widget=forms.CheckboxSelectMultiple,
        label="Gold model learns from",
    )
    gold_version = forms.IntegerField(
        required=False, min_value=1, help_text="A version to use as the gold model instead"
    )
    best_version = forms.IntegerField(
        required=False,
        min_value=1,
        help_text="Default: best on the evaluation sets, else on held-out gold",
    )

    def params(self) -> dict[str, Any]:
        return {
            name: value
            for name, value in self.cleaned_data.items()
            if value is not None and value != []
        }


def _models_context(campaign: Campaign) -> dict[str, Any]:
    context: dict[str, Any] = {"models": models_panel(campaign=campaign)}
    context["versions"] = context["models"]["versions"]  # what _model_versions.html reads
    return context


def _annotators_context(campaign: Campaign) -> dict[str, Any]:
    """The first ``DASHBOARD_ANNOTATORS`` rows of the annotator table, worst first; the
    quality page pages through them all."""
    table = annotator_table(campaign=campaign)
    return {
        "annotators": table,
        "annotator_rows": table["rows"][:DASHBOARD_ANNOTATORS],
        "annotators_more": max(len(table["rows"]) - DASHBOARD_ANNOTATORS, 0),
    }


def _model_job_context(campaign: Campaign) -> dict[str, Any]:
    """The retrain button and the current model job, from the model-registry fragments."""
    job = current_model_job(campaign=campaign)
    return {
        "job": job,
        "log_lines": job_log_tail(job=job) if job is not None else [],
    }


PANELS: dict[str, Callable[[Campaign], dict[str, Any]]] = {
    "progress": lambda campaign: {"progress": progress_summary(campaign=campaign)},
    "agreement": lambda campaign: {"agreement": agreement_panel(campaign=campaign)},
    "annotators": _annotators_context,
    "experts": lambda campaign: {"experts": expert_queue_health(campaign=campaign)},
    "models": _models_context,
    "loop-effect": lambda campaign: {"effect": loop_effect_panel(campaign=campaign)},
    "curation": lambda campaign: {"silver": silver_summary(campaign=campaign)},
    "exports": lambda campaign: {"exports": exports_recent(campaign=campaign)},
}


def _panel_response(
    request: SignedInRequest, campaign: Campaign, part: str, **extra: Any
) -> HttpResponse:
    context = {
        "campaign": campaign,
        "refresh": REFRESH,
        "bucket_labels": BUCKET_LABELS,
    }
    context.update(PANELS[part](campaign))
    context.update(extra)
    return render(request, f"scoring/dashboard.html#{part}", context)


@login_required
@require_GET
def dashboard_index(request: SignedInRequest) -> HttpResponse:
    require_admin(request.user)
    return render(request, "scoring/dashboard_index.html", {"campaigns": dashboard_campaigns()})


@login_required
@require_GET
@vary_on_headers("HX-Request")
def campaign_dashboard(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    part = request.GET.get("part", "")
    if request.htmx and part:
        if part not in PANELS:
            raise Http404("No such panel.")
        return _panel_response(request, campaign, part)
    return _full_page(request, campaign)


def _full_page(
    request: SignedInRequest, campaign: Campaign, status: int = 200, **forms_: Any
) -> HttpResponse:
    context: dict[str, Any] = {
        "campaign": campaign,
        "refresh": REFRESH,
        "bucket_labels": BUCKET_LABELS,
        "export_form": ExportForm(),
        "curation_form": CurationForm(),
        # Quarantined members: the admin is told here, and restores them on the members page.
        "quarantined": campaign_quarantined(campaign=campaign),
        **_model_job_context(campaign),
    }
    for build in PANELS.values():
        context.update(build(campaign))
    context.update(forms_)
    return render(request, "scoring/dashboard.html", context, status=status)


@login_required
@require_POST
def dashboard_export_create(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    """Start an export snapshot from the dashboard's form."""
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    form = ExportForm(request.POST)
    created = False
    if form.is_valid():
        try:
            export_create(
                campaign=campaign,
                file_format=form.cleaned_data["format"],
                filters=form.cleaned_data["filters"],
                user=request.user,
            )
            created = True
            form = ExportForm()
        except InvalidExport as error:  # what only the campaign can tell: rounds, sets
            form.add_error(None, str(error))
    if request.htmx:
        response = render(
            request,
            "scoring/dashboard.html#export-form",
            {"campaign": campaign, "export_form": form},
        )
        if created:
            trigger_client_event(response, "exports-changed")
        return response
    if not created:
        return _full_page(request, campaign, status=400, export_form=form)
    return redirect("campaign-dashboard", campaign_id=campaign.pk)


@login_required
@require_POST
def dashboard_curation_create(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    """Start Stage-2 curation of the silver pool from the dashboard's form."""
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    form = CurationForm(request.POST)
    refused: dict[str, Any] = {}
    created = False
    if form.is_valid():
        with error_into(refused):
            curation_create(campaign=campaign, params=form.params(), user=request.user)
        if not refused:
            form, created = CurationForm(), True
    error = refused.get("error", "")
    if request.htmx:
        response = render(
            request,
            "scoring/dashboard.html#curation-form",
            {"campaign": campaign, "curation_form": form, "curation_error": error},
        )
        if created:
            trigger_client_event(response, "curation-changed")
        return response
    if not created:
        return _full_page(request, campaign, status=400, curation_form=form, curation_error=error)
    return redirect("campaign-dashboard", campaign_id=campaign.pk)
