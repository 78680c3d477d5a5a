"""Crafted cursors on the API's paged lists (``core.paging``) are a 400, never a 500; the expert
queue's cursors keep the format clients hold (``reviewers.selectors.queue``)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from annotation.services.members import member_add
from reviewers.models import Escalation
from tests.conftest import api_client_for
from tests.factories import CampaignFactory
from tests.reviewers.factories import open_escalations

pytestmark = pytest.mark.django_db


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_cursor_holding_a_lone_surrogate_is_a_400(admin_user):
    # JSON escapes a lone surrogate ("\\ud800"); it has no UTF-8, so the database driver
    # failed on it in the query (a 500).
    raw = b'["\\ud800",1]'
    campaign = CampaignFactory()
    member_add(campaign=campaign, user=get_user_model().objects.create_user(username="ann"))
    client = api_client_for(admin_user)
    url = f"/api/campaigns/{campaign.pk}/members"
    for param in ("after", "before"):
        response = client.get(url, {param: _cursor(raw)})
        assert response.status_code == 400, (param, response.content[:300])
        assert "follow the page links" in response.json()["detail"]


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_an_expert_queue_cursor_in_the_format_clients_hold_still_marks_its_place(expert):
    # The queue's cursors are its sort key joined by "_", the time in microseconds since 1970:
    # links clients (and bookmarks) hold keep working.
    levels = (0.9, 0.6, 0.3)
    opened = open_escalations(CampaignFactory(), 6, disagreement=lambda i: levels[i % 3])
    escalations = list(Escalation.objects.filter(pk__in=[e.pk for e in opened]))
    client = api_client_for(expert)
    oldest = sorted(escalations, key=lambda e: (e.created_at, e.pk))
    third = oldest[2]
    response = client.get(
        reverse("api-escalations"), {"after": f"{_micros(third.created_at)}_{third.pk}"}
    )
    assert response.status_code == 200, response.content[:300]
    assert [row["id"] for row in response.json()] == [e.pk for e in oldest[3:]]

    disputed = sorted(escalations, key=lambda e: (-e.disagreement, e.created_at, e.pk))
    mark = disputed[2]
    cursor = f"{mark.disagreement!r}_{_micros(mark.created_at)}_{mark.pk}"
    response = client.get(reverse("api-escalations"), {"order": "disputed", "after": cursor})
    assert [row["id"] for row in response.json()] == [e.pk for e in disputed[3:]]
    response = client.get(
        reverse("api-escalations"), {"order": "disputed", "before": cursor, "limit": 2}
    )
    assert [row["id"] for row in response.json()] == [e.pk for e in disputed[:2]]
    # And the links it gives are in that same format.
    first = client.get(reverse("api-escalations"), {"order": "disputed", "limit": 2})
    expected = f"{disputed[1].disagreement!r}_{_micros(disputed[1].created_at)}_{disputed[1].pk}"
    assert f"after={expected}" in first.headers["Link"]
