"""The demo's expert sees the demo's disputes at once, and an expert's empty queue says when
escalations are held back for the experts of their category (it said "Nothing to review")."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

from annotation.models import Pair
from annotation.roles import Role
from reviewers.models import Escalation
from reviewers.services.escalations import escalation_open
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def _queue(client, user) -> str:
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client.get(reverse("expert-queue")).content.decode()


def test_the_demo_expert_sees_a_fresh_dispute_of_the_demo(client):
    call_command("seed_demo", pairs=3, gold=0)
    pair = Pair.objects.filter(is_gold=False).order_by("pk").first()
    assert pair.task_category  # every demo pair has one (math, factual or code)
    escalation_open(pair=pair, reason="no_majority", detail="labels split with no majority")
    html = _queue(client, User.objects.get(username="expert1"))
    assert f"Pair {pair.pk}" in html and 'data-testid="held-back"' not in html


def test_an_empty_queue_says_what_is_held_back_for_other_experts(client):
    campaign = CampaignFactory(escalation_domain_wait_minutes=60)
    pairs = [PairFactory(campaign=campaign, task_category="math") for _ in range(2)]
    for pair in pairs:
        escalation_open(pair=pair, reason="no_majority", detail="split")
    generalist = user_with_role("gina", Role.EXPERT)
    html = _queue(client, generalist)
    assert "Nothing to review" in html
    assert "2 more escalations are reserved for the experts of their task category" in html
    # Once the wait is over (stored on each escalation when it opened) they are in the queue.
    Escalation.objects.update(open_to_all_at=pairs[0].created_at - timedelta(minutes=1))
    html = _queue(client, generalist)
    assert all(f"Pair {pair.pk}" in html for pair in pairs)
    assert 'data-testid="held-back"' not in html
