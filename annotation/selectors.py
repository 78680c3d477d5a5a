"""Reads for the annotation app."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, cast

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Max, Min, OuterRef, Q, QuerySet, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation.models import (
    Assignment,
    Campaign,
    CampaignMember,
    Document,
    Label,
    MemberTransition,
    Pair,
    Rewrite,
)
from annotation.prepared_reads import fetch_instances, model_columns
from annotation.roles import Role, user_has_role

PROGRESS_CACHE_SECONDS = 5
# Where the memberships an access helper read with the campaign are kept on the campaign
# object ({user id: member or None}), so the engine needs no second query in one request.
_KNOWN_MEMBERS = "_arbiter_members"


logger = logging.getLogger(__name__)


def label_rewrite(*, label: Label) -> Rewrite | None:
    """The label's rewrite (the latest, where labels changed before one label kept one kept
    several), or None."""
    return Rewrite.objects.filter(label=label).order_by("-id").first()


def member_remember(campaign: Campaign, *, user_id: int, member: CampaignMember | None) -> None:
    """Record what was read of the user's membership together with the campaign."""
    known = campaign.__dict__.setdefault(_KNOWN_MEMBERS, {})
    known[user_id] = member


def member_of(*, campaign: Campaign, user_id: int) -> CampaignMember | None:
    """The user's membership of the campaign (remembered with it, else read), or None."""
    known = campaign.__dict__.get(_KNOWN_MEMBERS, {})
    if user_id in known:
        return known[user_id]
    member = CampaignMember.objects.filter(campaign=campaign, user_id=user_id).first()
    member_remember(campaign, user_id=user_id, member=member)
    return member


def _may_annotate(campaign: Campaign, member: CampaignMember | None, user: User) -> bool:
    """Open campaigns take every annotator but their expert members (who settle its disputes,
    so never judge its pairs first); others their annotator and admin members only. Site
    admins see everything (asked last: for a session user it costs a query)."""
    if member is not None and member.role == CampaignMember.Role.EXPERT:
        return user_has_role(user, Role.ADMIN)
    if campaign.open_to_all or member is not None:
        return True
    return user_has_role(user, Role.ADMIN)


def retest_taker_exists(*, campaign: Campaign, pair_id: int) -> bool:
    """Whether anyone could take the pair's re-test: in a members-only campaign, an active
    annotator member who has never had the pair (nobody judges a pair twice). A team exactly
    as large as the pairs' annotator count has nobody, and a re-test slot opened then stays
    empty for good (the pair in annotation, its round never done). A campaign open to all
    takes any annotator of the site: someone new may always come."""
    if campaign.open_to_all:
        return True
    had_it = Assignment.objects.filter(pair_id=pair_id).values("annotator_id")
    return campaign_active_annotators(campaign_id=campaign.pk).exclude(user_id__in=had_it).exists()


def campaign_active_annotators(*, campaign_id: int) -> QuerySet[CampaignMember]:
    """The campaign's members who could take a pair now: active annotator members whose user
    is active (a deactivated user, a leaver still listed, cannot log in to take it). The one
    statement of who may take a members-only campaign's pair, for ``retest_taker_exists``
    and the loop's round checks (``scoring.loop.rounds``)."""
    return CampaignMember.objects.filter(
        campaign_id=campaign_id,
        role=CampaignMember.Role.ANNOTATOR,
        state=CampaignMember.State.ACTIVE,
        user__is_active=True,
    )


def _found_member(member: Any) -> CampaignMember | None:
    # A LEFT JOIN with no member row gives a member of NULLs.
    return member if member is not None and member.pk is not None else None


def campaign_for_annotator(*, campaign_id: int, user: User) -> Campaign:
    """The campaign, if the user may annotate there; 404 otherwise (no probing).

    The user's membership is read in the same query and kept with the campaign, for the
    assignment engine (qualification, quarantine)."""
    if not user_has_role(user, Role.ANNOTATOR):
        raise Http404("No such campaign.")
    if connection.vendor == "postgresql":  # the hot path: next (see annotation.prepared_reads)
        columns = [model_columns(Campaign, "c"), model_columns(CampaignMember, "m")]
        found = fetch_instances(_campaign_sql(), {"id": campaign_id, "user": user.pk}, columns)
        if found is None:
            raise Http404("No such campaign.")
        campaign, member = cast(Campaign, found[0]), _found_member(found[1])
    else:
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        member = CampaignMember.objects.filter(campaign=campaign, user_id=user.pk).first()
    if not _may_annotate(campaign, member, user):
        raise Http404("No such campaign.")
    member_remember(campaign, user_id=user.pk, member=member)
    return campaign


