"""Pages for annotators and admins (htmx). Thin: access helper, one service call, render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotation.models import Campaign
from annotation.roles import Role, user_has_role
from annotation.selectors import campaign_for_annotator, campaign_progress


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "database": connection.vendor})


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    context = {
        "campaigns": Campaign.objects.order_by("name"),
        "is_annotator": user_has_role(user, Role.ANNOTATOR),
        "is_expert": user_has_role(user, Role.EXPERT),
        "is_admin": user_has_role(user, Role.ADMIN),
    }
    return render(request, "annotation/home.html", context)


@login_required
def campaign_detail(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = campaign_for_annotator(campaign_id=campaign_id, user=request.user)
    progress = campaign_progress(campaign=campaign, user=request.user)
    return render(
        request, "annotation/campaign_detail.html", {"campaign": campaign, "progress": progress}
    )
