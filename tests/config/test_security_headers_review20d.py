"""Every answer carries the framing and content-security headers: the static files WhiteNoise
serves, and the 400 Django answers for a Host outside ALLOWED_HOSTS before any view runs; and
a CSRF failure answers the site's own page, which that policy does not break."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = [pytest.mark.django_db]


def _assert_protected(response) -> None:  # noqa: ANN001 - a test client's response
    assert response["X-Frame-Options"] == "DENY"
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_a_host_outside_allowed_hosts_is_refused_with_the_security_headers():
    response = Client().get("/login/", HTTP_HOST="attacker.example")
    assert response.status_code == 400
    _assert_protected(response)


def test_a_static_file_is_served_with_the_security_headers(settings):
    # WhiteNoise serves collected files in production; the finders stand in for them here.
    settings.WHITENOISE_USE_FINDERS = True
    response = Client().get("/static/css/arbiter.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content)
    _assert_protected(response)


def test_a_form_post_failing_its_csrf_check_answers_the_sites_own_page():
    response = Client(enforce_csrf_checks=True).post(
        "/login/", {"username": "alice", "password": "pw-alice"}
    )
    assert response.status_code == 403
    body = response.content.decode()
    assert 'data-error-code="csrf_failed"' in body and "reload the page" in body
    # Django's fallback page styles itself with an inline <style>, which the CSP blocks.
    assert "<style" not in body
    _assert_protected(response)
