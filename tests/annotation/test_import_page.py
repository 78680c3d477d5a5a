from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import ImportJob, Pair
from tests.conftest import wait_for


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


ROWS = [{"prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(5)]


@pytest.mark.django_db
@pytest.mark.smoke
def test_an_admin_imports_a_small_file_and_sees_the_result(client, admin_user, campaign):
    client.force_login(admin_user)
    upload = SimpleUploadedFile("pairs.jsonl", jsonl(ROWS))
    response = client.post(f"/campaigns/{campaign.pk}/import/", {"file": upload}, follow=True)
    assert response.status_code == 200
    assert b"5 new pairs" in response.content
    assert Pair.objects.filter(campaign=campaign).count() == 5


@pytest.mark.django_db
def test_a_bad_file_is_reported_with_its_line_and_nothing_kept(client, admin_user, campaign):
    client.force_login(admin_user)
    upload = SimpleUploadedFile("pairs.jsonl", jsonl(ROWS[:2]) + b"{oops\n")
    response = client.post(f"/campaigns/{campaign.pk}/import/", {"file": upload}, follow=True)
    assert b"Nothing was imported: line 3" in response.content
    assert not Pair.objects.filter(campaign=campaign).exists()


@pytest.mark.django_db
def test_annotators_cannot_reach_the_import_page(client, annotator_a, campaign):
    client.force_login(annotator_a)
    assert client.get(f"/campaigns/{campaign.pk}/import/").status_code == 404


def test_a_large_file_is_imported_by_a_worker_with_progress(worker, client, settings):
    from annotation.roles import Role
    from annotation.services.users import user_create
    from tests.factories import CampaignFactory

    settings.ARBITER = {**settings.ARBITER, "IMPORT_INLINE_MAX_BYTES": 0}
    campaign = CampaignFactory()
    admin, _password, _token = user_create(username="importer", role=Role.ADMIN)
    client.force_login(admin)
    rows = [{"prompt": f"p{i}", "response_a": f"x{i}", "response_b": f"y{i}"} for i in range(3000)]
    upload = SimpleUploadedFile("big.jsonl", jsonl(rows))
    response = client.post(f"/campaigns/{campaign.pk}/import/", {"file": upload})
    assert response.status_code == 302
    job = ImportJob.objects.get(campaign=campaign)
    page = client.get(response["Location"], HTTP_HX_REQUEST="true")
    assert page.status_code == 200 and b"job-status" in page.content
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).status == "succeeded", timeout=90,
             what="the worker to finish the import")
    assert Pair.objects.filter(campaign=campaign).count() == 3000
    final = client.get(response["Location"], HTTP_HX_REQUEST="true")
    assert b"3000 new pairs" in final.content and b"hx-trigger" not in final.content
