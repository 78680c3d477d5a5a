"""Changing annotators per pair in the Django admin (the campaign's settings page) goes
through ``campaign_set_annotators_per_pair``: the pairs not yet settled take the new overlap
and the admin is told. Needs annotation/admin.py's CampaignAdmin.save_model."""

from __future__ import annotations

import json

import pytest
from django import forms
from django.contrib import admin
from django.test import RequestFactory

from annotation.models import Campaign, Pair
from annotation.services.assignments import assignment_next
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judge

pytestmark = pytest.mark.django_db


def admin_change_data(campaign: Campaign, superuser, **changes: str) -> dict[str, str]:  # noqa: ANN001
    """The campaign's admin change form as its page shows it to ``superuser``, with
    ``changes``: what a POST of the form sends."""
    request = RequestFactory().get("/")
    request.user = superuser
    form = admin.site._registry[Campaign].get_form(request, campaign)(instance=campaign)
    data: dict[str, str] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.JSONField):
            data[name] = json.dumps(form.initial.get(name))
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        else:
            data[name] = "" if value is None else str(field.prepare_value(value))
    data.update(changes)
    return data


def _change_in_admin(client, campaign: Campaign, **changes: str):  # noqa: ANN001, ANN202
    """POST the campaign's admin change form with its current values and ``changes``."""
    superuser = UserFactory(is_staff=True, is_superuser=True)
    data = admin_change_data(campaign, superuser, **changes)
    client.force_login(superuser)
    response = client.post(f"/admin/annotation/campaign/{campaign.pk}/change/", data, follow=True)
    assert response.status_code == 200
    campaign.refresh_from_db()
    return response


def test_raising_it_in_the_admin_lets_a_half_labelled_pair_reach_the_new_overlap(client):
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    for user in UserFactory.create_batch(2):
        judge(campaign, user, 1)

    page = _change_in_admin(client, campaign, annotators_per_pair="5").content.decode()

    assert campaign.annotators_per_pair == 5
    assert "Annotators per pair changed from 3 to 5." in page
    pair.refresh_from_db()
    assert pair.slot_cap == 5
    for user in UserFactory.create_batch(3):
        assert judge(campaign, user, 1).pair_id == pair.pk
    pair.refresh_from_db()
    assert (pair.status, pair.labels_count) == (Pair.Status.COMPLETE, 5)


def test_lowering_it_in_the_admin_sends_no_re_test_to_a_pair_without_consensus(client):
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    for user in UserFactory.create_batch(2):
        judge(campaign, user, 1)

    _change_in_admin(client, campaign, annotators_per_pair="2")

    third = assignment_next(campaign=campaign, annotator=UserFactory())
    assert third is not None and third.kind == "regular"
    pair.refresh_from_db()
    assert pair.provenance == ""


def test_other_changes_in_the_admin_leave_the_pairs_alone(client):
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    page = _change_in_admin(client, campaign, round_size="77").content.decode()
    assert campaign.round_size == 77 and "Annotators per pair changed" not in page
    pair.refresh_from_db()
    assert pair.slot_cap == 3
