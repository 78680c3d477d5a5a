"""Malformed requests answer 400 with a message, never 500: JSON nested far too deep, numbers
beyond what the database stores (in query parameters, ids and export filters), over-long upload
names, and an import whose first item is nested too deep. Marked smoke: SQLite raises
OverflowError where PostgreSQL raises DataError, so both must hold."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Assignment, ImportJob, Pair
from reviewers.models import Escalation
from reviewers.services.escalations import escalation_open
from scoring.models import Job
from tests.conftest import api_client_for
from tests.factories import PairFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"preference": ' + DEEP + b"}"
HUGE = [10**20, 10**30]


def _assignment(campaign, annotator) -> Assignment:
    PairFactory(campaign=campaign)
    client = api_client_for(annotator)
    return Assignment.objects.get(
        pk=client.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
    )


def _post_raw(client, url: str, body: bytes):
    return client.post(url, data=body, content_type="application/json")


def _assert_clear_400(response) -> None:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert body, "a 400 says what was wrong"


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "in-a-field"])
def test_deeply_nested_json_is_refused_on_label_evidence_adjudicate_and_exports(
    body, campaign, annotator_a, expert, admin_user
):
    assignment = _assignment(campaign, annotator_a)
    annotator = api_client_for(annotator_a)
    for url in (f"/api/assignments/{assignment.pk}/label", "/api/tools/evidence"):
        response = _post_raw(annotator, url, body)
        _assert_clear_400(response)
        assert "nested deeper than" in response.json()["detail"]
    escalation = escalation_open(
        pair=PairFactory(campaign=campaign), reason=Escalation.Reason.MANUAL, detail="look"
    )
    response = _post_raw(
        api_client_for(expert), f"/api/escalations/{escalation.pk}/adjudicate", body
    )
    _assert_clear_400(response)
    response = _post_raw(api_client_for(admin_user), f"/api/campaigns/{campaign.pk}/exports", body)
    _assert_clear_400(response)
    assert not Job.objects.exists()
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE


def test_json_nested_past_the_bound_but_within_orjson_is_refused(campaign, annotator_a):
    assignment = _assignment(campaign, annotator_a)
    body = b'{"preference": 1, "flags": ' + b"[" * 200 + b"]" * 200 + b"}"
    response = _post_raw(
        api_client_for(annotator_a), f"/api/assignments/{assignment.pk}/label", body
    )
    _assert_clear_400(response)


def test_a_json_body_over_the_byte_bound_is_a_413_and_changes_nothing(
    settings, campaign, annotator_a
):
    settings.ARBITER = {**settings.ARBITER, "API_MAX_JSON_BYTES": 2048}
    assignment = _assignment(campaign, annotator_a)
    client = api_client_for(annotator_a)
    url = f"/api/assignments/{assignment.pk}/label"
    body = b'{"preference": 1, "rationale": "' + b"x" * 4096 + b'"}'
    response = _post_raw(client, url, body)
    assert response.status_code == 413, response.content[:300]
    assert "ARBITER_API_MAX_JSON_BYTES" in response.json()["detail"]
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE
    # Within the bound the same request is taken.
    response = _post_raw(client, url, b'{"preference": 1}')
    assert response.status_code == 201, response.content[:300]


def test_a_json_body_without_a_length_is_read_only_to_one_byte_past_the_bound(settings):
    from io import BytesIO

    from config.parsers import JSONParser, RequestBodyTooLarge

    settings.ARBITER = {**settings.ARBITER, "API_MAX_JSON_BYTES": 1024}
    stream = BytesIO(b"[" + b"1," * 10_000 + b"1]")
    with pytest.raises(RequestBodyTooLarge):
        JSONParser().parse(stream, parser_context={})
    assert stream.tell() == 1025
    assert JSONParser().parse(BytesIO(b'{"a": [1, 2]}'), parser_context={}) == {"a": [1, 2]}


@pytest.mark.parametrize("huge", HUGE)
def test_huge_integers_in_query_parameters_are_refused(huge, campaign, annotator_a, expert):
    annotator = api_client_for(annotator_a)
    for url in (f"/api/tools/search?q=x&corpus={huge}", f"/api/tools/search?q=x&assignment={huge}"):
        _assert_clear_400(annotator.get(url))
    reviewer = api_client_for(expert)
    for url in (f"/api/escalations?offset={huge}", f"/api/escalations?campaign={huge}"):
        _assert_clear_400(reviewer.get(url))


@pytest.mark.parametrize("huge", HUGE)
def test_huge_integers_on_the_expert_queue_page_are_refused(huge, client, expert):
    client.force_login(expert)
    response = client.get(f"/experts/queue/?campaign={huge}")
    assert response.status_code == 400
    assert b"campaign is out of range" in response.content


@pytest.mark.parametrize("huge", HUGE)
def test_huge_ids_in_urls_are_refused(huge, annotator_a, admin_user, expert):
    response = api_client_for(annotator_a).post(
        f"/api/assignments/{huge}/label", {"preference": 1}, format="json"
    )
    _assert_clear_400(response)
    assert "out of range" in response.json()["detail"]
    _assert_clear_400(api_client_for(admin_user).post(f"/api/campaigns/{huge}/next"))
    _assert_clear_400(api_client_for(expert).get(f"/api/escalations/{huge}"))


@pytest.mark.parametrize("huge", HUGE)
def test_huge_integers_in_export_filters_are_refused_before_any_job(huge, campaign, admin_user):
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/exports",
        {"format": "jsonl", "rounds": [huge]},
        format="json",
    )
    _assert_clear_400(response)
    assert not Job.objects.exists()


def test_an_upload_with_a_300_character_name_is_refused(campaign, admin_user):
    admin = api_client_for(admin_user)
    name = "p" * 294 + ".jsonl"
    upload = SimpleUploadedFile(name, b'{"prompt": "a", "response_a": "b", "response_b": "c"}\n')
    response = admin.post(
        f"/api/campaigns/{campaign.pk}/imports", {"file": upload}, format="multipart"
    )
    _assert_clear_400(response)
    assert "file" in response.json()
    upload = SimpleUploadedFile(name, b"a prompt\n")
    response = admin.post(
        f"/api/campaigns/{campaign.pk}/evaluation-sets", {"file": upload, "name": "bench"}
    )
    _assert_clear_400(response)
    assert not ImportJob.objects.exists()


def test_the_import_page_and_corpus_page_refuse_a_300_character_name(campaign, client, admin_user):
    client.force_login(admin_user)
    name = "p" * 294 + ".jsonl"
    upload = SimpleUploadedFile(name, b'{"prompt": "a", "response_a": "b", "response_b": "c"}\n')
    response = client.post(f"/campaigns/{campaign.pk}/import/", {"file": upload})
    assert response.status_code in (200, 400)
    assert b"at most 200 characters" in response.content
    upload = SimpleUploadedFile(name, b'{"title": "t", "body": "b"}\n')
    response = client.post("/tools/corpora/", {"name": "c", "files": [upload]})
    assert b"at most 200 characters" in response.content


@pytest.mark.parametrize(
    "content",
    [
        b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]",
        b'[{"prompt": ' + b"[" * 5_000 + b"]" * 5_000 + b', "response_a": "a", "response_b": "b"}]',
        b'{"prompt": ' + b"[" * 2_000 + b"]" * 2_000 + b', "response_a": "a", "response_b": "b"}\n',
        b'{"prompt": "x", "response_a": ' + b"[" * 500 + b"]" * 500 + b', "response_b": "b"}\n',
    ],
    ids=["json-array-item", "json-item-field", "jsonl-line", "jsonl-within-orjson"],
)
def test_an_import_whose_first_item_is_nested_too_deep_is_refused(content, campaign, admin_user):
    upload = SimpleUploadedFile("deep.json", content)
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/imports", {"file": upload}, format="multipart"
    )
    _assert_clear_400(response)
    assert response.json()["status"] == "failed"
    assert not Pair.objects.filter(campaign=campaign).exists()
