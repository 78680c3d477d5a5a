"""Building labelled pairs for the reviewers tests, through the real engine or directly."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.utils import timezone

from annotation.models import Assignment, Campaign, Label, Pair
from annotation.roles import Role, role_groups
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_change, label_submit
from reviewers.models import Escalation
from tests.factories import PairFactory, UserFactory


def user_with_role(username: str, role: Role = Role.ANNOTATOR):
    """A user in the role's group, without password hashing (slow on a shared CPU)."""
    user = UserFactory(username=username, is_staff=role is Role.ADMIN)
    user.groups.add(role_groups()[role])
    return user


def judge(
    campaign: Campaign,
    user,
    preference: int,
    *,
    flags: Sequence[str] = (),
    rationale: str = "",
    seconds: float | None = None,
) -> Label:
    """The annotator takes their next assignment and labels it with a *canonical* preference."""
    assignment = assignment_next(campaign=campaign, annotator=user)
    assert assignment is not None, f"no work for {user}"
    shown = -preference if assignment.swapped else preference
    return label_submit(
        assignment=assignment,
        data=LabelInput(
            preference=shown, flags=tuple(flags), rationale=rationale, seconds_spent=seconds
        ),
    )


def relabel(assignment: Assignment, preference: int, flags: Sequence[str] = ()) -> None:
    """The annotator changes their label of ``assignment`` to a *canonical* preference."""
    shown = -preference if assignment.swapped else preference
    label_change(assignment=assignment, data=LabelInput(preference=shown, flags=tuple(flags)))


def judged_pair(campaign: Campaign, preferences: Sequence[int], *, users=None, **kwargs) -> Pair:
    """A fresh pair (the only open one) labelled through the engine with these preferences."""
    pair = PairFactory(campaign=campaign)
    users = users or UserFactory.create_batch(len(preferences))
    for user, preference in zip(users, preferences, strict=True):
        label = judge(campaign, user, preference, **kwargs)
        assert label.pair_id == pair.pk
    pair.refresh_from_db()
    return pair


def add_label(
    pair: Pair,
    annotator,
    preference: int,
    *,
    kind: str = Assignment.Kind.REGULAR,
    shown_first: str = "a",
    seconds: float | None = None,
) -> Label:
    """A submitted assignment and its label, written directly (no consensus side effects)."""
    now = timezone.now()
    assignment = Assignment.objects.create(
        campaign_id=pair.campaign_id,
        pair=pair,
        annotator=annotator,
        round_id=pair.round_id,
        kind=kind,
        status=Assignment.Status.SUBMITTED,
        swapped=shown_first == "b",
        leased_at=now,
        lease_expires_at=now + timedelta(minutes=15),
        finished_at=now,
    )
    return Label.objects.create(
        assignment=assignment,
        campaign_id=pair.campaign_id,
        pair=pair,
        annotator=annotator,
        preference=preference,
        is_retest=kind == Assignment.Kind.RETEST,
        is_gold_check=kind == Assignment.Kind.GOLD,
        shown_first=shown_first,
        seconds_spent=seconds,
    )


def open_escalations(
    campaign, n: int, *, category: str = "", disagreement=None
) -> list[Escalation]:
    """``n`` open escalations, all opened at the same instant (the id breaks the tie)."""
    pairs = PairFactory.create_batch(
        n, campaign=campaign, status=Pair.Status.ESCALATED, task_category=category
    )
    escalations = Escalation.objects.bulk_create(
        Escalation(
            campaign=campaign,
            pair=pair,
            reason="disagreement",
            disagreement=disagreement(index) if disagreement else 0.5,
        )
        for index, pair in enumerate(pairs)
    )
    at = timezone.now() - timedelta(days=1)
    Escalation.objects.filter(pk__in=[e.pk for e in escalations]).update(created_at=at)
    return escalations
