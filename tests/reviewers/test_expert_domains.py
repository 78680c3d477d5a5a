"""Escalations go first to experts of the pair's task category; everyone after the wait."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from annotation.roles import Role
from reviewers.models import Escalation, ExpertSettings
from reviewers.selectors.queue import next_escalation_for
from reviewers.services.escalations import escalation_open
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def experts():
    mathematician = user_with_role("maths-expert", Role.EXPERT)
    ExpertSettings.objects.create(user=mathematician, domains=["math"])
    coder = user_with_role("code-expert", Role.EXPERT)
    ExpertSettings.objects.create(user=coder, domains=["code"])
    generalist = user_with_role("generalist", Role.EXPERT)
    return mathematician, coder, generalist


def _escalated(campaign, category):
    pair = PairFactory(campaign=campaign, task_category=category)
    return escalation_open(pair=pair, reason=Escalation.Reason.MANUAL, detail="look")


def _queue_ids(user, **params):
    response = api_client_for(user).get(reverse("api-escalations"), params)
    assert response.status_code == 200
    return {row["id"] for row in response.json()}


def test_an_escalation_goes_to_its_domain_first_and_to_everyone_after_the_wait(experts):
    mathematician, coder, generalist = experts
    campaign = CampaignFactory(escalation_domain_wait_minutes=60)
    maths = _escalated(campaign, "math")
    uncategorised = _escalated(campaign, "")
    assert maths.open_to_all_at is not None and uncategorised.open_to_all_at is None
    assert _queue_ids(mathematician) == {maths.pk, uncategorised.pk}
    assert _queue_ids(coder) == {uncategorised.pk}
    assert _queue_ids(generalist) == {uncategorised.pk}
    assert next_escalation_for(expert=coder) == uncategorised
    assert next_escalation_for(expert=coder, after=uncategorised.pk) is None
    # Out of the domain, the review page does not exist yet either.
    page = api_client_for(coder).get(reverse("api-escalation-detail", args=[maths.pk]))
    assert page.status_code == 404
    with time_machine.travel(timezone.now() + timedelta(minutes=61), tick=False):
        assert _queue_ids(coder) == {maths.pk, uncategorised.pk}
        assert _queue_ids(generalist) == {maths.pk, uncategorised.pk}
        assert next_escalation_for(expert=coder, after=uncategorised.pk) == maths


def test_a_campaign_that_does_not_wait_shows_everyone_at_once(experts):
    _mathematician, coder, _generalist = experts
    campaign = CampaignFactory(escalation_domain_wait_minutes=0)
    maths = _escalated(campaign, "math")
    assert _queue_ids(coder) == {maths.pk}


def test_the_queue_filters_by_domain_and_admins_see_everything(experts, admin_user, client):
    mathematician, _coder, _generalist = experts
    campaign = CampaignFactory()
    maths = _escalated(campaign, "math")
    code = _escalated(campaign, "code")
    assert _queue_ids(admin_user) == {maths.pk, code.pk}
    assert _queue_ids(admin_user, domain="code") == {code.pk}
    assert _queue_ids(mathematician, domain="math") == {maths.pk}
    rows = api_client_for(admin_user).get(reverse("api-escalations"), {"domain": "math"}).json()
    assert [row["id"] for row in rows] == [maths.pk] and rows[0]["open_to_all_at"] is not None
    client.force_login(mathematician)
    page = client.get(reverse("expert-queue"), {"domain": "math"})
    assert page.status_code == 200
    text = page.content.decode()
    assert f"Pair {maths.pair_id}" in text and f"Pair {code.pair_id}" not in text
    assert '<option value="math" selected>' in text
