"""Exports through the API, the management command and a real Celery worker."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from annotation.models import CampaignMember, Pair
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from annotation.services.members import member_add
from scoring.datasets.export import ExportFilters, export_create, export_run
from scoring.models import ExportSnapshot, Job
from scoring.tasks.datasets import export_snapshot_task  # noqa: F401 - registers the task
from tests.conftest import api_client_for, wait_for
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.scoring import test_export

# Fixtures shared with the export service tests.
annotators = test_export.annotators
history = test_export.history



@pytest.fixture
def export_dir(settings, tmp_path):
    settings.ARBITER = {**settings.ARBITER, "EXPORT_DIR": tmp_path / "exports"}
    return tmp_path / "exports"


@pytest.fixture
def finished_export(campaign, history, admin_user, export_dir):
    snapshot = export_create(
        campaign=campaign,
        file_format="parquet",
        filters=ExportFilters(ties="separate"),
        user=admin_user,
        enqueue=False,
    )
    export_run(job_id=snapshot.job_id)
    return ExportSnapshot.objects.get(pk=snapshot.pk)


@pytest.mark.smoke
def test_an_admin_downloads_an_export_as_an_attachment(finished_export, admin_user):
    response = api_client_for(admin_user).get(f"/api/exports/{finished_export.pk}/download")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert "export-v1.parquet" in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == finished_export.manifest["sha256"]
    ties = api_client_for(admin_user).get(f"/api/exports/{finished_export.pk}/download?file=ties")
    assert ties.status_code == 200
    assert pq.read_table(io.BytesIO(b"".join(ties.streaming_content))).num_rows == 1


def test_nobody_but_an_admin_can_download_or_list_exports(
    finished_export, annotator_a, expert, outsider, campaign
):
    url = f"/api/exports/{finished_export.pk}/download"
    for user in (annotator_a, expert, outsider):
        assert api_client_for(user).get(url).status_code == 404
        assert api_client_for(user).get(f"/api/campaigns/{campaign.pk}/exports").status_code == 404
    assert APIClient().get(url).status_code in (401, 403)


def test_the_campaigns_admin_downloads_its_exports_and_no_other_campaigns_admin(
    finished_export, campaign
):
    mine, theirs = UserFactory(username="own-admin"), UserFactory(username="their-admin")
    member_add(campaign=campaign, user=mine, role=CampaignMember.Role.ADMIN)
    member_add(campaign=CampaignFactory(), user=theirs, role=CampaignMember.Role.ADMIN)
    listed = api_client_for(mine).get(f"/api/campaigns/{campaign.pk}/exports").json()
    url = listed[0]["download_url"]
    response = api_client_for(mine).get(url)
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == finished_export.manifest["sha256"]
    assert api_client_for(theirs).get(url).status_code == 404


def test_an_unfinished_export_has_nothing_to_download(campaign, admin_user, export_dir):
    snapshot = export_create(
        campaign=campaign, file_format="jsonl", filters=ExportFilters(), enqueue=False
    )
    response = api_client_for(admin_user).get(f"/api/exports/{snapshot.pk}/download")
    assert response.status_code == 404


def test_an_admin_starts_and_lists_exports_through_the_api(campaign, admin_user, history,
                                                          export_dir):
    client = api_client_for(admin_user)
    url = f"/api/campaigns/{campaign.pk}/exports"
    created = client.post(
        url,
        {"format": "jsonl", "include_silver": True, "min_agreement": 0.5, "rounds": [1, 2]},
        format="json",
    )
    assert created.status_code == 202, created.content
    assert created.data["version"] == 1 and created.data["status"] == "queued"
    snapshot = ExportSnapshot.objects.get(pk=created.data["id"])
    assert snapshot.filters["include_silver"] is True and snapshot.filters["rounds"] == [1, 2]
    assert snapshot.job.created_by == admin_user

    export_run(job_id=snapshot.job_id)
    listed = client.get(url)
    assert listed.status_code == 200
    assert listed.data[0]["status"] == "succeeded"
    assert listed.data[0]["download_url"] == f"/api/exports/{snapshot.pk}/download"
    assert listed.data[0]["manifest"]["counts"]["rows"] > 0

    bad = client.post(url, {"provenance": ["made_up"]}, format="json")
    assert bad.status_code == 400
    no_such_round = client.post(url, {"format": "jsonl", "rounds": [2, 99]}, format="json")
    assert no_such_round.status_code == 400
    assert "no round 99" in no_such_round.content.decode()
    assert ExportSnapshot.objects.count() == 1


def test_the_command_writes_the_file_and_prints_its_manifest(campaign, history, tmp_path):
    out = tmp_path / "nested" / "curated.jsonl"
    stdout = io.StringIO()
    call_command(
        "export_dataset", str(out), "--campaign", campaign.name, "--include-silver",
        "--provenance", "gold", "unanimous", stdout=stdout, stderr=io.StringIO(),
    )
    manifest = json.loads(stdout.getvalue().strip().splitlines()[-1])
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {row["provenance"] for row in rows} == {"gold", "unanimous", "silver"}
    assert manifest["filters"]["provenance"] == ["gold", "unanimous"]
    assert [path.name for path in out.parent.iterdir()] == ["curated.jsonl"]


# --- A real worker --------------------------------------------------------------------------


@pytest.mark.worker
def test_a_real_worker_runs_an_export_job_end_to_end(
    worker, campaign, annotator_a, annotator_b, annotator_c, admin_user, export_dir
):
    # Labels through the real engine and submit path, so consensus comes from the services.
    pairs = [PairFactory(campaign=campaign) for _ in range(3)]
    for annotator, shown in ((annotator_a, 1), (annotator_b, 2), (annotator_c, 1)):
        for _ in pairs:
            assignment = assignment_next(campaign=campaign, annotator=annotator)
            preference = -shown if assignment.swapped else shown  # canonical: A better
            label_submit(assignment=assignment, data=LabelInput(preference=preference))
    assert set(Pair.objects.filter(campaign=campaign).values_list("provenance", flat=True)) == {
        "unanimous"
    }

    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/exports", {"format": "parquet"}, format="json"
    )
    assert response.status_code == 202
    job_id = ExportSnapshot.objects.get(pk=response.data["id"]).job_id
    job = wait_for(
        lambda: Job.objects.filter(pk=job_id, status__in=["succeeded", "failed"]).first(),
        timeout=60, what="the export job to finish",
    )
    assert job.status == Job.Status.SUCCEEDED, job.error
    snapshot = ExportSnapshot.objects.get(pk=response.data["id"])
    rows = pq.read_table(snapshot.path).to_pylist()
    assert sorted(row["pair_id"] for row in rows) == sorted(pair.pk for pair in pairs)
    assert all(row["chosen_side"] == "a" and len(row["votes"]) == 3 for row in rows)
    digest = hashlib.sha256(Path(snapshot.path).read_bytes()).hexdigest()
    assert snapshot.manifest["sha256"] == digest
