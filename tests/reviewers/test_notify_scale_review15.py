"""Review 15: a new escalation's notice cost queries for every expert, even when nobody was due
an e-mail (membership, settings, role and the hourly slot, one expert after another). The due
and reachable experts are now chosen in one query; the e-mails go to the same people."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.models import CampaignMember
from annotation.roles import Role, role_groups
from annotation.services.members import member_add
from reviewers.models import Escalation, ExpertSettings
from reviewers.services.notifications import experts_notify
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def _experts(tag: str, n: int, *, told_ago: timedelta | None) -> list[User]:
    found = []
    for number in range(n):
        expert = user_with_role(f"{tag}-{number}", Role.EXPERT)
        expert.email = f"{tag}-{number}@example.org"
        expert.save()
        if told_ago is not None:
            ExpertSettings.objects.create(user=expert, last_notified_at=timezone.now() - told_ago)
        found.append(expert)
    return found


def _escalation(campaign) -> Escalation:
    pair = PairFactory(campaign=campaign, status="escalated")
    return Escalation.objects.create(campaign=campaign, pair=pair, reason="disagreement")


def _queries_to_notify(escalation: Escalation) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        sent = experts_notify(escalation_id=escalation.pk)
    return sent, len(queries.captured_queries)


@pytest.mark.parametrize("open_to_all", [True, False])
def test_a_notice_nobody_is_due_costs_as_many_queries_for_few_experts_as_for_many(open_to_all):
    campaign = CampaignFactory(open_to_all=open_to_all)
    _experts("few", 3, told_ago=timedelta(minutes=1))  # all told within the hour
    few = _queries_to_notify(_escalation(campaign))
    _experts("many", 30, told_ago=timedelta(minutes=1))
    many = _queries_to_notify(_escalation(campaign))
    # The escalation, then the due experts (none). It was 11 queries for 3 experts and 101 for
    # 33 (8 and 68 in a members-only campaign).
    assert few == many == (0, 2)


def test_experts_not_due_add_no_queries_to_the_e_mail_of_one_who_is():
    campaign = CampaignFactory()
    (due,) = _experts("due", 1, told_ago=timedelta(hours=2))
    first = _escalation(campaign)
    with CaptureQueriesContext(connection) as few:
        assert experts_notify(escalation_id=first.pk) == 1
    ExpertSettings.objects.filter(user=due).update(
        last_notified_at=timezone.now() - timedelta(hours=2)
    )
    _experts("told", 20, told_ago=timedelta(minutes=1))
    second = _escalation(campaign)
    with CaptureQueriesContext(connection) as many:
        assert experts_notify(escalation_id=second.pk) == 1
    # It was 9 queries alone, 69 beside the 20 told within the hour.
    assert len(many.captured_queries) == len(few.captured_queries)
    assert [message.to for message in mail.outbox] == [[due.email], [due.email]]


def test_the_one_query_picks_whom_the_rules_reach():
    members_only = CampaignFactory(open_to_all=False)
    never_set, opted_out, member, outsider, admin_expert, inactive, no_address = _experts(
        "rule", 7, told_ago=None
    )
    ExpertSettings.objects.create(user=opted_out, notify_by_email=False)
    for user in (never_set, opted_out, member):
        member_add(campaign=members_only, user=user, role=CampaignMember.Role.EXPERT)
    admin_expert.groups.add(role_groups()[Role.ADMIN])  # an admin reaches every campaign
    inactive.is_active = False
    inactive.save()
    no_address.email = ""
    no_address.save()
    member_add(campaign=members_only, user=inactive, role=CampaignMember.Role.EXPERT)
    member_add(campaign=members_only, user=no_address, role=CampaignMember.Role.EXPERT)
    assert experts_notify(escalation_id=_escalation(members_only).pk) == 3
    told = sorted(message.to[0] for message in mail.outbox)
    assert told == sorted([never_set.email, member.email, admin_expert.email])
    # An expert who never opened their settings has them now, with the slot taken.
    assert ExpertSettings.objects.get(user=never_set).last_notified_at is not None
    assert outsider.email not in told
