"""Review 19f: a second submit of a pair already judged (two tabs, a double click, a retried
request) says that the first answer was saved; the page said only "Your label was not saved"."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Assignment, Label
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db


def test_a_second_submit_says_the_first_answer_was_saved(client, annotator_a):
    campaign = CampaignFactory(open_to_all=True)
    PairFactory.create_batch(2, campaign=campaign)
    client.force_login(annotator_a)
    client.get(reverse("campaign-detail", args=[campaign.pk]))
    assignment = Assignment.objects.get(annotator=annotator_a, status=Assignment.Status.ACTIVE)
    url = reverse("assignment-label", args=[assignment.pk])
    client.post(url, {"preference": "1"})
    again = client.post(url, {"preference": "-1"})  # a plain form: no htmx, no hx-sync
    assert again.status_code == 409
    page = again.content.decode()
    assert "already submitted" in page
    assert "was saved and stands" in page
    assert Label.objects.filter(assignment=assignment).count() == 1
