"""Pages for annotators (htmx). Thin: access helper, one service call, render or redirect.

The workspace is one URL (`campaign-detail`) that serves the full page, or only the pair
fragment (`annotation/workspace.html#pair`) to htmx, which swaps it in after a submit or a
skip so that the next pair arrives without a page load.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from annotation import hooks
from annotation.aspects import shown_ratings
from annotation.forms import LabelForm, aspect_field_name
from annotation.models import Assignment, Campaign, Label, Outcome
from annotation.rankings import shown_ranks
from annotation.rendering import render_markdown, render_pair
from annotation.selectors import (
    annotator_counts,
    assignment_for_annotator,
    campaign_for_annotator,
    campaign_pair_counts,
    campaigns_for_user,
    label_rewrite,
    last_changeable_assignment,
    member_of,
    shown_pair,
)
from annotation.services.assignments import (
    assignment_is_qualification_check,
    assignment_next,
    assignment_skip,
)
from annotation.services.labels import (
    label_change,
    label_change_check,
    label_change_deadline,
    label_submit,
    side_across_swap,
    to_canonical,
)
from core.http import error_into
from core.requests import SignedInRequest

WORKSPACE = "annotation/workspace.html"
PAIR_FRAGMENT = "annotation/workspace.html#pair"


def login_required_htmx(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """login_required that sends htmx requests to the login page as a whole-page redirect.

    A plain 302 would be followed inside the XHR and the login page swapped into a fragment.
    """

    @wraps(view)
    def wrapper(request: SignedInRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if request.htmx:
            next_path = request.htmx.current_url_abs_path or request.get_full_path()
            return HttpResponseClientRedirect(redirect_to_login(next_path).url)
        return redirect_to_login(request.get_full_path())

    return wrapper


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "database": connection.vendor})


@login_required_htmx
@require_GET
def home(request: SignedInRequest) -> HttpResponse:
    campaigns = list(campaigns_for_user(user=request.user))
    context = {
        "campaigns": campaigns,
        # A member (a campaign's admin, say) has a role there without a site-wide one;
        # member_role is campaigns_for_user's annotation, unknown to the type checker.
        "is_member": any(getattr(campaign, "member_role", None) for campaign in campaigns),
    }
    return render(request, "annotation/home.html", context)


def _progress_summary(campaign: Campaign, user: Any) -> dict[str, int]:
    # Not campaign_progress: the counter shows no label count, and a count of the campaign's
    # labels on every pair shown would cost more the larger the campaign grows.
    pairs = campaign_pair_counts(campaign=campaign)
    mine = annotator_counts(campaign=campaign, user=user)
    return {
        "mine": mine["submitted"],
        "skipped": mine["skipped"],
        # Settled pairs: labelled to consensus, adjudicated, or set aside by an expert.
        "done": pairs["complete"] + pairs["resolved"] + pairs["discarded"],
        "total": pairs["total"],
    }


def _render_workspace(
    request: SignedInRequest,
    *,
    campaign: Campaign,
    assignment: Assignment | None,
    form: LabelForm | None = None,
    notice: str = "",
    closed_message: str = "",
    skip_refused: str = "",
    previous_model_view: dict[str, Any] | None = None,
    changing: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The workspace page, or only its pair fragment for htmx.

    Each pair has its own URL (`assignment-page`): htmx pushes it with every new pair, so that
    the browser's Back returns to the previous pair, where the label can still be changed
    within the campaign's grace period (`changing`).

    Blind by construction: the pair comes from `shown_pair`, which carries nothing about other
    labels, consensus or model scores.
    """
    context: dict[str, Any] = {
        "campaign": campaign,
        "assignment": assignment,
        "form": form or LabelForm(campaign=campaign),
        "progress": _progress_summary(campaign, request.user),
        "notice": notice,
        "closed_message": closed_message,
        "skip_refused": skip_refused,
        "previous_model_view": previous_model_view,
        "changing": changing,
    }
    if assignment is None:
        # Why there is no work, for a member who qualifies or was quarantined (read with the
        # campaign by its access helper: no query).
        member = member_of(campaign=campaign, user_id=request.user.pk)
        context["member_state"] = member.state if member is not None else ""
    else:
        shown = shown_pair(assignment)
        context["pair"] = render_pair(shown)
        if campaign.takes_rewrites:  # the texts the rewrite box starts from, as shown
            context["shown_texts"] = {"a": shown["response_a"], "b": shown["response_b"]}
        if context["pair"].responses:
            context["rank_cards"] = context["form"].rank_cards(context["pair"].responses)
        context["pair_url"] = reverse("assignment-page", args=[assignment.pk])
        context["qualification_check"] = assignment_is_qualification_check(assignment=assignment)
        if changing is None:
            context["previous"] = last_changeable_assignment(
                campaign=campaign, user=request.user, now=timezone.now()
            )
    if request.htmx:
        response = render(request, PAIR_FRAGMENT, context, status=status)
        if status == 200 and not request.htmx.history_restore_request:
            # A new pair gets a history entry (Back returns to the one before); the empty
            # workspace, polled every 30 s, only replaces the address, adding no entries.
            url = context.get("pair_url") or reverse("campaign-detail", args=[campaign.pk])
            if request.htmx.current_url_abs_path != url:
                header = "HX-Push-Url" if assignment is not None else "HX-Replace-Url"
                response[header] = url
        return response
    context["guidelines_html"] = render_markdown(campaign.guidelines)
    return render(request, WORKSPACE, context, status=status)


