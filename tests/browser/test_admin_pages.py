"""Admin pages in headless Chromium: one top navigation everywhere, Retrain asks first, and
the import page (sample file, drop target, errors styled like the others)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from annotation.models import Pair
from annotation.roles import Role
from scoring.models import Job
from tests.browser_support import log_in_with_session
from tests.reviewers.factories import user_with_role

pytestmark = [pytest.mark.browser]

NAV = [
    "Campaigns",
    "Expert queue",
    "Dashboard",
    "Agreement",
    "Quality",
    "Models",
    "Exports",
    "Import",
    "Corpora",
    "Admin",
]


@pytest.fixture
def admin_page(page, browser_context, live_server):
    log_in_with_session(browser_context, live_server, user_with_role("ada", Role.ADMIN))
    return page


def nav_names(page) -> list[str]:  # noqa: ANN001
    names = page.locator(".topbar nav a.nav-link").all_inner_texts()
    return [name.split(":")[0].rstrip(" 0123456789") for name in names if not name.endswith(":")]


def test_every_admin_page_has_the_same_top_navigation(admin_page, live_server, campaign):
    page = admin_page
    for path in (
        f"/campaigns/{campaign.pk}/dashboard/",
        f"/campaigns/{campaign.pk}/agreement/",
        f"/campaigns/{campaign.pk}/quality/",
        f"/scoring/campaigns/{campaign.pk}/models/",
        f"/campaigns/{campaign.pk}/import/",
    ):
        page.goto(live_server.url + path)
        assert nav_names(page) == NAV, path
    page.goto(f"{live_server.url}/dashboard/")  # no campaign in view: its links are absent
    assert nav_names(page) == ["Campaigns", "Expert queue", "Dashboard", "Corpora", "Admin"]


def test_retrain_asks_for_confirmation(admin_page, live_server, campaign, watched):
    page = admin_page
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/dashboard/")
    page.get_by_role("button", name="Retrain now").click()
    page.wait_for_timeout(300)
    assert len(watched.dialogs) == 1 and "closes the open round" in watched.dialogs[0]
    assert not Job.objects.filter(campaign=campaign).exists()  # dismissed: nothing started


def test_the_import_page_offers_a_sample_a_drop_target_and_styled_errors(
    admin_page, live_server, campaign
):
    page = admin_page
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/import/")
    with page.expect_download() as download_info:
        page.get_by_test_id("sample-file").click()
    sample = Path(download_info.value.path()).read_bytes()
    assert sample == (Path(settings.BASE_DIR) / "static/annotation/sample-pairs.jsonl").read_bytes()

    # A file dropped on the target goes into the form, and imports.
    page.evaluate(
        """text => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([text], "dropped.jsonl", {type: "application/json"}));
            document.querySelector("[data-dropzone]").dispatchEvent(
                new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        sample.decode(),
    )
    assert "dropped.jsonl" in page.inner_text("[data-dropzone-name]")
    page.get_by_role("button", name="Import").click()
    page.get_by_text("3 new pairs").wait_for()
    assert Pair.objects.filter(campaign=campaign).count() == 3

    # An empty file: the error is an alert like every other.
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/import/")
    page.set_input_files(
        "input[type=file]", files=[{"name": "empty.jsonl", "mimeType": "text/plain", "buffer": b""}]
    )
    page.get_by_role("button", name="Import").click()
    alert = page.locator(".import-form .alert")
    alert.wait_for()
    assert "empty" in alert.inner_text()
    colour = alert.evaluate("el => getComputedStyle(el).backgroundColor")
    assert colour != "rgba(0, 0, 0, 0)"
    assert page.evaluate("window.__cspViolations") == []
