"""The models page's version list follows a job that finishes while the page is open: after
"Retrain now" the job card read "Trained v2 … opened round 3" while the list below still showed
v1 as the active version, until the page was reloaded."""

from __future__ import annotations

import pytest
from django.test import Client

from annotation.roles import Role
from scoring.models import Job, ModelVersion
from tests.browser_support import log_in_with_session
from tests.reviewers.factories import user_with_role

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_job_fragment_announces_only_a_finished_job(campaign, admin_user):
    client = Client()
    client.force_login(admin_user)
    job = Job.objects.create(campaign=campaign, kind=Job.Kind.LOOP, status=Job.Status.RUNNING)
    running = client.get(f"/scoring/jobs/{job.pk}/", **HTMX)
    assert "HX-Trigger" not in running
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED, progress=1.0)
    finished = client.get(f"/scoring/jobs/{job.pk}/", **HTMX)
    assert "model-job-finished" in finished["HX-Trigger"]


@pytest.mark.browser
def test_the_version_list_reloads_when_the_running_job_finishes(
    page, browser_context, live_server, campaign, tmp_path
):
    log_in_with_session(browser_context, live_server, user_with_role("ada", Role.ADMIN))
    job = Job.objects.create(
        campaign=campaign, kind=Job.Kind.LOOP, status=Job.Status.RUNNING, message="training"
    )
    page.goto(f"{live_server.url}/scoring/campaigns/{campaign.pk}/models/")
    page.locator(f"#job-{job.pk}").wait_for()
    assert "No model trained yet." in page.locator("#model-versions").inner_text()

    checkpoint = tmp_path / "v1"
    checkpoint.mkdir()
    ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="tiny",
        checkpoint=str(checkpoint),
        heldout_accuracy=0.75,
        is_active=True,
        label_snapshot={"pairs": 10, "heldout_gold_pairs": 4},
    )
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED, progress=1.0)

    page.locator(f"#job-{job.pk} .job-status", has_text="Succeeded").wait_for()
    page.locator("#model-versions tr.active", has_text="v1").wait_for()
    assert page.evaluate("window.__cspViolations") == []
