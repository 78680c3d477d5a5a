"""A JSON API body is bounded by ARBITER_API_MAX_JSON_BYTES (16 MiB), not by Django's form
bound (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB by default), and the depth check is one quick pass.

Review 17: a 3 MB label body came back as Django's HTML "Bad Request (400)"."""

from __future__ import annotations

import time

import orjson
import pytest
from rest_framework.test import APIClient

from annotation.models import Assignment, Label
from config.parsers import MAX_JSON_DEPTH, json_depth_exceeds
from tests.factories import PairFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def _client(user) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user=user)
    return client


def _label_url(campaign, annotator) -> str:
    PairFactory(campaign=campaign)
    assignment_id = _client(annotator).post(f"/api/campaigns/{campaign.pk}/next").json()
    return f"/api/assignments/{assignment_id['assignment']['id']}/label"


def test_a_json_body_between_the_form_bound_and_the_json_bound_is_parsed(campaign, annotator_a):
    url = _label_url(campaign, annotator_a)
    client = _client(annotator_a)
    body = orjson.dumps({"preference": 1, "rationale": "x" * 3_000_000})

    response = client.post(url, body, content_type="application/json")

    # Parsed, then refused by the label's own rule: the API's JSON 400, not Django's page.
    assert response.status_code == 400, response.content[:200]
    assert "20,000" in str(response.json()), response.content[:300]
    # A valid label of that size (JSON whitespace past Django's 2.5 MB) is taken.
    body = b'{"preference": 1, "rationale": "why"' + b" " * 3_000_000 + b"}"
    response = client.post(url, body, content_type="application/json")
    assert response.status_code == 201, response.content[:300]
    assert Label.objects.get().rationale == "why"


def test_a_json_body_over_the_json_bound_is_the_documented_413(campaign, annotator_a):
    url = _label_url(campaign, annotator_a)
    body = b'{"preference": 1, "rationale": "' + b"x" * (16 * 1024**2) + b'"}'

    response = _client(annotator_a).post(url, body, content_type="application/json")

    assert response.status_code == 413, response.content[:200]
    assert "ARBITER_API_MAX_JSON_BYTES" in response.json()["detail"]
    assert Assignment.objects.get().status == Assignment.Status.ACTIVE


def test_a_form_body_is_still_bounded_by_django(client, annotator_a):
    client.force_login(annotator_a)
    client.raise_request_exception = False
    response = client.post(
        "/login/",
        "username=a&password=" + "x" * 3_000_000,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400


def test_the_depth_check_is_one_quick_pass():
    wide = [[0]] * 400_000
    started = time.perf_counter()
    assert not json_depth_exceeds(wide)
    assert time.perf_counter() - started < 0.5
    deep: list = []
    node = deep
    for _ in range(MAX_JSON_DEPTH):
        node.append([])
        node = node[0]
    assert json_depth_exceeds(deep)
    assert not json_depth_exceeds(deep[0])
    assert json_depth_exceeds({"a": [{"b": deep[0]}]}, limit=MAX_JSON_DEPTH)
