"""Review 20: "silver curated only" without "include silver" is refused, on the dashboard and
the API as by the command. It narrows the silver pairs; without them the export had none, and
an admin who ticked only "silver curated only" got the verified pairs alone, without a word."""

from __future__ import annotations

from django.test import Client

from scoring.models import ExportSnapshot
from tests.conftest import api_client_for

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_api_refuses_silver_curated_only_without_silver(campaign, admin_user):
    url = f"/api/campaigns/{campaign.pk}/exports"
    client = api_client_for(admin_user)
    refused = client.post(url, {"silver_curated_only": True}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {
        "detail": "silver_curated_only applies with include_silver only",
        "code": "invalid_export",
    }
    assert not ExportSnapshot.objects.exists()
    both = client.post(url, {"silver_curated_only": True, "include_silver": True}, format="json")
    assert both.status_code == 202
    assert ExportSnapshot.objects.get().filters["silver_curated_only"] is True


def test_the_dashboard_form_says_silver_curated_only_needs_silver(campaign, admin_user):
    client = Client()
    client.force_login(admin_user)
    url = f"/campaigns/{campaign.pk}/dashboard/exports"
    form = {"format": "jsonl", "ties": "exclude", "provenance": ["gold"]}
    answer = client.post(url, {**form, "silver_curated_only": "on"}, **HTMX)
    assert "HX-Trigger" not in answer
    assert "silver_curated_only applies with include_silver only" in answer.content.decode()
    plain = client.post(url, {**form, "silver_curated_only": "on"})
    assert plain.status_code == 400
    assert not ExportSnapshot.objects.exists()
