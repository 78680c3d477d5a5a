"""Review 19: every upload page and API answers 413 before reading a body whose Content-Length
is over its bound, as the import does (config.middleware.UploadBoundMiddleware): corpora and
evaluation sets were received whole (Django's CSRF check reads a form post) and only then
refused."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http.multipartparser import MultiPartParser
from django.test import Client

from annotation import tools_views
from scoring.evaluation import reading
from scoring.models import EvaluationSet
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

BOUND = 4096


@pytest.fixture
def body_never_parsed(monkeypatch):
    def refuse(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise AssertionError("the multipart body was read")

    monkeypatch.setattr(MultiPartParser, "parse", refuse)


def _too_big(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"x" * 200_000)  # past the bound and the form's room


def test_a_corpus_upload_over_its_bound_is_a_413_unread(monkeypatch, admin_user, body_never_parsed):
    monkeypatch.setattr(tools_views, "UPLOAD_MAX_BYTES", BOUND)
    client = Client()
    client.force_login(admin_user)
    response = client.post("/tools/corpora/", {"name": "facts", "file": _too_big("docs.jsonl")})
    assert response.status_code == 413
    assert b"corpus upload limit" in response.content


def test_an_evaluation_set_over_its_bound_is_a_413_unread(
    monkeypatch, campaign, admin_user, body_never_parsed
):
    monkeypatch.setattr(reading, "MAX_SET_BYTES", BOUND)
    api = api_client_for(admin_user)
    for url in (f"/api/campaigns/{campaign.pk}/evaluation-sets", "/api/evaluation-sets"):
        response = api.post(url, {"name": "rb", "file": _too_big("rb.jsonl")}, format="multipart")
        assert response.status_code == 413, (url, response.content[:300])
        assert response.json()["code"] == "upload_too_large"
    client = Client()
    client.force_login(admin_user)
    page = client.post(
        f"/scoring/campaigns/{campaign.pk}/evaluations/upload",
        {"name": "rb", "file": _too_big("rb.jsonl")},
    )
    assert page.status_code == 413
    assert not EvaluationSet.objects.exists()
