"""The API answers JSON only: DRF's browsable API writes inline styles, which the site's
Content-Security-Policy (style-src 'self') blocks, so it is not offered at all."""

from __future__ import annotations

import pytest

from tests.conftest import api_client_for

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.django_db
def test_a_browser_gets_json_not_the_browsable_api(admin_user, campaign):
    response = api_client_for(admin_user).get(
        f"/api/campaigns/{campaign.pk}/progress", HTTP_ACCEPT=BROWSER_ACCEPT
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert b"<style" not in response.content
    assert "style-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_html_alone_is_not_acceptable(admin_user, campaign):
    response = api_client_for(admin_user).get(
        f"/api/campaigns/{campaign.pk}/progress", HTTP_ACCEPT="text/html"
    )
    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_the_browsable_format_is_not_served(admin_user, campaign):
    response = api_client_for(admin_user).get(f"/api/campaigns/{campaign.pk}/progress?format=api")
    assert response.status_code == 404
    assert b"<style" not in response.content
