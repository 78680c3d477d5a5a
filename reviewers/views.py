"""Pages for experts (the queue, the review page) and admins (agreement, quality). htmx.

Thin views: an access helper that answers 404 to anyone without the role, one service call,
then render (the fragment for htmx requests) or redirect (plain form posts).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from annotation.models import Campaign
from annotation.rendering import render_markdown, render_pair
from annotation.selectors import campaign_for_admin
from core.errors import BadRequest
from core.http import error_into
from core.paging import keyset_list_page, query_string
from core.requests import SignedInRequest
from core.validation import int_param
from reviewers.annotator_report import annotator_report, annotator_report_csv
from reviewers.forms import AdjudicationForm, ExpertSettingsForm, QualityListingForm
from reviewers.models import Escalation
from reviewers.selectors.access import (
    campaigns_reviewable,
    escalation_for_expert,
    require_admin,
    require_expert,
)
from reviewers.selectors.quality import agreement_report, quality_report
from reviewers.selectors.queue import (
    QUEUE_ORDERS,
    claim_state,
    claim_states,
    escalation_queue,
    queue_domains,
    queue_held_back,
    queue_page,
)
from reviewers.selectors.review import escalation_review
from reviewers.services.adjudications import adjudication_resolve
from reviewers.services.escalations import (
    escalation_claim,
    escalation_claim_next,
    escalation_release,
)
from reviewers.services.gold import pair_promote_gold
from reviewers.services.notifications import expert_settings_for, expert_settings_update

QUEUE_PAGE_SIZE = 200
QUALITY_PAGE_SIZE = 100


def _campaign_filter(raw: str | None) -> int | None:
    return int_param(raw, name="campaign")


def _domain_filter(raw: str) -> str:
    # PostgreSQL text cannot hold NUL: the query would fail as a 500 (the API's CharField
    # refuses it the same way).
    if "\x00" in raw:
        raise BadRequest("domain must not contain a NUL character.")
    return raw.strip()


@login_required
@require_GET
@vary_on_headers("HX-Request")
def expert_queue(request: SignedInRequest) -> HttpResponse:
    require_expert(request.user)
    campaign_id = _campaign_filter(request.GET.get("campaign"))
    order = request.GET.get("order", "oldest")
    order = order if order in QUEUE_ORDERS else "oldest"
    domain = _domain_filter(request.GET.get("domain", ""))
    queue = escalation_queue(
        campaign_id=campaign_id, order=order, viewer=request.user, domain=domain or None
    )
    page = queue_page(
        queue,
        order=order,
        size=QUEUE_PAGE_SIZE,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
    )
    rows = [
        {"escalation": escalation, "claim": claim}
        for escalation, claim in claim_states(page.rows, viewer=request.user)
    ]
    other_order = "disputed" if order == "oldest" else "oldest"
    # The page links keep the filters; changing the order or a filter starts at the first page.
    filters = {"campaign": campaign_id or "", "domain": domain}
    context = {
        "rows": rows,
        "total": queue.count(),
        "page": page,
        "page_size": QUEUE_PAGE_SIZE,
        "first_query": query_string(order=order, **filters),
        "next_query": page.next_cursor
        and query_string(order=order, after=page.next_cursor, **filters),
        "previous_query": (
            page.previous_cursor
            and query_string(order=order, before=page.previous_cursor, **filters)
        ),
        "other_order_query": query_string(order=other_order, **filters),
        "order": order,
        "other_order": other_order,
        "campaign_id": campaign_id,
        # Only what the viewer may see: another campaign's name or categories are not theirs.
        "campaigns": campaigns_reviewable(request.user),
        "domain": domain,
        "domains": queue_domains(viewer=request.user),
        "held_back": queue_held_back(viewer=request.user),
    }
    template = "reviewers/queue.html#queue-table" if request.htmx else "reviewers/queue.html"
    return render(request, template, context)


def _review_context(
    request: SignedInRequest,
    escalation: Escalation,
    form: AdjudicationForm | None = None,
    *,
    whole_page: bool = True,
) -> dict[str, object]:
    """The review page's context; without ``whole_page`` (the decision panel alone) the pair
    and the guidelines are not rendered, since the fragment shows neither."""
    context = escalation_review(escalation=escalation, viewer=request.user)
    pair = escalation.pair
    responses = [response["content"] for response in pair.responses or ()]
    context["form"] = form or AdjudicationForm(campaign=escalation.campaign, size=len(responses))
    if not whole_page:
        return context
    # The workspace's renderer and sanitiser: experts see exactly what annotators saw (a
    # ranking item's responses only, its mirrored A and B left unrendered there).
    context["rendered"] = render_pair(
        {
            "conversation": pair.conversation,
            "response_a": pair.response_a,
            "response_b": pair.response_b,
            "responses": responses,
            "annotation_guideline": pair.annotation_guideline,
        }
    )
    context["guidelines_html"] = render_markdown(escalation.campaign.guidelines)
    return context


def _decision_panel(
    request: SignedInRequest, escalation_id: int, *, form: AdjudicationForm | None = None
) -> HttpResponse:
    """After a claim, release or decision: the fragment for htmx, else back to the page. A
    decision that was not recorded (``form``) is shown again, on the whole page without htmx:
    a redirect would lose what the expert wrote."""
    if not request.htmx and form is None:
        return redirect("escalation-review", escalation_id=escalation_id)
    escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
    context = _review_context(request, escalation, form, whole_page=not request.htmx)
    if form is not None:
        context["unsaved_note"] = form.data.get("note", "")
    template = "reviewers/review.html#decision-panel" if request.htmx else "reviewers/review.html"
    return render(request, template, context)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def escalation_review_page(request: SignedInRequest, escalation_id: int) -> HttpResponse:
    escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
    context = _review_context(request, escalation, whole_page=not request.htmx)
    template = "reviewers/review.html#decision-panel" if request.htmx else "reviewers/review.html"
    return render(request, template, context)


@login_required
@require_POST
def escalation_claim_view(request: SignedInRequest, escalation_id: int) -> HttpResponse:
    escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
    refused: dict[str, Any] = {}
    with error_into(refused):
        escalation_claim(escalation=escalation, expert=request.user)
    if refused:
        messages.error(request, refused["error"])
    return _decision_panel(request, escalation_id)


@login_required
@require_POST
def escalation_open_view(request: SignedInRequest, escalation_id: int) -> HttpResponse:
    """Opening an escalation from the queue: claim it if free, then show it."""
    escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
    if not claim_state(escalation, viewer=request.user)["held"]:
        refused: dict[str, Any] = {}
        with error_into(refused):
            escalation_claim(escalation=escalation, expert=request.user)
        if refused:
            messages.info(request, refused["error"])
    return redirect("escalation-review", escalation_id=escalation_id)


@login_required
@require_POST
def expert_next_view(request: SignedInRequest) -> HttpResponse:
    """The next escalation this expert can take, claimed and opened; the queue when none."""
    require_expert(request.user)
    after = int_param(request.POST.get("after"), name="after")
    escalation = escalation_claim_next(expert=request.user, after=after)
    if escalation is not None:
        return redirect("escalation-review", escalation_id=escalation.pk)
    messages.success(request, "No open escalation is waiting for you. Thank you!")
    return redirect("expert-queue")


@login_required
@require_POST
def escalation_release_view(request: SignedInRequest, escalation_id: int) -> HttpResponse:
    escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
    escalation_release(escalation=escalation, expert=request.user)
    if not request.htmx:
        return redirect("expert-queue")
    return _decision_panel(request, escalation_id)


@login_required
@require_POST
def escalation_adjudicate_view(request: SignedInRequest, escalation_id: int) -> HttpResponse:
    escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
    size = len(escalation.pair.responses or ())
    form = AdjudicationForm(request.POST, campaign=escalation.campaign, size=size)
    if not form.is_valid():
        if not request.htmx:
            messages.error(request, "Choose a decision and write a note.")
        return _decision_panel(request, escalation_id, form=form)
    decision, preference = form.decision()
    refused: dict[str, Any] = {}
    with error_into(refused):
        adjudication_resolve(
            escalation=escalation,
            expert=request.user,
            decision=decision,
            preference=preference,
            ranking=form.ranking_groups(),
            note=form.cleaned_data["note"],
        )
    if refused and _claim_taken_back(escalation, expert=request.user):
        # The claim lapsed while they wrote, and nobody took the pair meanwhile: it is theirs
        # again, and the form keeps their decision and note for one more click.
        messages.info(
            request,
            "Your claim had expired, so nothing was recorded; the pair is yours again. "
            "Record your decision again.",
        )
        return _decision_panel(request, escalation_id, form=form)
    if refused:
        messages.error(request, refused["error"])
        return _decision_panel(request, escalation_id, form=form)
    messages.success(request, "Decision recorded.")
    return _decision_panel(request, escalation_id)


def _claim_taken_back(escalation: Escalation, *, expert: User) -> bool:
    """After a refused decision: claim the escalation again if it is open and nobody holds
    it (the expert's own claim expired); False when another expert has it, or it is closed."""
    escalation.refresh_from_db()
    if escalation.status != Escalation.Status.OPEN:
        return False
    if claim_state(escalation, viewer=expert)["held"]:
        return False
    taken: dict[str, Any] = {}
    with error_into(taken):
        escalation_claim(escalation=escalation, expert=expert)
    return not taken


@login_required
@require_POST
def escalation_promote_gold_view(request: SignedInRequest, escalation_id: int) -> HttpResponse:
    escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
    campaign_for_admin(campaign_id=escalation.campaign_id, user=request.user)
    refused: dict[str, Any] = {}
    with error_into(refused):
        pair_promote_gold(pair=escalation.pair)
    if refused:
        messages.error(request, refused["error"])
    else:
        messages.success(request, f"Pair {escalation.pair_id} is now a gold pair.")
    return _decision_panel(request, escalation_id)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def campaign_agreement_page(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    report = agreement_report(campaign=campaign, use_cache="fresh" not in request.GET)
    context = {
        "campaign": campaign,
        "report": report,
        "rounds_below": [r for r in report["rounds"] if r["below_target"]],
    }
    template = (
        "reviewers/agreement.html#agreement-body" if request.htmx else "reviewers/agreement.html"
    )
    return render(request, template, context)


@login_required
@require_GET
def campaign_quality_page(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    """The annotators' figures 100 a page, by user name then id as the quality API pages them
    (``core.paging.keyset_list_page``), with Previous/Next/First links, a user-name filter
    ``q`` and ``flagged`` (flagged annotators only)."""
    campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
    form = QualityListingForm(request.GET)
    if not form.is_valid():
        raise BadRequest("The annotator filter or page cursor is not valid: follow the page links.")
    name, flagged_only = form.cleaned_data["q"], form.cleaned_data["flagged"]
    # Stored by dashboards_refresh every minute (computed here once on a miss): a page reads
    # that one cache entry, and renders no more than a page of its rows.
    report = quality_report(campaign=campaign)
    annotators = report["annotators"]
    rows = [
        row
        for row in annotators
        if (not name or name.casefold() in row["username"].casefold())
        and (row["flagged"] or not flagged_only)
    ]
    page = keyset_list_page(
        rows,
        key=lambda row: (row["username"], row["annotator_id"]),
        size=QUALITY_PAGE_SIZE,
        after=form.cleaned_data["after"] or None,
        before=form.cleaned_data["before"] or None,
    )
    kept = {"q": name, "flagged": "1" if flagged_only else ""}
    context = {
        "campaign": campaign,
        "annotators": page.rows,
        "page": page,
        "page_size": QUALITY_PAGE_SIZE,
        "total": len(rows),
        "flagged_total": sum(1 for row in annotators if row["flagged"]),
        "q": name,
        "flagged_only": flagged_only,
        "first_query": query_string(**kept),
        "next_query": page.next_cursor and query_string(**kept, after=page.next_cursor),
        "previous_query": page.previous_cursor
        and query_string(**kept, before=page.previous_cursor),
        "retest": report["retest"],
        "computed_at": report["computed_at"],
    }
    return render(request, "reviewers/quality.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def expert_settings_page(request: SignedInRequest) -> HttpResponse:
    """E-mail about new escalations: on or off, and in which task categories."""
    require_expert(request.user)
    current = expert_settings_for(user=request.user)
    if request.method == "POST":
        form = ExpertSettingsForm(request.POST)
        if form.is_valid():
            expert_settings_update(
                user=request.user,
                notify_by_email=form.cleaned_data["notify_by_email"],
                domains=form.domain_list(),
            )
            messages.success(request, "Saved.")
            return redirect("expert-settings")
    else:
        form = ExpertSettingsForm(
            initial={
                "notify_by_email": current.notify_by_email,
                "domains": ", ".join(current.domains),
            }
        )
    context = {"form": form, "has_email": bool(request.user.email)}
    return render(request, "reviewers/settings.html", context)


def _report_day(raw: str | None, *, name: str, default: date) -> date:
    if not raw:
        return default
    try:
        day = parse_date(raw)
    except ValueError:
        day = None
    if day is None or day >= date.max:
        raise BadRequest(f"{name} must be a date (YYYY-MM-DD).")
    return day


@login_required
@require_GET
def annotator_report_page(request: SignedInRequest) -> HttpResponse:
    """Time and pay per annotator over a date range (both days included); ``?format=csv``
    downloads the same rows."""
    require_admin(request.user)
    today = timezone.localdate()
    last = _report_day(request.GET.get("end"), name="end", default=today)
    first = _report_day(request.GET.get("start"), name="start", default=last - timedelta(days=29))
    if first > last:
        raise BadRequest("start must not be after end.")
    campaign_id = _campaign_filter(request.GET.get("campaign"))
    start = datetime.combine(first, time.min, tzinfo=timezone.get_current_timezone())
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=start.tzinfo)
    rows = annotator_report(start=start, end=end, campaign_id=campaign_id)
    if request.GET.get("format") == "csv":
        response = HttpResponse(annotator_report_csv(rows), content_type="text/csv")
        filename = f"annotators-{first.isoformat()}-{last.isoformat()}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
    context = {
        "rows": rows,
        "start": first,
        "end": last,
        "campaign_id": campaign_id,
        "campaigns": Campaign.objects.order_by("name"),
        "total_seconds": sum(row.active_seconds for row in rows),
        "total_labels": sum(row.labels for row in rows),
    }
    return render(request, "reviewers/annotator_report.html", context)
