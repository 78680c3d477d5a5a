"""Reads for the annotation app."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404

from annotation.models import Assignment, Campaign, Document, Label, Pair
from annotation.prepared_reads import fetch_instances, model_columns
from annotation.roles import Role, user_has_role

PROGRESS_CACHE_SECONDS = 5


logger = logging.getLogger(__name__)

def campaign_for_annotator(*, campaign_id: int, user: User) -> Campaign:
    if not user_has_role(user, Role.ANNOTATOR):
        raise Http404("No such campaign.")
    if connection.vendor == "postgresql":  # the hot path: next (see annotation.prepared_reads)
        columns = [model_columns(Campaign, "c")]
        found = fetch_instances(_campaign_sql(), {"id": campaign_id}, columns)
        if found is None:
            raise Http404("No such campaign.")
        return cast(Campaign, found[0])
    return get_object_or_404(Campaign, pk=campaign_id)


def campaign_for_admin(*, campaign_id: int, user: User) -> Campaign:
    if not user_has_role(user, Role.ADMIN):
        raise Http404("No such campaign.")
    return get_object_or_404(Campaign, pk=campaign_id)


def assignment_for_annotator(
    *, assignment_id: int, user: User, with_pair: bool = True
) -> Assignment:
    """An assignment of this user's; anyone else's is reported as not found (no probing).

    with_pair=False leaves the pair's texts unread, for callers that only write.
    """
    if not with_pair and connection.vendor == "postgresql":  # the hot path: label
        found = fetch_instances(
            _assignment_with_campaign_sql(),
            {"id": assignment_id, "annotator": user.pk},
            [model_columns(Assignment, "a"), model_columns(Campaign, "c")],
        )
        if found is None:
            raise Http404("No such assignment.")
        read_assignment, read_campaign = found
        leased = cast(Assignment, read_assignment)
        leased.campaign = cast(Campaign, read_campaign)
        return leased
    related = ("pair", "campaign") if with_pair else ("campaign",)
    assignment: Assignment | None = (
        Assignment.objects.select_related(*related)
        .filter(pk=assignment_id, annotator=user)
        .first()
    )
    if assignment is None:
        raise Http404("No such assignment.")
    return assignment


@functools.cache
def _campaign_sql() -> str:
    table = connection.ops.quote_name(Campaign._meta.db_table)
    columns = model_columns(Campaign, "c").select_sql
    return f"SELECT {columns} FROM {table} c WHERE c.id = %(id)s"  # noqa: S608


@functools.cache
def _assignment_with_campaign_sql() -> str:
    quote = connection.ops.quote_name
    assignment, campaign = model_columns(Assignment, "a"), model_columns(Campaign, "c")
    return (
        f"SELECT {assignment.select_sql}, {campaign.select_sql}"  # noqa: S608
        f" FROM {quote(Assignment._meta.db_table)} a"
        f" JOIN {quote(Campaign._meta.db_table)} c ON c.id = a.campaign_id"
        " WHERE a.id = %(id)s AND a.annotator_id = %(annotator)s"
    )


def shown_pair(assignment: Assignment) -> dict[str, Any]:
    """The pair as this annotator sees it: A/B possibly swapped, nothing about other labels."""
    pair = assignment.pair
    if pair.responses is not None:
        return _shown_ranking_item(assignment)
    left, right = (
        (pair.response_b, pair.response_a) if assignment.swapped else
        (pair.response_a, pair.response_b)
    )
    return {
        "conversation": pair.conversation,
        "response_a": left,
        "response_b": right,
        "annotation_guideline": pair.annotation_guideline,
        "task_category": pair.task_category,
    }


def _shown_ranking_item(assignment: Assignment) -> dict[str, Any]:
    """A K-wise item in the assignment's display order, without the models' names (blind).
    response_a and response_b are the first two shown, for pages that only show two."""
    pair = assignment.pair
    responses = pair.responses or []
    order = assignment.display_order or list(range(len(responses)))
    shown = [str(responses[index]["content"]) for index in order]
    return {
        "conversation": pair.conversation,
        "response_a": shown[0],
        "response_b": shown[1],
        "responses": shown,
        "annotation_guideline": pair.annotation_guideline,
        "task_category": pair.task_category,
    }


def _pair_counts_key(campaign_id: int) -> str:
    return f"campaign-status-counts:{campaign_id}"


def campaign_pair_counts(*, campaign: Campaign) -> dict[str, int]:
    """The campaign's pairs by status and their total, gold pairs apart (under "gold").

    Gold pairs are checks on annotators with a known answer: they are not work to be done, so
    they count in no status and not in the total.
    """
    # Counting a large campaign's pairs on every submit would be the slowest query of the
    # workspace: the counts are cached, and a label that moves a pair on forgets them
    # (`campaign_pair_counts_forget`), so the counter follows the labels.
    rows: list[tuple[str, bool, int]] = cache.get_or_set(  # type: ignore[assignment]
        _pair_counts_key(campaign.pk),
        lambda: list(
            Pair.objects.filter(campaign=campaign)
            .order_by()
            .values_list("status", "is_gold")
            .annotate(n=Count("id"))
        ),
        timeout=PROGRESS_CACHE_SECONDS,
    )
    counts = dict.fromkeys(Pair.Status.values, 0)
    counts["gold"] = 0
    for status, is_gold, n in rows:
        counts["gold" if is_gold else status] += n
    counts["total"] = sum(n for status, is_gold, n in rows if not is_gold)
    return counts


def campaign_pair_counts_forget(*, campaign_id: int) -> None:
    """Drop the cached counts (after a write that moved a pair from one status to another).

    Best effort: it runs after the label's commit, so a cache that is down (Redis stopped)
    must not turn a stored label into an error; the counts then expire on their own."""
    try:
        cache.delete(_pair_counts_key(campaign_id))
    except Exception:  # the cache backend's own errors: Redis, file system
        logger.warning("could not forget campaign %s's cached pair counts", campaign_id)


def annotator_counts(*, campaign: Campaign, user: User) -> dict[str, int]:
    """How many pairs of the campaign the user has labelled and skipped."""
    return Assignment.objects.filter(campaign=campaign, annotator=user).aggregate(
        submitted=Count("id", filter=Q(status=Assignment.Status.SUBMITTED)),
        skipped=Count("id", filter=Q(status=Assignment.Status.SKIPPED)),
    )


def campaign_progress(*, campaign: Campaign, user: User | None = None
                      ) -> dict[str, Any]:
    """What GET /api/campaigns/{id}/progress reports: pairs, labels and the caller's own."""
    progress: dict[str, Any] = {
        "pairs": campaign_pair_counts(campaign=campaign),
        "labels": Label.objects.filter(campaign=campaign).count(),
    }
    if user is not None:
        progress["mine"] = annotator_counts(campaign=campaign, user=user)
    return progress