@login_required_htmx
@require_GET
@vary_on_headers("HX-Request")
def campaign_detail(request: SignedInRequest, campaign_id: int) -> HttpResponse:
    """The annotator workspace: the current lease, or a new one; polled when there is none."""
    campaign = campaign_for_annotator(campaign_id=campaign_id, user=request.user)
    assignment = assignment_next(campaign=campaign, annotator=request.user)
    return _render_workspace(request, campaign=campaign, assignment=assignment)


def _after_action(
    request: SignedInRequest,
    campaign: Campaign,
    notice: str,
    previous_model_view: dict[str, Any] | None = None,
) -> HttpResponse:
    """POST/redirect/GET for plain forms; the next pair's fragment for htmx."""
    if not request.htmx:
        messages.success(request, notice)
        if previous_model_view:
            messages.info(request, previous_model_view["text"])
        return redirect(reverse("campaign-detail", args=[campaign.pk]))
    following = assignment_next(campaign=campaign, annotator=request.user)
    return _render_workspace(
        request,
        campaign=campaign,
        assignment=following,
        notice=notice,
        previous_model_view=previous_model_view,
    )


def _describe_model_view(view: dict[str, Any]) -> str:
    verdict = {True: "It agreed with you.", False: "It disagreed with you.", None: ""}
    return (
        f"On the pair you just judged, reward model v{view['model_version']} preferred "
        f"{view['prefers']} (p(A better) = {view['p_a_better']:.2f}). "
        f"{verdict[view['agrees_with_you']]}"
    ).strip()


def _revealed_model_view(assignment: Assignment) -> dict[str, Any] | None:
    """After a submit only, and only where the campaign allows it; recorded when shown."""
    view = hooks.model_view_after_submit.first(assignment=assignment)
    if view is None:
        return None
    return {**view, "text": _describe_model_view(view)}


@login_required_htmx
@require_POST
def assignment_label(request: SignedInRequest, assignment_id: int) -> HttpResponse:
    assignment = assignment_for_annotator(assignment_id=assignment_id, user=request.user)
    campaign = assignment.campaign
    form = LabelForm(request.POST, campaign=campaign)
    page: dict[str, Any] = {"campaign": campaign, "assignment": assignment, "form": form}
    if not form.is_valid():
        return _render_workspace(request, **page, status=422)
    elapsed = (timezone.now() - assignment.leased_at).total_seconds()
    refused: dict[str, Any] = {}
    with error_into(refused):
        label_submit(assignment=assignment, data=form.label_input(elapsed_seconds=elapsed))
    if refused:
        return _refused_label_page(request, page, refused)
    return _after_action(
        request, campaign, "Saved. Here is the next pair.", _revealed_model_view(assignment)
    )


@login_required_htmx
@require_POST
def assignment_skip_view(request: SignedInRequest, assignment_id: int) -> HttpResponse:
    assignment = assignment_for_annotator(assignment_id=assignment_id, user=request.user)
    campaign = assignment.campaign
    refused: dict[str, Any] = {}
    with error_into(refused):
        assignment_skip(assignment=assignment)
    if not refused:
        return _after_action(request, campaign, "Skipped. You will not see that pair again.")
    # Said as the skip's refusal, not as a label not saved. A qualification check (Skip posted
    # from a stale page) is still theirs to answer while it is active, so its form stays open;
    # any other refusal (answered already, the lease is gone) closes the pair.
    still_to_answer = (
        assignment.status == Assignment.Status.ACTIVE
        and assignment_is_qualification_check(assignment=assignment)
    )
    return _render_workspace(
        request,
        campaign=campaign,
        assignment=assignment,
        skip_refused=refused["error"],
        closed_message="" if still_to_answer else refused["error"],
        status=refused["error_status"],
    )


