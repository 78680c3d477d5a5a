"""The dashboard's agreement panel shows an undefined alpha as the agreement page does: "—"
with the reason (README: "Undefined alpha ... is NaN with a reason, shown as '—'")."""

from __future__ import annotations

import pytest
from django.test import Client

from annotation.models import Pair, Round
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_cache")]


def _overall(admin_user, campaign) -> str:  # noqa: ANN001
    client = Client()
    client.force_login(admin_user)
    response = client.get(
        f"/campaigns/{campaign.pk}/dashboard/?part=agreement", HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    text = response.content.decode()
    # The overall figure: between its caption and the target.
    return text.split("overall:", 1)[1].split("· target", 1)[0]


def test_every_label_the_same_shows_a_dash_and_why(admin_user, annotator_a, annotator_b):
    campaign = CampaignFactory()
    round_ = Round.objects.create(campaign=campaign, number=1)
    for _ in range(3):
        pair = PairFactory(campaign=campaign, round=round_, status=Pair.Status.COMPLETE)
        add_label(pair, annotator_a, 1)
        add_label(pair, annotator_b, 1)
    overall = _overall(admin_user, campaign)
    assert "n/a" not in overall
    assert "— (every label is the same)" in overall


def test_no_pair_with_two_labels_shows_a_dash_and_why(admin_user, annotator_a):
    campaign = CampaignFactory()
    add_label(PairFactory(campaign=campaign), annotator_a, 1)
    overall = _overall(admin_user, campaign)
    assert "n/a" not in overall
    assert "— (no pair has two labels yet)" in overall