def labels_for_export(*, campaign: Campaign) -> Iterator[dict[str, Any]]:
    """Raw labels in canonical orientation, streamed."""
    rows = (
        Label.objects.filter(campaign=campaign)
        .select_related("annotator", "assignment")
        .order_by("id")
    )
    for label in rows.iterator(chunk_size=2000):
        row = {
            "label_id": label.pk,
            "pair_id": label.pair_id,
            "annotator": label.annotator.username,
            "preference": label.preference,
            "orientation": "canonical",
            "shown_swapped": label.assignment.swapped,
            "rationale": label.rationale,
            "confidence": label.confidence,
            "flags": label.flags,
            "seconds_spent": label.seconds_spent,
            "is_retest": label.is_retest,
            "is_gold_check": label.is_gold_check,
            "created_at": label.created_at.isoformat(),
        }
        if label.ranking is not None:
            # Ranking items: canonical groups, best first, and the order they were shown in.
            row["ranking"] = label.ranking
            row["display_order"] = label.assignment.display_order
        yield row


def corpus_has_documents(*, corpus_id: int | None = None) -> bool:
    """Whether there is anything to search: in the corpus named, or in any corpus."""
    documents = Document.objects.all()
    if corpus_id is not None:
        documents = documents.filter(corpus_id=corpus_id)
    return documents.exists()


def last_changeable_assignment(
    *, campaign: Campaign, user: User, now: datetime
) -> Assignment | None:
    """The user's most recent labelled assignment whose label may still change, if any."""
    minutes = campaign.label_change_minutes
    if minutes <= 0:
        return None
    return (
        Assignment.objects.filter(
            campaign=campaign,
            annotator=user,
            status=Assignment.Status.SUBMITTED,
            finished_at__gte=now - timedelta(minutes=minutes),
        )
        .exclude(pair__status__in=[Pair.Status.RESOLVED, Pair.Status.DISCARDED])
        .order_by("-finished_at", "-id")
        .first()
    )