def _refused_label_page(
    request: SignedInRequest, page: dict[str, Any], refused: dict[str, Any]
) -> HttpResponse:
    """The workspace again after a service refused a label or a change.

    A conflict (the lease is gone, the pair finished, the label locked) closes the pair, or
    locks the change, with the reason (409); any other refusal is the form's error (422), with
    what the annotator chose still selected.
    """
    status = refused["error_status"]
    if status == 409 and "changing" in page:
        return _render_workspace(
            request, **{**page, "changing": {"locked": refused["error"]}}, status=status
        )
    if status == 409:
        return _render_workspace(request, **page, closed_message=refused["error"], status=status)
    page["form"].add_error(None, refused["error"])
    return _render_workspace(request, **page, status=422)


def _label_as_form(label: Label, assignment: Assignment, campaign: Campaign) -> LabelForm:
    """The label's values in the orientation the annotator saw, as a bound form."""
    shown_choice = (
        str(to_canonical(label.preference, swapped=assignment.swapped))
        if label.outcome == Outcome.PREFERENCE
        else str(label.outcome)
    )
    data: dict[str, Any] = {
        "preference": shown_choice,
        "rationale": label.rationale,
        "flags": label.flags,
    }
    for aspect, sides in shown_ratings(label.aspect_ratings, swapped=assignment.swapped).items():
        for side, value in sides.items():
            data[aspect_field_name(aspect, side)] = str(value)
    if label.confidence is not None:
        data["confidence"] = str(label.confidence)
    if label.ranking is not None and assignment.display_order:
        ranks = shown_ranks(label.ranking, display_order=assignment.display_order)
        data.update({f"rank_{position}": rank for position, rank in enumerate(ranks)})
    rewrite = label_rewrite(label=label) if campaign.takes_rewrites else None
    if rewrite is not None:
        # The change replaces the label's rewrite with the form's (none withdraws it), so the
        # form starts from it, on the side as shown.
        data["rewrite_text"] = rewrite.text
        data["rewrite_based_on"] = side_across_swap(rewrite.based_on, swapped=assignment.swapped)
    form = LabelForm(data, campaign=campaign)
    form.is_valid()
    return form


def _changing(label: Label, assignment: Assignment, campaign: Campaign) -> dict[str, Any]:
    """Whether and until when the annotator may change this label, for the page."""
    minutes = campaign.label_change_minutes
    refused: dict[str, Any] = {}
    with error_into(refused):
        label_change_check(
            label=label,
            pair_status=assignment.pair.status,
            minutes=minutes,
            now=timezone.now(),
            model_view_shown=assignment.model_view_shown,
        )
    if refused:
        return {"locked": refused["error"]}
    return {"until": label_change_deadline(label=label, minutes=minutes), "locked": ""}


@login_required_htmx
@require_GET
@vary_on_headers("HX-Request")
def assignment_page(request: SignedInRequest, assignment_id: int) -> HttpResponse:
    """One pair's own URL: the pair to judge while leased, the label to change once judged."""
    assignment = assignment_for_annotator(assignment_id=assignment_id, user=request.user)
    campaign = assignment.campaign
    if assignment.status == Assignment.Status.ACTIVE:
        return _render_workspace(request, campaign=campaign, assignment=assignment)
    label = Label.objects.filter(assignment=assignment).first()
    if label is None:  # skipped or expired: nothing to show but the current work
        messages.info(request, f"That pair was {assignment.status}; here is your current pair.")
        return redirect(reverse("campaign-detail", args=[campaign.pk]))
    return _render_workspace(
        request,
        campaign=campaign,
        assignment=assignment,
        form=_label_as_form(label, assignment, campaign),
        changing=_changing(label, assignment, campaign),
    )


@login_required_htmx
@require_POST
def assignment_label_change_view(request: SignedInRequest, assignment_id: int) -> HttpResponse:
    assignment = assignment_for_annotator(assignment_id=assignment_id, user=request.user)
    campaign = assignment.campaign
    form = LabelForm(request.POST, campaign=campaign)
    label = Label.objects.filter(assignment=assignment).first()
    changing = _changing(label, assignment, campaign) if label else {"locked": "No label."}
    page: dict[str, Any] = {
        "campaign": campaign,
        "assignment": assignment,
        "form": form,
        "changing": changing,
    }
    if not form.is_valid():
        return _render_workspace(request, **page, status=422)
    refused: dict[str, Any] = {}
    with error_into(refused):
        # No time added: the seconds spent measure the first judgment.
        label_change(assignment=assignment, data=form.label_input(elapsed_seconds=0.0))
    if refused:
        return _refused_label_page(request, page, refused)
    return _after_action(request, campaign, "Changed your answer. Here is your current pair.")
