"""An expert who labelled the escalated pair cannot decide it (conflict of interest), so the
e-mail about it is not theirs: it would spend their hourly slot on a pair they may not take,
and hold back for an hour the notice of one they may."""

from __future__ import annotations

import pytest
from django.core import mail

from annotation.roles import Role, role_groups
from reviewers.models import Escalation
from reviewers.tasks import notify_experts_task
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label, user_with_role

pytestmark = pytest.mark.django_db


def _expert(name: str):
    user = user_with_role(name, Role.EXPERT)
    user.email = f"{name}@example.org"
    user.save()
    return user


def test_the_expert_who_labelled_the_pair_is_not_told_of_it():
    labeller = _expert("lena")
    _expert("otto")
    labeller.groups.add(role_groups()[Role.ANNOTATOR])  # an expert who also annotates
    campaign = CampaignFactory()
    pair = PairFactory(campaign=campaign)
    add_label(pair, labeller, 1)
    escalation = Escalation.objects.create(campaign=campaign, pair=pair, reason="no_majority")

    assert notify_experts_task(escalation.pk) == 1
    assert [message.to for message in mail.outbox] == [["otto@example.org"]]

    # Their slot is still free: the next escalation, one they may decide, reaches them at once.
    second = Escalation.objects.create(
        campaign=campaign, pair=PairFactory(campaign=campaign), reason="no_majority"
    )
    assert notify_experts_task(second.pk) == 1
    assert mail.outbox[-1].to == ["lena@example.org"]
