"""The evaluation-set API: upload (per campaign and shared), list with results, delete; admins
only; the page's reading and limits; a clear 400 for a bad file."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotation.models import CampaignMember
from scoring.evaluation import reading
from scoring.evaluation.services import evaluation_run
from scoring.models import EvaluationResult, EvaluationSet, Job, ModelVersion
from scoring.reward_model import build_tiny_reward_model
from tests.conftest import api_client_for

ROWS = [
    {
        "prompt": f"Question {index}: how should I store fresh herbs?",
        "chosen": f"Wrap them in a damp towel, option {index}.",
        "rejected": f"Throw them away {index}.",
        "subset": ("chat", "safety", "reasoning")[index % 3],
    }
    for index in range(9)
]


def _jsonl_gz(rows: list[dict]) -> bytes:
    return gzip.compress("\n".join(json.dumps(row) for row in rows).encode())


def _upload(name: str = "bench.jsonl.gz", content: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, _jsonl_gz(ROWS) if content is None else content)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("evaluation-api") / "v1")


def test_an_admin_uploads_lists_replaces_and_deletes_a_campaign_set(
    campaign, admin_user, tiny_checkpoint, django_capture_on_commit_callbacks
) -> None:
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint=str(tiny_checkpoint)
    )
    admin = api_client_for(admin_user)
    url = f"/api/campaigns/{campaign.pk}/evaluation-sets"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(url, {"file": _upload(), "name": "bench"}, format="multipart")
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["name"], created["pairs_count"], created["shared"]) == ("bench", 9, False)
    assert created["campaign"] == campaign.pk and created["filename"] == "bench.jsonl.gz"
    assert created["subsets"] == {"chat": 3, "reasoning": 3, "safety": 3}
    assert created["results"] == []
    # The ready version is queued for evaluation, as after an upload on the page.
    (job,) = Job.objects.filter(kind=Job.Kind.EVALUATE)
    assert job.params == {"version": version.pk, "sets": [created["id"]]}
    evaluation_run(job_id=job.pk, worker="test")

    listed = admin.get(url).json()
    assert [item["name"] for item in listed] == ["bench"]
    (result,) = listed[0]["results"]
    stored = EvaluationResult.objects.get(evaluation_set_id=created["id"])
    assert result["version"] == 1 and result["model_version"] == version.pk
    assert result["accuracy"] == pytest.approx(stored.accuracy) and result["n"] == 9
    assert set(result["subsets"]) == {"chat", "reasoning", "safety"}

    # Same name, new content: replaced (200), its results gone.
    response = admin.post(
        url, {"file": _upload(content=_jsonl_gz(ROWS[:4])), "name": "bench"}, format="multipart"
    )
    assert response.status_code == 200 and response.json()["id"] == created["id"]
    assert response.json()["pairs_count"] == 4 and response.json()["results"] == []

    # Without a name the file's name is the set's name.
    response = admin.post(url, {"file": _upload("other.jsonl.gz")}, format="multipart")
    assert response.status_code == 201 and response.json()["name"] == "other.jsonl.gz"

    assert admin.delete(f"{url}/{created['id']}").status_code == 204
    assert not EvaluationSet.objects.filter(pk=created["id"]).exists()
    assert [item["name"] for item in admin.get(url).json()] == ["other.jsonl.gz"]
    assert admin.delete(f"{url}/{created['id']}").status_code == 404


def test_shared_sets_have_their_own_routes_and_show_in_every_campaign(campaign, admin_user) -> None:
    from tests.factories import CampaignFactory

    admin = api_client_for(admin_user)
    response = admin.post(
        "/api/evaluation-sets", {"file": _upload(), "name": "rewardbench"}, format="multipart"
    )
    assert response.status_code == 201, response.content
    shared = response.json()
    assert shared["shared"] is True and shared["campaign"] is None
    other = CampaignFactory()
    own = admin.post(
        f"/api/campaigns/{other.pk}/evaluation-sets",
        {"file": _upload(), "name": "own"},
        format="multipart",
    ).json()
    assert [item["name"] for item in admin.get("/api/evaluation-sets").json()] == ["rewardbench"]
    names = [
        (item["name"], item["shared"])
        for item in admin.get(f"/api/campaigns/{campaign.pk}/evaluation-sets").json()
    ]
    assert names == [("rewardbench", True)]  # the other campaign's set is not listed here

    # A campaign's route never deletes a shared set nor another campaign's.
    base = f"/api/campaigns/{campaign.pk}/evaluation-sets"
    assert admin.delete(f"{base}/{shared['id']}").status_code == 404
    assert admin.delete(f"{base}/{own['id']}").status_code == 404
    assert admin.delete(f"/api/evaluation-sets/{own['id']}").status_code == 404
    assert admin.delete(f"/api/evaluation-sets/{shared['id']}").status_code == 204
    assert list(EvaluationSet.objects.values_list("name", flat=True)) == ["own"]


def test_only_admins_reach_the_evaluation_set_api(
    campaign, admin_user, annotator_a, expert
) -> None:
    evaluation_set = EvaluationSet.objects.create(campaign=campaign, name="x", sha256="0")
    shared = EvaluationSet.objects.create(campaign=None, name="y", sha256="0")
    base = f"/api/campaigns/{campaign.pk}/evaluation-sets"
    for user in (annotator_a, expert):
        client = api_client_for(user)
        assert client.get(base).status_code == 404
        assert client.post(base, {"file": _upload(), "name": "n"}).status_code == 404
        assert client.delete(f"{base}/{evaluation_set.pk}").status_code == 404
        assert client.get("/api/evaluation-sets").status_code == 404
        assert client.post("/api/evaluation-sets", {"file": _upload()}).status_code == 404
        assert client.delete(f"/api/evaluation-sets/{shared.pk}").status_code == 404
    from rest_framework.test import APIClient

    assert APIClient().get(base).status_code in (401, 403)
    assert EvaluationSet.objects.count() == 2


def test_a_campaign_admin_manages_its_own_sets_but_not_the_shared_ones(
    campaign, annotator_a, django_capture_on_commit_callbacks
) -> None:
    CampaignMember.objects.create(
        campaign=campaign, user=annotator_a, role=CampaignMember.Role.ADMIN
    )
    client = api_client_for(annotator_a)
    base = f"/api/campaigns/{campaign.pk}/evaluation-sets"
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(base, {"file": _upload(), "name": "mine"}, format="multipart")
    assert created.status_code == 201, created.content
    # Whoever may upload the campaign's sets may delete them too.
    assert client.delete(f"{base}/{created.json()['id']}").status_code == 204
    assert not EvaluationSet.objects.filter(name="mine").exists()

    # A shared set reaches every campaign: the page refuses it to a campaign's admin, as the
    # API's shared route does, and does not offer the choice.
    page = Client()
    page.force_login(annotator_a)
    url = reverse("scoring-evaluation-set-upload", args=[campaign.pk])
    refused = page.post(
        url, {"file": _upload(), "name": "everyone", "shared": "on"}, HTTP_HX_REQUEST="true"
    )
    assert refused.status_code == 422  # to htmx, which swaps a 422 and not a 403
    assert "Only a site admin" in refused.content.decode()
    assert 'name="shared"' not in refused.content.decode()
    assert client.post("/api/evaluation-sets", {"file": _upload()}).status_code == 404
    assert not EvaluationSet.objects.filter(campaign__isnull=True).exists()


def test_a_site_admin_is_offered_and_may_upload_a_shared_set_from_the_page(
    campaign, admin_user, django_capture_on_commit_callbacks
) -> None:
    page = Client()
    page.force_login(admin_user)
    fragment = page.get(
        reverse("scoring-campaign-evaluations", args=[campaign.pk]), HTTP_HX_REQUEST="true"
    )
    assert 'name="shared"' in fragment.content.decode()
    url = reverse("scoring-evaluation-set-upload", args=[campaign.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = page.post(
            url, {"file": _upload(), "name": "everyone", "shared": "on"}, HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200
    assert EvaluationSet.objects.get(name="everyone").campaign_id is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"prompt": "a", "chosen": "b"}\n', "row 1"),
        (b'{"prompt": "a", "chosen": "b", "rejected": "c"}\nnot json\n', "line 2"),
        (b"\x1f\x8b broken", "gzip"),
        (b"\n\n", "no pairs"),
        # PostgreSQL text cannot hold NUL: refused with the row, not a 500 at save.
        (b'{"prompt": "a", "chosen": "b", "rejected": "c", "subset": "x\\u0000y"}\n', "row 1"),
    ],
)
def test_a_bad_file_is_a_400_that_says_where_and_why(
    campaign, admin_user, content: bytes, message: str
) -> None:
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/evaluation-sets",
        {"file": SimpleUploadedFile("bad.jsonl", content), "name": "bad"},
        format="multipart",
    )
    assert response.status_code == 400
    assert message in response.json()["detail"] and "bad.jsonl" in response.json()["detail"]
    assert not EvaluationSet.objects.exists()


def test_a_missing_file_is_a_400(campaign, admin_user) -> None:
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/evaluation-sets", {"name": "x"}, format="multipart"
    )
    assert response.status_code == 400 and "file" in response.json()


def test_uploads_stream_under_the_decompressed_size_and_time_limits(
    campaign, admin_user, settings, monkeypatch
) -> None:
    url = f"/api/campaigns/{campaign.pk}/evaluation-sets"
    admin = api_client_for(admin_user)
    monkeypatch.setattr(
        reading,
        "SET_LIMITS",
        dataclasses.replace(reading.SET_LIMITS, max_decompressed_bytes=4 * 1024 * 1024),
    )
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as packed:
        for _ in range(32):
            packed.write(b"\n" * 1024 * 1024)
    bomb = SimpleUploadedFile("bomb.jsonl.gz", out.getvalue())
    response = admin.post(url, {"file": bomb, "name": "bomb"}, format="multipart")
    assert response.status_code == 400
    assert "decompressed size exceeds" in response.json()["detail"]

    settings.ARBITER = {**settings.ARBITER, "IMPORT_INLINE_MAX_SECONDS": 1e-9}
    response = admin.post(url, {"file": _upload(), "name": "slow"}, format="multipart")
    assert response.status_code == 400 and "took longer" in response.json()["detail"]
    assert not EvaluationSet.objects.exists()
