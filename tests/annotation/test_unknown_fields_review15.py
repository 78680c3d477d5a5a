"""Review 15: the API refuses body fields it does not know (core.serializers.StrictSerializer)
instead of dropping them and acting on the rest; an export request carrying a spooled upload
answers 400, not 500."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Assignment, Campaign, CampaignMember, Label, Pair
from annotation.services.members import member_add
from scoring.models import Job
from tests.conftest import api_client_for
from tests.factories import PairFactory

pytestmark = pytest.mark.django_db

PAIR_ROW = b'{"prompt": "hi", "response_a": "hello", "response_b": "hey"}\n'


def _refused(response, *names: str) -> str:
    """The 400 body's detail, checked to name exactly these unknown fields."""
    assert response.status_code == 400, (response.status_code, response.content)
    body = response.json()
    assert body["code"] == "unknown_field"
    assert body["detail"].startswith(f"unknown field {', '.join(names)} (this request takes ")
    return body["detail"]


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({"itemkind": "ranking"}, "itemkind"),
        ({"scael": "binary"}, "scael"),
        ({"aspects": [{"name": "helpful"}]}, "aspects"),
    ],
)
def test_creating_a_campaign_with_a_field_it_does_not_take_creates_nothing(extra, name, admin_user):
    response = api_client_for(admin_user).post(
        "/api/campaigns", {"name": "new campaign", **extra}, format="json"
    )
    detail = _refused(response, name)
    assert "item_kind" in detail and "scale" in detail  # what it does take
    assert not Campaign.objects.exists()


def test_a_mistyped_retrain_setting_starts_no_job(campaign, admin_user, sent_tasks):
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/retrain",
        {"mode": "full", "epoch": 3, "learning_rat": 0.001},
        format="json",
    )
    detail = _refused(response, "epoch", "learning_rat")
    assert "epochs" in detail
    assert not Job.objects.exists() and sent_tasks == []


def test_adding_a_member_with_a_mistyped_role_adds_nobody(campaign, admin_user, annotator_a):
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/members",
        {"username": annotator_a.username, "rol": "expert"},
        format="json",
    )
    _refused(response, "rol")
    assert not CampaignMember.objects.exists()


def test_admitting_a_member_with_an_unknown_field_changes_nothing(
    campaign, admin_user, annotator_a
):
    campaign.qualification_gold_count = 5  # a new annotator starts out qualifying
    campaign.save()
    member = member_add(campaign=campaign, user=annotator_a)
    assert member.state == CampaignMember.State.QUALIFYING
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/members/{annotator_a.pk}",
        {"action": "admit", "reason": "trusted"},
        format="json",
    )
    _refused(response, "reason")
    member.refresh_from_db()
    assert member.state == CampaignMember.State.QUALIFYING


def test_a_label_with_a_mistyped_outcome_is_not_stored_as_a_preference(campaign, annotator_a):
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    assignment_id = client.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
    response = client.post(
        f"/api/assignments/{assignment_id}/label",
        {"preference": 0, "outcom": "both_bad"},
        format="json",
    )
    _refused(response, "outcom")
    assert not Label.objects.exists()
    assert Assignment.objects.get(pk=assignment_id).status == Assignment.Status.ACTIVE


def test_changing_a_label_with_a_mistyped_field_keeps_it(campaign, annotator_a):
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    assignment_id = client.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
    url = f"/api/assignments/{assignment_id}/label"
    submitted = client.post(url, {"preference": 1, "confidence": 2}, format="json")
    assert submitted.status_code == 201
    response = client.put(url, {"preference": -2, "confidense": 5}, format="json")
    _refused(response, "confidense")
    label = Label.objects.get()
    assert (abs(label.preference), label.confidence, label.history) == (1, 2, None)


def test_an_import_with_a_mistyped_gold_switch_imports_nothing(campaign, admin_user):
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/imports",
        {"file": SimpleUploadedFile("pairs.jsonl", PAIR_ROW), "gold": "true"},
        format="multipart",
    )
    _refused(response, "gold")
    assert not Pair.objects.exists()


def test_a_form_post_may_carry_its_csrf_token(campaign, admin_user):
    # A browser's form post (the browsable API) sends it beside the fields.
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/imports",
        {"file": SimpleUploadedFile("pairs.jsonl", PAIR_ROW), "csrfmiddlewaretoken": "x"},
        format="multipart",
    )
    assert response.status_code == 201 and response.json()["created"] == 1


@pytest.mark.parametrize("size", [10, 3 * 1024 * 1024], ids=["in-memory", "spooled-to-disk"])
def test_an_export_request_with_a_file_attached_is_a_400(campaign, admin_user, sent_tasks, size):
    # Over FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) Django spools the upload to a temporary file,
    # which a deep copy of the request's data could not copy (a 500).
    client = api_client_for(admin_user)
    client.raise_request_exception = False
    response = client.post(
        f"/api/campaigns/{campaign.pk}/exports",
        {"format": "jsonl", "filters": SimpleUploadedFile("filters.json", b" " * size)},
        format="multipart",
    )
    assert response.status_code == 400, response.status_code
    assert response.json() == {"detail": "unknown parameter filters", "code": "invalid_export"}
    assert not Job.objects.exists() and sent_tasks == []


def test_a_mistyped_gold_answer_makes_nothing_gold(campaign, admin_user):
    pair = PairFactory(campaign=campaign)
    response = api_client_for(admin_user).post(
        f"/api/pairs/{pair.pk}/gold", {"preferance": -2}, format="json"
    )
    _refused(response, "preferance")  # it promoted the expert's decision instead
    pair.refresh_from_db()
    assert not pair.is_gold


def test_a_code_run_with_a_mistyped_field_does_not_run(annotator_a, sent_tasks):
    from annotation.models import CodeRun

    response = api_client_for(annotator_a).post(
        "/api/tools/code-runs",
        {"language": "python", "code": "print(input())", "stdn": "1"},
        format="json",
    )
    _refused(response, "stdn")
    assert not CodeRun.objects.exists()


def test_an_evaluation_set_upload_with_a_mistyped_name_stores_nothing(campaign, admin_user):
    from scoring.models import EvaluationSet

    row = b'{"prompt": "q", "chosen": "a", "rejected": "b", "subset": "s"}\n'
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/evaluation-sets",
        {"file": SimpleUploadedFile("bench.jsonl", row), "nmae": "bench"},
        format="multipart",
    )
    _refused(response, "nmae")
    assert not EvaluationSet.objects.exists()
