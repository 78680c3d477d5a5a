"""Skipping moves through the queue.

Before, "Skip to the next escalation" (and "Next escalation" after a decision) took the oldest
open escalation other than the one left: an expert who skipped the oldest, then skipped the one
it gave them, was handed the oldest again, and never reached the third.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from reviewers.models import Escalation
from reviewers.services.escalations import escalation_claim
from tests.reviewers.factories import open_escalations

pytestmark = pytest.mark.django_db


def _skip(client, escalation: Escalation) -> int:
    """The expert releases the escalation they hold and skips it, as the page's buttons do."""
    client.post(reverse("escalation-release", args=[escalation.pk]), HTTP_HX_REQUEST="true")
    response = client.post(reverse("expert-next"), {"after": escalation.pk})
    assert response.status_code == 302
    return int(response["Location"].rstrip("/").rsplit("/", 1)[1])


def test_skipping_reaches_every_escalation_before_coming_back(client, expert, campaign):
    oldest, middle, newest = open_escalations(campaign, 3)
    client.force_login(expert)
    escalation_claim(escalation=oldest, expert=expert)
    reached = [oldest.pk]
    for _ in range(3):
        current = Escalation.objects.get(pk=reached[-1])
        reached.append(_skip(client, current))
    # Oldest first, then on in age order, and round to the oldest after the newest.
    assert reached == [oldest.pk, middle.pk, newest.pk, oldest.pk]