def campaign_for_admin(*, campaign_id: int, user: User) -> Campaign:
    """The campaign for a site admin, or for an admin member of this campaign; 404 otherwise."""
    if user_has_role(user, Role.ADMIN):
        return get_object_or_404(Campaign, pk=campaign_id)
    if not user.is_authenticated:
        raise Http404("No such campaign.")
    campaign = Campaign.objects.filter(
        pk=campaign_id, members__user_id=user.pk, members__role=CampaignMember.Role.ADMIN
    ).first()
    if campaign is None:
        raise Http404("No such campaign.")
    return campaign


def is_campaign_admin(*, campaign_id: int, user: User) -> bool:
    """Whether ``user`` administers the campaign: a site admin, or an admin member of it
    (the rule of ``campaign_for_admin``, for objects that name their campaign)."""
    if user_has_role(user, Role.ADMIN):
        return True
    return (
        bool(user.is_authenticated)
        and CampaignMember.objects.filter(
            campaign_id=campaign_id, user_id=user.pk, role=CampaignMember.Role.ADMIN
        ).exists()
    )


def campaigns_for_user(*, user: User) -> QuerySet[Campaign]:
    """The campaigns the user may open: all for site admins, else open ones and their own;
    each with ``member_role``, the user's role there as a member (None if not one), so that a
    page offers judging to no expert member and a campaign's admin pages to its admins."""
    role = CampaignMember.objects.filter(campaign=OuterRef("pk"), user_id=user.pk).values("role")
    campaigns = Campaign.objects.order_by("name").annotate(member_role=Subquery(role[:1]))
    if user_has_role(user, Role.ADMIN):
        return campaigns
    return campaigns.filter(Q(open_to_all=True) | Q(members__user_id=user.pk)).distinct()


def assignment_for_annotator(
    *, assignment_id: int, user: User, with_pair: bool = True
) -> Assignment:
    """An assignment of this user's, in a campaign they still belong to; anyone else's is
    reported as not found (no probing).

    with_pair=False leaves the pair's texts unread, for callers that only write.
    """
    if not with_pair and connection.vendor == "postgresql":  # the hot path: label
        found = fetch_instances(
            _assignment_with_campaign_sql(),
            {"id": assignment_id, "annotator": user.pk},
            [
                model_columns(Assignment, "a"),
                model_columns(Campaign, "c"),
                model_columns(CampaignMember, "m"),
            ],
        )
        if found is None:
            raise Http404("No such assignment.")
        assignment, campaign, member = found[0], found[1], _found_member(found[2])
    else:
        related = ("pair", "campaign") if with_pair else ("campaign",)
        found_assignment = (
            Assignment.objects.select_related(*related)
            .filter(pk=assignment_id, annotator=user)
            .first()
        )
        if found_assignment is None:
            raise Http404("No such assignment.")
        assignment, campaign = found_assignment, found_assignment.campaign
        member = CampaignMember.objects.filter(campaign=campaign, user_id=user.pk).first()
    assert isinstance(assignment, Assignment) and isinstance(campaign, Campaign)  # noqa: S101
    if not _may_annotate(campaign, member, user):
        raise Http404("No such assignment.")
    member_remember(campaign, user_id=user.pk, member=member)
    assignment.campaign = campaign
    return assignment


@functools.cache
def _campaign_sql() -> str:
    quote = connection.ops.quote_name
    campaign, member = model_columns(Campaign, "c"), model_columns(CampaignMember, "m")
    return (
        f"SELECT {campaign.select_sql}, {member.select_sql}"  # noqa: S608
        f" FROM {quote(Campaign._meta.db_table)} c"
        f" LEFT JOIN {quote(CampaignMember._meta.db_table)} m"
        " ON m.campaign_id = c.id AND m.user_id = %(user)s"
        " WHERE c.id = %(id)s"
    )


@functools.cache
def _assignment_with_campaign_sql() -> str:
    quote = connection.ops.quote_name
    assignment, campaign = model_columns(Assignment, "a"), model_columns(Campaign, "c")
    member = model_columns(CampaignMember, "m")
    return (
        f"SELECT {assignment.select_sql}, {campaign.select_sql}, {member.select_sql}"  # noqa: S608
        f" FROM {quote(Assignment._meta.db_table)} a"
        f" JOIN {quote(Campaign._meta.db_table)} c ON c.id = a.campaign_id"
        f" LEFT JOIN {quote(CampaignMember._meta.db_table)} m"
        " ON m.campaign_id = c.id AND m.user_id = a.annotator_id"
        " WHERE a.id = %(id)s AND a.annotator_id = %(annotator)s"
    )


