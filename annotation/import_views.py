"""Admin pages for importing pairs: upload, then watch the job's progress."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from annotation.models import ImportJob
from annotation.selectors import campaign_for_admin
from annotation.services.import_jobs import (
    import_job_create,
    import_job_enqueue,
    import_job_progress,
    import_job_run,
    import_job_runs_inline,
)
from core.requests import SignedInRequest
from core.validation import UPLOAD_NAME_MAX, upload_max_bytes

# An upload over the importer's size bound is refused (413) before it is received.
import_upload_bound = upload_max_bytes(
    lambda: int(settings.ARBITER["IMPORT_MAX_BYTES"]),
    "ARBITER_IMPORT_MAX_BYTES",
    "Split the file, or compress it with gzip.",
)


class ImportForm(forms.Form):
    file = forms.FileField(
        max_length=UPLOAD_NAME_MAX, help_text="JSONL, JSON, CSV or Parquet, optionally gzipped."
    )
    as_gold = forms.BooleanField(
        required=False,
        label="These labels are human-verified (import as gold pairs)",
    )


@login_required
@require_http_methods(["GET", "POST"])
@import_upload_bound
def import_page(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        job = import_job_create(
            campaign=campaign, upload=upload, as_gold=form.cleaned_data["as_gold"],
            user=request.user,
        )
        if import_job_runs_inline(job=job):
            job = import_job_run(job_id=job.pk, inline=True)
        if job.status == ImportJob.Status.QUEUED:  # costly, or another import under way
            import_job_enqueue(job=job)
        return redirect("import-job", campaign_id=campaign.pk, job_id=job.pk)
    jobs = ImportJob.objects.filter(campaign=campaign).order_by("-created_at")[:20]
    context = {
        "campaign": campaign,
        "form": form,
        "jobs": jobs,
        # The page's script refuses a bigger file as an alert before it is sent (413 otherwise).
        "max_bytes": int(settings.ARBITER["IMPORT_MAX_BYTES"]),
    }
    return render(request, "annotation/imports/page.html", context)


@login_required
def import_job_detail(request: SignedInRequest, campaign_id: int, job_id: int) -> HttpResponse:
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    job = get_object_or_404(ImportJob, pk=job_id, campaign=campaign)
    context = {"campaign": campaign, "job": job, "rows_read": import_job_progress(job=job)}
    template = "annotation/imports/job.html"
    if request.htmx:
        template += "#job-status"
    return render(request, template, context)
