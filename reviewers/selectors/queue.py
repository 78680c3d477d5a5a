"""The expert queue: open escalations by order and domain, a page of them at a time, the next
one an expert can take, who holds a claim; and the rewrite step's queue."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from annotation.models import Campaign, Outcome, Pair, Rewrite
from annotation.roles import Role, user_has_role
from core.errors import BadRequest
from core.paging import KeysetPage, beyond, keyset_page
from core.validation import DB_INT_MAX
from reviewers.models import Escalation
from reviewers.selectors.access import visible_to, visible_to_expert

QUEUE_ORDERS = {
    "oldest": ("created_at", "id"),
    "disputed": ("-disagreement", "created_at", "id"),
}


def escalation_queue(
    *,
    campaign_id: int | None = None,
    order: str = "oldest",
    viewer: User | None = None,
    domain: str | None = None,
    now: datetime | None = None,
) -> QuerySet[Escalation]:
    """Open escalations, oldest first or most disputed (highest pair disagreement) first;
    those ``viewer`` may see (their campaigns, see ``visible_to``; their domains, see
    ``visible_to_expert``), of one ``domain`` if given."""
    escalations = Escalation.objects.filter(status=Escalation.Status.OPEN).select_related(
        "pair", "campaign", "claimed_by"
    )
    escalations = visible_to(escalations, viewer)
    if viewer is not None:
        escalations = escalations.filter(visible_to_expert(viewer, now=now))
    if campaign_id is not None:
        escalations = escalations.filter(campaign_id=campaign_id)
    if domain:
        escalations = escalations.filter(pair__task_category=domain)
    return escalations.order_by(*QUEUE_ORDERS.get(order, QUEUE_ORDERS["oldest"]))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CURSOR_PART = {
    "disagreement": re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?"),
    "created_at": re.compile(r"-?[0-9]{1,18}"),
    "id": re.compile(r"[0-9]{1,19}"),
}


def _cursor_encode(key: list[Any], fields: tuple[str, ...]) -> str:
    """A row's place (its values ``key`` of the order's fields) as a link writes it: the
    values joined by "_", the time in microseconds since 1970 (``created_at_id`` or
    ``disagreement_created_at_id``). Links that clients keep are in this format: keep it."""
    parts = []
    for field, value in zip(fields, key, strict=True):
        if field.lstrip("-") == "created_at":
            value = (value - _EPOCH) // _MICROSECOND
        parts.append(repr(value))  # a float's repr reads back as the same float
    return "_".join(parts)


def _cursor_decode(raw: str, fields: tuple[str, ...], *, param: str) -> list[Any]:
    """A cursor of ``_cursor_encode`` back into the values of the order's fields; BadRequest
    for anything else (another order's cursor, an edited one)."""
    parts = raw.strip().split("_")
    invalid = BadRequest(f"{param} is not a position in this queue: follow the page links.")
    if len(parts) != len(fields):
        raise invalid
    values: list[Any] = []
    for field, part in zip(fields, parts, strict=True):
        name = field.lstrip("-")
        if not _CURSOR_PART[name].fullmatch(part):
            raise invalid
        if name == "disagreement":
            number = float(part)
            if not math.isfinite(number):
                raise invalid
            values.append(number)
        elif name == "created_at":
            try:
                values.append(_EPOCH + int(part) * _MICROSECOND)
            except OverflowError:
                raise invalid from None
        else:
            if int(part) > DB_INT_MAX:
                raise invalid
            values.append(int(part))
    return values


@dataclass(frozen=True)
class _QueueCursor:
    """The queue's cursor format for ``core.paging.keyset_page``."""

    fields: tuple[str, ...]

    def encode(self, key: list[Any]) -> str:
        return _cursor_encode(key, self.fields)

    def decode(self, raw: str, *, param: str) -> list[Any]:
        return _cursor_decode(raw, self.fields, param=param)


def queue_page(
    queue: QuerySet[Escalation],
    *,
    order: str,
    size: int,
    after: str | None = None,
    before: str | None = None,
) -> KeysetPage[Escalation]:
    """``size`` escalations of ``queue`` (ordered by ``escalation_queue`` in ``order``): the
    first, or those right after the cursor ``after`` or right before ``before``.

    Keyset paging (``core.paging.keyset_page``): a cursor is the sort key of a row, so a page
    is one indexed read of at most ``size + 1`` rows however deep it is (no OFFSET), and
    escalations decided meanwhile shift nothing: the next page starts where this one ended. A
    cursor that is not one of ours (edited, another order's) is a BadRequest; one whose row
    has been decided since still marks its place. Where no row is left before ``before``, the
    first page is shown.
    """
    fields = QUEUE_ORDERS.get(order, QUEUE_ORDERS["oldest"])
    return keyset_page(
        queue, order=fields, size=size, after=after, before=before, cursor=_QueueCursor(fields)
    )


def queue_held_back(*, viewer: User, now: datetime | None = None) -> dict[str, Any]:
    """Open escalations the viewer may review but not yet: reserved for the experts of their
    task category until the campaign's domain wait is over. How many, and when the first
    opens to all (so an empty queue can say why it is empty)."""
    if user_has_role(viewer, Role.ADMIN):  # admins see every escalation at once
        return {"count": 0, "opens_at": None}
    now = now or timezone.now()
    escalations = visible_to(Escalation.objects.filter(status=Escalation.Status.OPEN), viewer)
    held = escalations.filter(open_to_all_at__gt=now).exclude(visible_to_expert(viewer, now=now))
    return held.aggregate(count=Count("id"), opens_at=Min("open_to_all_at"))


def queue_domains(*, viewer: User) -> list[str]:
    """The task categories of pairs with an open escalation the viewer may see, for the
    queue's domain filter: those of the queue itself, so that no category is offered whose
    escalations the viewer's domains (or the wait) still hide."""
    return list(
        escalation_queue(viewer=viewer)
        .exclude(pair__task_category="")
        .values_list("pair__task_category", flat=True)
        .distinct()
        .order_by("pair__task_category")
    )


def next_escalation_for(
    *,
    expert: User,
    after: int | None = None,
    exclude: Iterable[int] = (),
    now: datetime | None = None,
) -> Escalation | None:
    """The open escalation this expert can take next: visible to them (their domains first,
    see ``visible_to_expert``), free (or theirs, or its claim expired), on a pair they did not
    label, and not one of ``exclude``. The oldest; with ``after`` (the one they leave, skipped
    or decided), the first after it in age order, back to the oldest past the last, so that
    skipping moves through the queue rather than between two escalations."""
    now = now or timezone.now()
    claimable = (
        Escalation.objects.filter(status=Escalation.Status.OPEN)
        .filter(visible_to_expert(expert, now=now))
        .filter(Q(claimed_by__isnull=True) | Q(claim_expires_at__lt=now) | Q(claimed_by=expert))
        .exclude(pair__labels__annotator=expert)
    )
    claimable = visible_to(claimable, expert)
    skipped = {*exclude, *([after] if after is not None else [])}
    if skipped:
        claimable = claimable.exclude(pk__in=skipped)
    fields = QUEUE_ORDERS["oldest"]
    ordered = claimable.order_by(*fields)
    position = (
        Escalation.objects.filter(pk=after).values_list(*fields).first()
        if after is not None
        else None
    )
    if position is not None:
        later = ordered.filter(beyond(fields, position, forward=True)).first()
        if later is not None:
            return later
    return ordered.first()


def _held(escalation: Escalation, now: datetime) -> bool:
    return (
        escalation.claimed_by_id is not None
        and escalation.claim_expires_at is not None
        and escalation.claim_expires_at >= now
    )


def claim_state(
    escalation: Escalation,
    *,
    viewer: User,
    now: datetime | None = None,
    viewer_is_admin: bool | None = None,
) -> dict[str, Any]:
    """Who holds the claim, as this viewer may know it: experts do not see each other's names.

    A page of claims passes ``viewer_is_admin``, read once: a signed-in session's user has no
    remembered roles, so asking here costs a query per row held by someone else."""
    now = now or timezone.now()
    held = _held(escalation, now)
    mine = held and escalation.claimed_by_id == viewer.pk
    holder = None
    if held and not mine:
        is_admin = user_has_role(viewer, Role.ADMIN) if viewer_is_admin is None else viewer_is_admin
        claimer = escalation.claimed_by
        holder = claimer.username if is_admin and claimer is not None else "another expert"
    return {
        "held": held,
        "mine": mine,
        "holder": holder,
        "expires_at": escalation.claim_expires_at if held else None,
        "overdue": escalation.deadline is not None and escalation.deadline < now,
    }


def claim_states(
    escalations: Iterable[Escalation], *, viewer: User, now: datetime | None = None
) -> list[tuple[Escalation, dict[str, Any]]]:
    """Each escalation of a page with its ``claim_state``: whether the viewer is an admin is
    read once, and only if some claim is held by someone else."""
    now = now or timezone.now()
    is_admin: bool | None = None
    rows = []
    for escalation in escalations:
        if is_admin is None and _held(escalation, now) and escalation.claimed_by_id != viewer.pk:
            is_admin = user_has_role(viewer, Role.ADMIN)
        state = claim_state(escalation, viewer=viewer, now=now, viewer_is_admin=is_admin)
        rows.append((escalation, state))
    return rows


def rewrite_queue(*, campaign: Campaign, limit: int | None = 50) -> QuerySet[Pair]:
    """Pairs the labels found "both bad" that no one has rewritten yet, oldest first.

    Where the campaign sends "both bad" to the rewrite step (``both_bad_route``), experts (or
    annotators with the workspace's rewrite box) write a corrected answer for them. The
    first ``limit`` of them; all (to be paged) with ``limit`` None.
    """
    # A rewrite that counts: an expert's, or one of a label not set aside (the export leaves
    # a quarantined annotator's out, so their pair needs another).
    counted = Rewrite.objects.filter(pair=OuterRef("pk")).filter(
        Q(label__isnull=True) | Q(label__set_aside=False)
    )
    pairs = (
        Pair.objects.filter(
            campaign=campaign,
            consensus_outcome=Outcome.BOTH_BAD,
            status__in=[Pair.Status.COMPLETE, Pair.Status.RESOLVED],
        )
        .exclude(Exists(counted))
        .order_by("id")
    )
    return pairs if limit is None else pairs[:limit]
