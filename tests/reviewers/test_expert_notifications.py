"""Experts hear of new escalations in their domains by e-mail, at most once an hour each, and
can turn it off (reviewers.notify_experts, called directly)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from annotation.models import CampaignMember
from annotation.roles import Role
from annotation.services.members import member_add
from reviewers.models import Escalation
from reviewers.services.notifications import expert_settings_update
from reviewers.tasks import notify_experts_task
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def escalation(campaign, category: str = "math") -> Escalation:
    pair = PairFactory(campaign=campaign, task_category=category)
    return Escalation.objects.create(campaign=campaign, pair=pair, reason="no_majority")


@pytest.fixture
def experts(db):
    found = []
    for name in ("erin", "ezra", "emil"):
        user = user_with_role(name, Role.EXPERT)
        user.email = f"{name}@example.org"
        user.save()
        found.append(user)
    return found


def test_each_expert_gets_at_most_one_email_an_hour(experts):
    erin, ezra, emil = experts
    expert_settings_update(user=ezra, notify_by_email=False, domains=[])  # opted out
    expert_settings_update(user=emil, notify_by_email=True, domains=["code"])  # another domain
    campaign = CampaignFactory()
    start = timezone.now()

    with time_machine.travel(start, tick=False):
        assert notify_experts_task(escalation(campaign).pk) == 1
        assert notify_experts_task(escalation(campaign).pk) == 0  # the same hour
    assert [message.to for message in mail.outbox] == [["erin@example.org"]]
    assert (
        "2 escalations waiting" in mail.outbox[0].subject
        or "1 escalation" in mail.outbox[0].subject
    )
    assert "/experts/queue/" in mail.outbox[0].body

    with time_machine.travel(start + timedelta(minutes=61), tick=False):
        assert notify_experts_task(escalation(campaign, "code").pk) == 2  # erin (all) and emil
    assert sorted(message.to[0] for message in mail.outbox[1:]) == [
        "emil@example.org",
        "erin@example.org",
    ]


def test_a_decided_escalation_notifies_nobody(experts):
    item = escalation(CampaignFactory())
    Escalation.objects.filter(pk=item.pk).update(status=Escalation.Status.RESOLVED)
    assert notify_experts_task(item.pk) == 0
    assert mail.outbox == []


def test_an_expert_turns_the_emails_off_on_their_settings_page(client, experts):
    erin = experts[0]
    client.force_login(erin, backend="django.contrib.auth.backends.ModelBackend")
    page = client.get("/experts/settings/")
    assert "E-mail me about new escalations" in page.content.decode()
    response = client.post("/experts/settings/", {"domains": "math, code"})
    assert response.status_code == 302
    erin.expert_settings.refresh_from_db()
    assert (erin.expert_settings.notify_by_email, erin.expert_settings.domains) == (
        False,
        ["code", "math"],
    )
    assert notify_experts_task(escalation(CampaignFactory()).pk) == 2  # ezra and emil only


def test_no_expert_hears_of_a_campaign_they_cannot_open(experts):
    erin, ezra, _emil = experts
    members_only = CampaignFactory(open_to_all=False, name="Secret Project X")
    member_add(campaign=members_only, user=ezra, role=CampaignMember.Role.EXPERT)
    escalation(CampaignFactory(open_to_all=False))  # another members-only campaign's
    assert notify_experts_task(escalation(members_only).pk) == 1
    assert [message.to for message in mail.outbox] == [["ezra@example.org"]]
    # The count in the mail is of what ezra may open: not the other campaign's escalation.
    assert "1 escalation waiting" in mail.outbox[0].subject
    assert erin.email not in str([message.to for message in mail.outbox])
