"""The model registry, "Retrain now" and job progress: htmx pages and the REST API."""

from __future__ import annotations

import pytest
from django.test import Client

from scoring.jobs.runner import job_claim, job_progress
from scoring.models import Job, ModelVersion
from tests.conftest import api_client_for
from tests.factories import CampaignFactory

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def campaign(db, tmp_path):
    campaign = CampaignFactory()
    for number in (1, 2):
        checkpoint = tmp_path / f"v{number}"
        checkpoint.mkdir()
        ModelVersion.objects.create(
            campaign=campaign, number=number, base="tiny", checkpoint=str(checkpoint),
            heldout_accuracy=0.5 + number / 10, is_active=number == 2,
            label_snapshot={"pairs": 10 * number, "heldout_gold_pairs": 4},
        )
    return campaign


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_the_models_page_lists_versions_and_the_fragment_comes_alone(campaign, admin_client):
    url = f"/scoring/campaigns/{campaign.pk}/models/"
    page = admin_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "<html" in html and "Retrain now" in html and "v2" in html and "0.700" in html
    fragment = admin_client.get(url, **HTMX).content.decode()
    assert "<html" not in fragment and 'id="model-versions"' in fragment


def test_activating_from_the_page_swaps_the_active_version(campaign, admin_client):
    old = ModelVersion.objects.get(campaign=campaign, number=1)
    response = admin_client.post(f"/scoring/model-versions/{old.pk}/activate", **HTMX)
    assert response.status_code == 200 and 'id="model-versions"' in response.content.decode()
    assert ModelVersion.objects.get(campaign=campaign, is_active=True).number == 1
    plain = admin_client.post(f"/scoring/campaigns/{campaign.pk}/models/rollback")
    assert plain.status_code == 302  # a plain form post redirects back
    error = admin_client.post(f"/scoring/campaigns/{campaign.pk}/models/rollback", **HTMX)
    assert "oldest version" in error.content.decode()


def test_retrain_now_starts_one_loop_job_and_shows_its_progress(
    campaign, admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(f"/scoring/campaigns/{campaign.pk}/retrain", **HTMX)
        again = admin_client.post(f"/scoring/campaigns/{campaign.pk}/retrain", **HTMX)
    job = Job.objects.get(campaign=campaign)
    assert job.kind == Job.Kind.LOOP and job.status == Job.Status.QUEUED
    assert len(callbacks) == 1  # the second press shows the same job
    for reply in (response, again):
        html = reply.content.decode()
        assert f'id="job-{job.pk}"' in html and "<progress" in html
        assert 'hx-trigger="every 1s"' in html and "Cancel" in html


def test_the_job_fragment_shows_progress_and_log_and_stops_polling_when_done(
    campaign, admin_client
):
    job = Job.objects.create(campaign=campaign, kind=Job.Kind.TRAIN)
    running = job_claim(job_id=job.pk, worker="w").job
    job_progress(job=running, fraction=0.42, message="fitting head, loss 0.6")
    html = admin_client.get(f"/scoring/jobs/{job.pk}/", **HTMX).content.decode()
    assert 'value="0.4200"' in html and "42 %" in html and "fitting head, loss 0.6" in html
    assert 'hx-trigger="every 1s"' in html
    cancelled = admin_client.post(f"/scoring/jobs/{job.pk}/cancel", **HTMX).content.decode()
    assert "cancelling" in cancelled
    Job.objects.filter(pk=job.pk).update(status=Job.Status.CANCELLED)
    done = admin_client.get(f"/scoring/jobs/{job.pk}/", **HTMX).content.decode()
    assert "hx-trigger" not in done and "Cancel</button>" not in done


def test_a_job_nearly_done_reads_99_percent_not_100(campaign, admin_client):
    """Review 19: widthratio rounded 0.996 up to a finished-looking "100 %"."""
    job = Job.objects.create(campaign=campaign, kind=Job.Kind.TRAIN)
    running = job_claim(job_id=job.pk, worker="w").job
    job_progress(job=running, fraction=0.996, message="registering")
    html = admin_client.get(f"/scoring/jobs/{job.pk}/", **HTMX).content.decode()
    assert "99 % · registering" in html and "100 %" not in html


def test_non_admins_cannot_see_or_change_models(campaign, annotator_a):
    client = Client()
    client.force_login(annotator_a)
    version = ModelVersion.objects.get(campaign=campaign, number=1)
    assert client.get(f"/scoring/campaigns/{campaign.pk}/models/").status_code == 404
    assert client.post(f"/scoring/model-versions/{version.pk}/activate").status_code == 404
    assert client.post(f"/scoring/campaigns/{campaign.pk}/retrain").status_code == 404
    api = api_client_for(annotator_a)
    assert api.get(f"/api/campaigns/{campaign.pk}/model-versions").status_code == 404
    assert not Job.objects.exists()


def test_the_api_lists_activates_and_rolls_back(campaign, admin_user):
    api = api_client_for(admin_user)
    listed = api.get(f"/api/campaigns/{campaign.pk}/model-versions").json()
    assert [v["number"] for v in listed] == [2, 1] and listed[0]["is_active"]
    rolled = api.post(f"/api/campaigns/{campaign.pk}/model-versions/rollback").json()
    assert rolled["number"] == 1 and rolled["is_active"]
    conflict = api.post(f"/api/campaigns/{campaign.pk}/model-versions/rollback")
    assert conflict.status_code == 409
    newest = ModelVersion.objects.get(campaign=campaign, number=2)
    assert api.post(f"/api/model-versions/{newest.pk}/activate").json()["is_active"]


def test_the_api_starts_watches_and_cancels_a_retrain(
    campaign, admin_user, django_capture_on_commit_callbacks
):
    api = api_client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=False):
        started = api.post(f"/api/campaigns/{campaign.pk}/retrain", {"mode": "head"})
    assert started.status_code == 202
    body = started.json()
    assert body["kind"] == "loop" and body["status"] == "queued"
    assert body["log"] == ["loop job queued"]
    watched = api.get(f"/api/jobs/{body['id']}").json()
    assert watched["progress"] == 0.0 and watched["params"]["mode"] == "head"
    cancelled = api.post(f"/api/jobs/{body['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"


def test_a_finished_loop_says_whether_it_opened_a_round(campaign, admin_client):
    trained = {"trained": {"version": 2, "heldout_accuracy": 0.7}}
    opened = Job.objects.create(
        campaign=campaign, kind=Job.Kind.LOOP, status=Job.Status.SUCCEEDED,
        result={**trained, "opened_round": 3, "queued": 50},
    )
    none = Job.objects.create(
        campaign=campaign, kind=Job.Kind.LOOP, status=Job.Status.SUCCEEDED, result=trained
    )
    page = admin_client.get(f"/scoring/jobs/{opened.pk}/", **HTMX).content.decode()
    assert "opened round 3 with 50 pairs" in page
    page = admin_client.get(f"/scoring/jobs/{none.pk}/", **HTMX).content.decode()
    assert "no round opened: the pool is empty or a round is already open" in page