def shown_pair(assignment: Assignment) -> dict[str, Any]:
    """The pair as this annotator sees it: A/B possibly swapped, nothing about other labels."""
    pair = assignment.pair
    if pair.responses is not None:
        return _shown_ranking_item(assignment)
    left, right = (
        (pair.response_b, pair.response_a)
        if assignment.swapped
        else (pair.response_a, pair.response_b)
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


# How long the last counts are served while one request counts again (a large campaign's
# count takes a second or more), and how long that request may hold the recount.
STALE_COUNTS_SECONDS = 600
RECOUNT_LOCK_SECONDS = 30


def _pair_counts_keys(campaign_id: int) -> tuple[str, str, str]:
    """(the counts, their generation, the recount lock) of a campaign in the cache."""
    prefix = f"campaign-pair-counts:{campaign_id}"  # not the old key: its value was the rows
    return prefix, f"{prefix}:generation", f"{prefix}:recount"


def _label_count_keys(campaign_id: int) -> tuple[str, str, str]:
    """As ``_pair_counts_keys`` for the label count; the pairs' generation, so that a write
    that moves a pair on (a completing label, say) refreshes both."""
    _counts, generation, _lock = _pair_counts_keys(campaign_id)
    prefix = f"campaign-label-count:{campaign_id}"
    return prefix, generation, f"{prefix}:recount"


def campaign_pair_counts(*, campaign: Campaign) -> dict[str, int]:
    """The campaign's pairs by status and their total, gold pairs apart (under "gold").

    Gold pairs are checks on annotators with a known answer: they are not work to be done, so
    they count in no status and not in the total.
    """
    rows = _pair_count_rows(campaign)
    counts = dict.fromkeys(Pair.Status.values, 0)
    counts["gold"] = 0
    for status, is_gold, n in rows:
        counts["gold" if is_gold else status] += n
    counts["total"] = sum(n for status, is_gold, n in rows if not is_gold)
    return counts


def _pair_count_rows(campaign: Campaign) -> list[tuple[str, bool, int]]:
    """(status, is_gold, pairs) rows, cached.

    Counting a large campaign's pairs on every submit would be the slowest query of the
    workspace, so the counts are cached for ``PROGRESS_CACHE_SECONDS``, and a label that moves a
    pair on starts a new generation (``campaign_pair_counts_forget``), so the counter follows
    the labels. With hundreds of annotators completing pairs every second, dropping the counts
    instead sent every workspace request to count at once; now one request counts again (the
    recount lock) while the others show the counts it replaces.
    """
    rows = _cached_count(
        campaign.pk, _pair_counts_keys(campaign.pk), lambda: _count_pairs(campaign)
    )
    return cast(list[tuple[str, bool, int]], rows)


def campaign_label_count(*, campaign: Campaign) -> int:
    """How many labels the campaign holds, cached as its pair counts are (a count of millions
    of labels on every call of the progress API would read them all each time)."""
    count = _cached_count(
        campaign.pk,
        _label_count_keys(campaign.pk),
        lambda: Label.objects.filter(campaign=campaign).count(),
    )
    return cast(int, count)


def _cached_count(campaign_id: int, keys: tuple[str, str, str], count: Callable[[], Any]) -> Any:
    """What ``count`` returns, served from the cache for ``PROGRESS_CACHE_SECONDS`` within one
    generation, and while another request counts again, the value it replaces."""
    counts_key, generation_key, lock_key = keys
    try:
        cached = cache.get_many([counts_key, generation_key])
    except Exception:  # the cache backend's own errors: count, as without a cache
        logger.warning("could not read campaign %s's cached counts", campaign_id)
        return count()
    generation = cached.get(generation_key)
    entry = cached.get(counts_key)  # (generation, when counted, value)
    if entry is not None:
        counted_generation, counted_at, value = entry
        if counted_generation == generation and time.time() - counted_at < PROGRESS_CACHE_SECONDS:
            return value
        if not cache.add(lock_key, 1, timeout=RECOUNT_LOCK_SECONDS):
            return value  # another request is counting
    try:
        value = count()
        # Stamped with the generation read before counting: a label that moved a pair while
        # the count ran started a new one, so these counts are stale at once.
        cache.set(counts_key, (generation, time.time(), value), timeout=STALE_COUNTS_SECONDS)
    finally:
        if entry is not None:
            cache.delete(lock_key)
    return value


def _count_pairs(campaign: Campaign) -> list[tuple[str, bool, int]]:
    return list(
        Pair.objects.filter(campaign=campaign)
        .order_by()
        .values_list("status", "is_gold")
        # COUNT(*), not of a column: the (campaign, status, is_gold) index answers alone.
        .annotate(n=Count("*"))
    )


def campaign_pair_counts_forget_on_commit(*, campaign_id: int) -> None:
    """``campaign_pair_counts_forget`` once the current transaction commits: after a write that
    moved a pair from one status to another (a completing or escalating label, an escalation,
    a decision, a pair made gold), so the counter shows it at once."""
    transaction.on_commit(lambda: campaign_pair_counts_forget(campaign_id=campaign_id))


def campaign_pair_counts_forget(*, campaign_id: int) -> None:
    """Mark the cached counts stale (after a write that moved a pair from one status to
    another): a new generation, so the next request counts again.

    Best effort: it runs after the label's commit, so a cache that is down (Redis stopped)
    must not turn a stored label into an error; the counts then expire on their own."""
    _counts_key, generation_key, _lock_key = _pair_counts_keys(campaign_id)
    try:
        cache.set(generation_key, uuid.uuid4().hex, timeout=None)
    except Exception:  # the cache backend's own errors: Redis, file system
        logger.warning("could not forget campaign %s's cached pair counts", campaign_id)


# An annotator's label count is kept with the last label id it counted: each call reads only
# the labels since (label_annotator_recent), not the annotator's whole history. Labels younger
# than SETTLE_SECONDS are counted but not yet kept: a submit whose transaction took a lower id
# may still commit after a later one (parallel API clients), and must not fall behind the id
# kept. The count starts afresh every ANNOTATOR_COUNTS_SECONDS, to forget labels deleted with
# their pair.
ANNOTATOR_COUNTS_SECONDS = 3600
SETTLE_SECONDS = 60


def _annotator_counts_key(campaign_id: int, user_id: int) -> str:
    return f"annotator-counts:{campaign_id}:{user_id}"


def annotator_counts(*, campaign: Campaign, user: User) -> dict[str, int]:
    """How many pairs of the campaign the user has labelled and skipped.

    A submitted assignment and its label are written in one transaction, so the labels are
    counted, as the note above says. Skips are counted from the skipped entries of the
    assignments' annotator index alone: a skip is the exception, and no label is read for it.
    """
    key = _annotator_counts_key(campaign.pk, user.pk)
    try:
        entry = cache.get(key)  # (when started, the last label id kept, the labels up to it)
    except Exception:  # the cache backend's own errors: count everything, as without one
        logger.warning("could not read the cached label count of %s in %s", user.pk, campaign.pk)
        entry = None
    fresh = entry is None or time.time() - entry[0] >= ANNOTATOR_COUNTS_SECONDS
    started, kept_id, kept = (time.time(), 0, 0) if fresh else entry
    young = Q(created_at__gte=timezone.now() - timedelta(seconds=SETTLE_SECONDS))
    found = (
        Label.objects.filter(campaign=campaign, annotator=user, pk__gt=kept_id)
        .order_by()
        .aggregate(
            new=Count("id"),
            old=Count("id", filter=~young),
            old_last=Max("id", filter=~young),
            young_first=Min("id", filter=young),
        )
    )
    # Kept only where the old labels come before every young one (a young label below an old
    # one, from a web server whose clock runs ahead, would fall behind the id kept).
    settled = found["old_last"] is not None and (
        found["young_first"] is None or found["old_last"] < found["young_first"]
    )
    if settled or fresh:
        kept_next = (found["old_last"], kept + found["old"]) if settled else (0, 0)
        try:
            cache.set(key, (started, *kept_next), timeout=ANNOTATOR_COUNTS_SECONDS)
        except Exception:  # best effort: the next call counts again
            logger.warning("could not cache the label count of %s in %s", user.pk, campaign.pk)
    skipped = Assignment.objects.filter(
        campaign=campaign, annotator=user, status=Assignment.Status.SKIPPED
    ).count()
    return {"submitted": kept + found["new"], "skipped": skipped}


def campaign_progress(*, campaign: Campaign, user: User | None = None) -> dict[str, Any]:
    """What GET /api/campaigns/{id}/progress reports: pairs, labels and the caller's own."""
    progress: dict[str, Any] = {
        "pairs": campaign_pair_counts(campaign=campaign),
        "labels": campaign_label_count(campaign=campaign),
    }
    if user is not None:
        progress["mine"] = annotator_counts(campaign=campaign, user=user)
    return progress


def labels_for_export(*, campaign: Campaign) -> Iterator[dict[str, Any]]:
    """Raw labels in canonical orientation, streamed; set-aside labels (their annotator was
    quarantined before the pair settled) are left out."""
    rows = (
        Label.objects.filter(campaign=campaign, set_aside=False)
        .select_related("annotator", "assignment")
        .order_by("id")
    )
    for label in rows.iterator(chunk_size=2000):
        row = {
            "label_id": label.pk,
            "pair_id": label.pair_id,
            "annotator": label.annotator.username,
            "preference": label.preference,
            "outcome": label.outcome,
            "aspect_ratings": label.aspect_ratings or {},
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


# The Back link looks for a label to change among the annotator's latest labels only: it is
# for the answer just given, and reading every label of a long grace period (or, as it did, of
# the annotator's whole history) on each pair shown costs more the more they judged.
CHANGEABLE_AMONG_LATEST = 50


def last_changeable_assignment(
    *, campaign: Campaign, user: User, now: datetime
) -> Assignment | None:
    """The user's most recent labelled assignment whose label may still change, if any, among
    their ``CHANGEABLE_AMONG_LATEST`` latest labels (read by id from label_annotator_recent)."""
    minutes = campaign.label_change_minutes
    if minutes <= 0:
        return None
    since = now - timedelta(minutes=minutes)
    latest = (
        Label.objects.filter(campaign=campaign, annotator=user)
        .order_by("-id")
        .values_list("assignment_id", "created_at")[:CHANGEABLE_AMONG_LATEST]
    )
    # Two queries: with the latest labels as a subquery, the planner may scan every assignment
    # for the recent ones instead.
    recent = [assignment_id for assignment_id, created_at in latest if created_at >= since]
    if not recent:
        return None
    return (
        Assignment.objects.filter(
            pk__in=recent,
            status=Assignment.Status.SUBMITTED,
            finished_at__gte=since,
            model_view_shown=False,
        )
        # A decided pair's labels are locked, but not a gold check's (label_change_check):
        # a gold pair an expert decided must not show as one by a missing Back link.
        .exclude(
            Q(pair__status__in=[Pair.Status.RESOLVED, Pair.Status.DISCARDED])
            & ~Q(kind=Assignment.Kind.GOLD)
        )
        .order_by("-finished_at", "-id")
        .first()
    )


# The members' order on their page and in the API (the last field unique: keyset paging).
MEMBERS_ORDER = ("user__username", "id")


def campaign_members_ordered(*, campaign: Campaign) -> QuerySet[CampaignMember]:
    """The campaign's memberships by user name, with their users."""
    return (
        CampaignMember.objects.filter(campaign=campaign)
        .select_related("user", "added_by")
        .order_by(*MEMBERS_ORDER)
    )


def campaign_members(*, campaign: Campaign, members: list[CampaignMember]) -> list[dict[str, Any]]:
    """Rows of ``members`` (a page of ``campaign_members_ordered``) for the members page and
    API: role, state, the latest transition with its figures, the qualification figures and
    how many of their labels are set aside."""
    labels = Label.objects.filter(
        campaign=campaign, set_aside=True, annotator_id__in=[member.user_id for member in members]
    )
    # The current memberships' transitions (an earlier, removed membership's have no member).
    current = MemberTransition.objects.filter(
        campaign=campaign, member__in=[member.pk for member in members]
    )
    set_aside = dict(labels.order_by().values_list("annotator_id").annotate(n=Count("id")))
    latest: dict[int | None, Any] = {}
    transitions = (
        current.select_related("by").order_by("member_id", "-at", "-id").distinct("member_id")
        if connection.vendor == "postgresql"
        else current.select_related("by").order_by("at", "id")
    )
    for transition in transitions:
        latest[transition.member_id] = transition  # the newest wins
    return [
        {
            "member": member,
            "user": member.user,
            "last_transition": latest.get(member.pk),
            "labels_set_aside": set_aside.get(member.user_id, 0),
        }
        for member in members
    ]


def campaign_quarantined(*, campaign: Campaign) -> list[CampaignMember]:
    """Members the campaign has quarantined (the dashboard tells the admin)."""
    return list(
        CampaignMember.objects.filter(
            campaign=campaign, state=CampaignMember.State.QUARANTINED
        ).select_related("user")
    )
