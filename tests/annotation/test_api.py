"""The annotator and admin REST API."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from annotation.api import LabelApi, NextOutputSerializer, judgment_options
from annotation.models import Assignment, Label, Pair, Scale
from annotation.roles import Role
from annotation.selectors import shown_pair
from annotation.services.users import user_create
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db


def test_next_returns_the_pair_as_shown_and_204_when_done(campaign, annotator_a):
    pair = PairFactory(campaign=campaign, response_a="left answer", response_b="right answer")
    client = api_client_for(annotator_a)
    response = client.post(f"/api/campaigns/{campaign.pk}/next")
    assert response.status_code == 200
    body = response.json()
    assignment = Assignment.objects.get(pk=body["assignment"]["id"])
    shown = (body["pair"]["response_a"], body["pair"]["response_b"])
    expected = (
        ("right answer", "left answer") if assignment.swapped else ("left answer", "right answer")
    )
    assert shown == expected
    assert body["pair"]["conversation"] == pair.conversation
    assert "lease_expires_at" in body
    assert "swapped" not in json.dumps(body)
    client.post(f"/api/assignments/{assignment.pk}/label", {"preference": 1}, format="json")
    assert client.post(f"/api/campaigns/{campaign.pk}/next").status_code == 204


@pytest.mark.parametrize("swapped", [False, True])
def test_label_is_stored_in_canonical_orientation(campaign, annotator_a, swapped):
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    assignment_id = client.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
    Assignment.objects.filter(pk=assignment_id).update(swapped=swapped)
    response = client.post(
        f"/api/assignments/{assignment_id}/label",
        {
            "preference": 2,
            "rationale": "clearer",
            "confidence": 4,
            "flags": ["unsafe"],
            "seconds_spent": 12.5,
        },
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["preference"] == 2
    label = Label.objects.get(assignment_id=assignment_id)
    assert label.preference == (-2 if swapped else 2)
    assert label.flags == ["unsafe"] and label.confidence == 4 and label.seconds_spent == 12.5


def test_label_twice_or_after_expiry_is_409(campaign, annotator_a):
    PairFactory.create_batch(2, campaign=campaign)
    client = api_client_for(annotator_a)
    first = client.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
    assert (
        client.post(f"/api/assignments/{first}/label", {"preference": 1}, format="json").status_code
        == 201
    )
    again = client.post(f"/api/assignments/{first}/label", {"preference": 1}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "already_finished"
    second = client.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
    Assignment.objects.filter(pk=second).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    late = client.post(f"/api/assignments/{second}/label", {"preference": 1}, format="json")
    assert late.status_code == 409 and late.json()["code"] == "lease_expired"


def test_someone_elses_assignment_is_not_found(campaign, annotator_a, annotator_b):
    PairFactory(campaign=campaign)
    mine = api_client_for(annotator_a).post(f"/api/campaigns/{campaign.pk}/next").json()
    theirs = api_client_for(annotator_b)
    response = theirs.post(
        f"/api/assignments/{mine['assignment']['id']}/label", {"preference": 1}, format="json"
    )
    assert response.status_code == 404
    assert theirs.post(f"/api/assignments/{mine['assignment']['id']}/skip").status_code == 404


def test_the_scale_restricts_preferences(annotator_a):
    campaign = CampaignFactory(scale=Scale.BINARY)
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    assignment_id = client.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
    for value in (0, 2, -2):
        response = client.post(
            f"/api/assignments/{assignment_id}/label", {"preference": value}, format="json"
        )
        assert response.status_code == 400, value
    response = client.post(
        f"/api/assignments/{assignment_id}/label", {"preference": 3}, format="json"
    )
    assert response.status_code == 400
    assert (
        client.post(
            f"/api/assignments/{assignment_id}/label", {"preference": -1}, format="json"
        ).status_code
        == 201
    )


def test_skip_then_progress(campaign, annotator_a):
    PairFactory.create_batch(2, campaign=campaign)
    client = api_client_for(annotator_a)
    first = client.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
    assert client.post(f"/api/assignments/{first}/skip").status_code == 204
    assert client.post(f"/api/assignments/{first}/skip").status_code == 409
    progress = client.get(f"/api/campaigns/{campaign.pk}/progress").json()
    assert progress["mine"] == {"submitted": 0, "skipped": 1}
    assert progress["pairs"]["total"] == 2


def test_token_auth_and_anonymous_refusal(campaign):
    PairFactory(campaign=campaign)
    _user, _password, token = user_create(username="tok", role=Role.ANNOTATOR)
    client = APIClient()
    assert client.post(f"/api/campaigns/{campaign.pk}/next").status_code in (401, 403)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.post(f"/api/campaigns/{campaign.pk}/next").status_code == 200


def test_users_without_the_annotator_role_cannot_take_work(campaign, outsider, expert):
    PairFactory(campaign=campaign)
    for user in (outsider, expert):
        assert api_client_for(user).post(f"/api/campaigns/{campaign.pk}/next").status_code == 404
    assert Pair.objects.get(campaign=campaign).slots_taken == 0


def test_labels_export_is_admin_only_and_canonical(campaign, annotator_a, admin_user):
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    assignment_id = client.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
    Assignment.objects.filter(pk=assignment_id).update(swapped=True)
    client.post(f"/api/assignments/{assignment_id}/label", {"preference": 1}, format="json")
    assert client.get(f"/api/campaigns/{campaign.pk}/labels.jsonl").status_code == 404
    response = api_client_for(admin_user).get(f"/api/campaigns/{campaign.pk}/labels.jsonl")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert len(rows) == 1
    assert rows[0]["preference"] == -1 and rows[0]["shown_swapped"] is True
    assert rows[0]["annotator"] == "alice" and rows[0]["orientation"] == "canonical"


def test_import_upload_is_all_or_nothing_and_admin_only(campaign, admin_user, annotator_a):
    from django.core.files.uploadedfile import SimpleUploadedFile

    good = SimpleUploadedFile(
        "p.jsonl",
        b'{"prompt": "hi", "response_a": "hello", "response_b": "hey"}\n'
        b'{"prompt": "yo", "response_a": "sup", "response_b": "hey"}\n',
    )
    assert (
        api_client_for(annotator_a)
        .post(f"/api/campaigns/{campaign.pk}/imports", {"file": good}, format="multipart")
        .status_code
        == 404
    )
    good.seek(0)
    admin = api_client_for(admin_user)
    response = admin.post(
        f"/api/campaigns/{campaign.pk}/imports", {"file": good}, format="multipart"
    )
    assert response.status_code == 201 and response.json()["created"] == 2
    bad = SimpleUploadedFile(
        "bad.jsonl", b'{"prompt": "a", "response_a": "b", "response_b": "c"}\nnot json\n'
    )
    response = admin.post(
        f"/api/campaigns/{campaign.pk}/imports", {"file": bad}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["line"] == 2
    # The one error shape (review 19: the code was missing here).
    assert response.json()["code"] == "import_format_error"
    assert Pair.objects.filter(campaign=campaign).count() == 2


def test_openapi_schema_and_docs_are_served(admin_user, client):
    client.force_login(admin_user)
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/campaigns/{campaign_id}/next" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_next_and_label_bodies_are_what_their_serializers_document(annotator_a):
    """The hot endpoints build their bodies by hand; the OpenAPI schema reads the serializers."""
    campaign = CampaignFactory()
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    body = client.post(f"/api/campaigns/{campaign.pk}/next").json()
    assignment = Assignment.objects.select_related("pair").get(pk=body["assignment"]["id"])
    documented = NextOutputSerializer(
        {
            "assignment": assignment,
            "pair": shown_pair(assignment),
            "judgment": judgment_options(campaign),
            "lease_expires_at": assignment.lease_expires_at,
        }
    ).data
    assert body == json.loads(JSONRenderer().render(documented))

    label = client.post(
        f"/api/assignments/{assignment.pk}/label", {"preference": 1}, format="json"
    ).json()
    assert set(label) == set(LabelApi.OutputSerializer().fields)
    assert label["assignment"] == assignment.pk and label["preference"] == 1
