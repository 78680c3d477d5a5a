"""Review 19: a POST of the campaign's Django admin page (a change or a deletion) takes the
campaign's rounds lock and row, as the settings API does, and holds them until it commits.
Without them the admin judged the item kind and scale changeable (no pairs yet) while an import
was storing pairs under the old scale, and saved the new one beside them."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.test import Client

from annotation.services.imports import campaign_rounds_lock
from tests.annotation.test_per_pair_change_admin import admin_change_data
from tests.conftest import closing_connections, start_in_thread, wait_for_a_lock_waiter
from tests.factories import CampaignFactory, PairFactory, UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory and row locks"),
]


def test_an_admin_change_of_scale_waits_for_an_import_and_then_finds_its_pairs():
    campaign = CampaignFactory(scale="five_point")
    superuser = UserFactory(is_staff=True, is_superuser=True)
    # The page was read before the campaign had pairs: its scale was still a field.
    data = admin_change_data(campaign, superuser, scale="binary", guidelines="Be kind.")
    importing, release = threading.Event(), threading.Event()

    def import_and_hold() -> None:
        with transaction.atomic():  # as pairs_import stores a file's pairs
            campaign_rounds_lock(campaign.pk)
            PairFactory(campaign=campaign)
            importing.set()
            release.wait(30)

    def post():  # noqa: ANN202
        client = Client()
        client.force_login(superuser)
        return client.post(f"/admin/annotation/campaign/{campaign.pk}/change/", data)

    holder = start_in_thread(closing_connections(import_and_hold))
    assert importing.wait(10)
    posting = start_in_thread(closing_connections(post))
    try:
        wait_for_a_lock_waiter()  # the admin's POST waits for the import to commit
    finally:
        release.set()
        holder.result(timeout=30)
    response = posting.result(timeout=30)

    assert response.status_code == 302, response.content[:2000]
    campaign.refresh_from_db()
    # The scale was read-only by then (the pairs were stored under five-point); the rest of
    # the change went through.
    assert (campaign.scale, campaign.guidelines) == ("five_point", "Be kind.")


def test_a_change_of_the_guidelines_does_not_wait_for_an_import():
    """Only a change of the item kind, scale or annotators per pair waits for the campaign's
    imports (one may hold the lock for hours), as in the settings API."""
    campaign = CampaignFactory(scale="five_point")
    superuser = UserFactory(is_staff=True, is_superuser=True)
    data = admin_change_data(campaign, superuser, guidelines="Be brief.")
    importing, release = threading.Event(), threading.Event()

    def import_and_hold() -> None:
        with transaction.atomic():
            campaign_rounds_lock(campaign.pk)
            importing.set()
            release.wait(30)

    holder = start_in_thread(closing_connections(import_and_hold))
    try:
        assert importing.wait(10)
        client = Client()
        client.force_login(superuser)
        response = client.post(f"/admin/annotation/campaign/{campaign.pk}/change/", data)
        assert response.status_code == 302, response.content[:2000]
    finally:
        release.set()
        holder.result(timeout=30)
    campaign.refresh_from_db()
    assert campaign.guidelines == "Be brief."
