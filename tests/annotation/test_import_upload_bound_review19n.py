"""An import upload whose Content-Length is over ARBITER_IMPORT_MAX_BYTES is refused with a
413 before its body is read: no temporary file, no stored upload, no job. Before, the whole
body was received (Django's CSRF check reads a form post whole), copied into the uploads
folder, and a file over the bound but cheap to estimate went to a worker (202) to fail there."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http.multipartparser import MultiPartParser

from annotation.models import ImportJob
from annotation.services.import_jobs import _uploads_folder
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

ROW = b'{"prompt": "hi", "response_a": "hello", "response_b": "hey"}\n'
BOUND = 4096


@pytest.fixture
def small_bound(settings):
    settings.ARBITER = {**settings.ARBITER, "IMPORT_MAX_BYTES": BOUND}


@pytest.fixture
def body_never_parsed(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("the multipart body was read")

    monkeypatch.setattr(MultiPartParser, "parse", refuse)


def _too_big() -> SimpleUploadedFile:
    # Past the bound and the room left for the form's other fields.
    return SimpleUploadedFile("big.jsonl", ROW * (300_000 // len(ROW)))


def _stored_uploads() -> list[str]:
    folder = _uploads_folder()
    return sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []


def test_the_api_refuses_an_upload_over_the_bound_with_413_unread(
    campaign, admin_user, small_bound, body_never_parsed
):
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/imports", {"file": _too_big()}, format="multipart"
    )
    assert response.status_code == 413, response.content[:300]
    body = response.json()
    assert body["code"] == "upload_too_large"
    assert "ARBITER_IMPORT_MAX_BYTES" in body["detail"]
    assert not ImportJob.objects.exists()
    assert _stored_uploads() == []


def test_the_page_refuses_an_upload_over_the_bound_with_413_unread(
    client, campaign, admin_user, small_bound, body_never_parsed
):
    client.force_login(admin_user)
    response = client.post(f"/campaigns/{campaign.pk}/import/", {"file": _too_big()})
    assert response.status_code == 413
    assert b"ARBITER_IMPORT_MAX_BYTES" in response.content
    assert not ImportJob.objects.exists()
    assert _stored_uploads() == []


def test_an_upload_within_the_bound_still_imports(client, campaign, admin_user, small_bound):
    client.force_login(admin_user)
    upload = SimpleUploadedFile("small.jsonl", ROW)
    response = client.post(f"/campaigns/{campaign.pk}/import/", {"file": upload}, follow=True)
    assert response.status_code == 200 and b"1 new pairs" in response.content


def test_other_posts_are_not_bounded_by_the_import_bound(client, campaign, admin_user, small_bound):
    # The bound belongs to the import views: a large form elsewhere is not refused by it.
    client.force_login(admin_user)
    response = client.post("/campaigns/new/", {"name": "x" * 10, "filler": "y" * 200_000})
    assert response.status_code != 413


@pytest.mark.browser
def test_the_page_says_a_file_is_too_big_as_an_alert_before_sending_it(
    page, browser_context, live_server, settings
):
    from annotation.roles import Role
    from tests.browser_support import log_in_with_session
    from tests.factories import CampaignFactory
    from tests.reviewers.factories import user_with_role

    settings.ARBITER = {**settings.ARBITER, "IMPORT_MAX_BYTES": BOUND}
    campaign = CampaignFactory()
    log_in_with_session(browser_context, live_server, user_with_role("ada", Role.ADMIN))
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/import/")
    page.set_input_files(
        "input[type=file]",
        files=[{"name": "<b>big</b>.jsonl", "mimeType": "text/plain", "buffer": ROW * 200}],
    )
    page.get_by_role("button", name="Import").click()
    alert = page.get_by_test_id("import-too-big")
    alert.wait_for()
    assert "<b>big</b>.jsonl is" in alert.inner_text()  # the name as text, not markup
    assert "ARBITER_IMPORT_MAX_BYTES" in alert.inner_text()
    assert not ImportJob.objects.exists()
    assert page.evaluate("window.__cspViolations") == []
