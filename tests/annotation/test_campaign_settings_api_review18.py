"""GET and PATCH /api/campaigns/{id}: a campaign's settings over the API (they took the Django
admin before). Site admins only; a change is checked as at creation, all or nothing; what the
stored pairs and labels were made under stays fixed (409); a new annotators per pair reaches
the pairs in rounds as the admin's change does. Real requests, services and database."""

from __future__ import annotations

import pytest
from django.db import models
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from annotation.models import Campaign, CampaignMember, Pair
from annotation.services.api_tokens import api_token_issue
from annotation.services.assignments import assignment_next
from annotation.services.campaigns import SETTINGS_FIELDS, campaign_update
from annotation.services.labels import LabelInput, label_submit
from annotation.services.members import member_add
from core.errors import Conflict
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judge

pytestmark = pytest.mark.django_db

HELPFUL = {"name": "helpfulness", "label": "Helpfulness", "scale_min": 1, "scale_max": 5}


def _url(campaign_id: int) -> str:
    return f"/api/campaigns/{campaign_id}"


def _settings(campaign: Campaign) -> dict:
    """The campaign's settings as stored now."""
    fresh = Campaign.objects.get(pk=campaign.pk)
    return {name: getattr(fresh, name) for name in SETTINGS_FIELDS}


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    return api_client_for(admin_user)


# Access


def test_only_site_admins_read_or_change_settings_and_others_learn_nothing(
    campaign, annotator_a, expert, outsider
):
    campaign_admin = UserFactory(username="cam")
    member_add(campaign=campaign, user=campaign_admin, role=CampaignMember.Role.ADMIN)
    before = _settings(campaign)
    for user in (annotator_a, expert, outsider, campaign_admin):
        client = api_client_for(user)
        for campaign_id in (campaign.pk, 999_999):  # 403 whether the campaign exists or not
            read = client.get(_url(campaign_id))
            assert read.status_code == 403, (user, read.content)
            assert read.json()["code"] == "forbidden"
            change = client.patch(_url(campaign_id), {"guidelines": "mine"}, format="json")
            assert change.status_code == 403, (user, change.content)
    anonymous = APIClient()
    assert anonymous.get(_url(campaign.pk)).status_code == 401
    assert anonymous.patch(_url(campaign.pk), {"guidelines": "x"}, format="json").status_code == 401
    assert _settings(campaign) == before


def test_an_admins_token_reads_and_changes_settings_and_a_missing_campaign_is_404(
    campaign, admin_user
):
    client = APIClient()
    token = api_token_issue(user=admin_user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(_url(campaign.pk)).status_code == 200
    changed = client.patch(_url(campaign.pk), {"round_size": 64}, format="json")
    assert changed.status_code == 200, changed.content
    assert Campaign.objects.get(pk=campaign.pk).round_size == 64
    missing = client.get(_url(999_999))
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert client.patch(_url(999_999), {"round_size": 2}, format="json").status_code == 404


# GET


def test_get_answers_every_setting_and_which_cannot_change(admin_api):
    campaign = CampaignFactory(scale="binary", gold_share=0.1, aspects=[HELPFUL])
    body = admin_api.get(_url(campaign.pk)).json()
    assert set(body) == {"id", *SETTINGS_FIELDS, "created_at", "locked_fields"}
    assert body["id"] == campaign.pk and body["name"] == campaign.name
    assert (body["scale"], body["gold_share"], body["annotators_per_pair"]) == ("binary", 0.1, 3)
    assert body["aspects"] == [HELPFUL]
    assert body["escalation_rules"] == campaign.escalation_rules
    assert body["locked_fields"] == []
    PairFactory(campaign=campaign)
    assert admin_api.get(_url(campaign.pk)).json()["locked_fields"] == ["item_kind", "scale"]


def test_settings_cover_every_editable_field_of_the_campaign():
    """A new setting on the model is readable and changeable here too (or left out on
    purpose below): the API would otherwise lag behind the admin."""
    not_settings = {"id", "created_at", "created_by"}
    editable = {
        model_field.name
        for model_field in Campaign._meta.get_fields()
        if isinstance(model_field, models.Field) and model_field.concrete
    }
    assert editable - not_settings == set(SETTINGS_FIELDS)


# PATCH


def test_patch_changes_several_settings_and_says_what_changed(admin_api, campaign):
    before = _settings(campaign)
    response = admin_api.patch(
        _url(campaign.pk),
        {
            "name": "  Harmlessness v2 ",
            "guidelines": "Prefer the **harmless** answer.",
            "gold_share": 0.2,
            "aspects": [HELPFUL],
            "escalation_rules": {**campaign.escalation_rules, "deadline_hours": 12},
            "allow_rewrites": True,
            "both_bad_route": "rewrite",
            "label_change_minutes": 0,
            "scale": campaign.scale,  # unchanged: not listed, not refused
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body["changed"]) == {
        "name",
        "guidelines",
        "gold_share",
        "aspects",
        "escalation_rules",
        "allow_rewrites",
        "both_bad_route",
        "label_change_minutes",
    }
    assert body["changed"]["gold_share"] == {"old": before["gold_share"], "new": 0.2}
    assert body["changed"]["name"] == {"old": before["name"], "new": "Harmlessness v2"}
    assert body["message"].startswith("Changed name, guidelines, gold_share")
    assert body["annotators_per_pair_change"] is None
    after = _settings(campaign)
    assert after["name"] == "Harmlessness v2" and after["gold_share"] == 0.2
    assert after["aspects"] == [HELPFUL] and after["both_bad_route"] == "rewrite"
    assert after["escalation_rules"]["deadline_hours"] == 12
    assert after["label_change_minutes"] == 0
    assert body["campaign"] == admin_api.get(_url(campaign.pk)).json()
    # Left-out settings keep their values (no defaults filled in by a partial body).
    untouched = set(SETTINGS_FIELDS) - set(body["changed"])
    assert {name: after[name] for name in untouched} == {name: before[name] for name in untouched}


def test_sending_back_what_get_answered_changes_nothing(admin_api, campaign):
    PairFactory(campaign=campaign)  # scale and item_kind are fixed now, and sent unchanged
    body = admin_api.get(_url(campaign.pk)).json()
    settings = {name: body[name] for name in SETTINGS_FIELDS}
    response = admin_api.patch(_url(campaign.pk), settings, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["changed"] == {} and response.json()["message"] == "Nothing changed."


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gold_share": 1.5}, "gold_share"),  # Campaign.clean
        ({"round_size": 0}, "round_size"),
        ({"lease_seconds": 5}, "lease_seconds"),
        ({"both_bad_route": "rewrite", "allow_rewrites": False}, "both_bad_route"),
        ({"aspects": [{"name": "Bad Name"}]}, "aspects"),
        ({"escalation_rules": {"deadline_hours": "soon"}}, "escalation_rules"),
        ({"item_kind": "ranking", "aspects": [HELPFUL]}, "aspects"),  # no aspects on rankings
        ({"annotators_per_pair": 0}, "annotators_per_pair"),
        ({"annotators_per_pair": 5000}, "annotators_per_pair"),  # the overlap service's bound
    ],
)
def test_a_bad_value_is_a_400_naming_its_field_and_nothing_changes(
    admin_api, campaign, change, field
):
    before = _settings(campaign)
    response = admin_api.patch(
        _url(campaign.pk), {"guidelines": "should not stick", **change}, format="json"
    )
    assert response.status_code == 400, response.content
    body = response.json()
    if "code" in body:
        assert body["code"] == "invalid_campaign" and body["detail"].startswith(f"{field}:")
    else:  # refused by the serializer's check of the field (the model field's own bounds)
        assert list(body) == [field], body
    assert _settings(campaign) == before


def test_field_checks_are_the_create_apis_and_unknown_names_are_refused(admin_api, campaign):
    before = _settings(campaign)
    wrong_type = admin_api.patch(
        _url(campaign.pk), {"guidelines": "no", "round_size": "many"}, format="json"
    )
    assert wrong_type.status_code == 400 and "round_size" in wrong_type.json()
    wrong_choice = admin_api.patch(_url(campaign.pk), {"scale": "ten_point"}, format="json")
    assert wrong_choice.status_code == 400 and "scale" in wrong_choice.json()
    blank_name = admin_api.patch(_url(campaign.pk), {"name": "   "}, format="json")
    assert blank_name.status_code == 400 and "name" in blank_name.json()
    misspelt = admin_api.patch(
        _url(campaign.pk), {"guidelines": "no", "itemkind": "ranking"}, format="json"
    )
    assert misspelt.status_code == 400
    assert misspelt.json()["code"] == "unknown_field" and "itemkind" in misspelt.json()["detail"]
    read_only = admin_api.patch(_url(campaign.pk), {"created_at": "2020-01-01"}, format="json")
    assert read_only.status_code == 400 and read_only.json()["code"] == "unknown_field"
    assert _settings(campaign) == before


def test_a_name_in_use_is_a_409_and_nothing_changes(admin_api, campaign):
    CampaignFactory(name="taken")
    before = _settings(campaign)
    response = admin_api.patch(
        _url(campaign.pk), {"name": "taken", "gold_share": 0.3}, format="json"
    )
    assert response.status_code == 409 and response.json()["code"] == "campaign_exists"
    assert _settings(campaign) == before


# Settings the stored data fixes


@pytest.mark.parametrize(
    "change", [{"scale": "binary"}, {"item_kind": "ranking"}, {"scale": "three_point"}]
)
def test_item_kind_and_scale_change_freely_until_the_campaign_has_pairs(admin_api, change):
    fresh = CampaignFactory()
    assert admin_api.patch(_url(fresh.pk), change, format="json").status_code == 200
    with_pairs = CampaignFactory()
    PairFactory(campaign=with_pairs)
    before = _settings(with_pairs)
    refused = admin_api.patch(_url(with_pairs.pk), {"gold_share": 0.5, **change}, format="json")
    assert refused.status_code == 409, refused.content
    body = refused.json()
    (field,) = change
    assert body["code"] == "campaign_setting_locked" and body["detail"].startswith(field)
    assert _settings(with_pairs) == before


def test_an_aspect_labels_rate_keeps_its_name_and_scale(admin_api):
    campaign = CampaignFactory(aspects=[HELPFUL, {**HELPFUL, "name": "honesty"}])
    PairFactory(campaign=campaign)
    # A label rates helpfulness (not honesty).
    assignment = assignment_next(campaign=campaign, annotator=UserFactory())
    assert assignment is not None
    label_submit(
        assignment=assignment,
        data=LabelInput(preference=1, aspect_ratings={"helpfulness": {"a": 4, "b": 2}}),
    )
    before = _settings(campaign)
    for aspects in (
        [{**HELPFUL, "name": "honesty"}],  # helpfulness dropped
        [{**HELPFUL, "scale_max": 7}, {**HELPFUL, "name": "honesty"}],  # rescaled
    ):
        refused = admin_api.patch(_url(campaign.pk), {"aspects": aspects}, format="json")
        assert refused.status_code == 409, refused.content
        body = refused.json()
        assert body["code"] == "campaign_setting_locked"
        assert "helpfulness" in body["detail"] and "honesty" not in body["detail"]
        assert _settings(campaign) == before
    # A new label for it, honesty dropped (no label rates it), a new aspect: all allowed.
    allowed = [{**HELPFUL, "label": "Useful"}, {**HELPFUL, "name": "brevity"}]
    response = admin_api.patch(_url(campaign.pk), {"aspects": allowed}, format="json")
    assert response.status_code == 200, response.content
    assert _settings(campaign)["aspects"] == allowed


def test_a_stale_read_of_a_fixed_setting_is_refused_not_applied_without_the_import_lock():
    """The service decides from the campaign it was handed whether to wait for imports; a
    change of a fixed setting committed since then is a 409 to retry, not a change made
    without holding imports off."""
    campaign = CampaignFactory(scale="five_point")
    stale = Campaign.objects.get(pk=campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(scale="binary")
    with pytest.raises(Conflict) as refused:
        campaign_update(campaign=stale, scale="five_point")
    assert refused.value.code == "campaign_changed"
    assert Campaign.objects.get(pk=campaign.pk).scale == "binary"


# Annotators per pair


def test_a_new_annotators_per_pair_reaches_the_pairs_in_rounds(admin_api):
    campaign = CampaignFactory(annotators_per_pair=3)
    settled = PairFactory(campaign=campaign, priority=2)
    for user in UserFactory.create_batch(3):
        judge(campaign, user, 1)
    halfway = PairFactory(campaign=campaign, priority=1)
    judge(campaign, UserFactory(), 1)
    pooled = PairFactory(campaign=campaign, status=Pair.Status.POOLED)

    response = admin_api.patch(
        _url(campaign.pk), {"annotators_per_pair": 5, "round_size": 50}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["changed"] == {
        "annotators_per_pair": {"old": 3, "new": 5},
        "round_size": {"old": 500, "new": 50},
    }
    assert body["annotators_per_pair_change"] == {
        "old": 3,
        "new": 5,
        "pairs_unsettled": 1,
        "pairs_one_more": 0,
        "pairs_changed": 1,
        "pairs_settled_kept": 1,
    }
    assert body["message"].startswith("Changed round_size. Annotators per pair changed from 3")
    assert body["campaign"]["annotators_per_pair"] == 5
    halfway.refresh_from_db()
    settled.refresh_from_db()
    pooled.refresh_from_db()
    assert (halfway.slot_cap, settled.slot_cap, pooled.slot_cap) == (5, 3, 3)
    assert settled.status == Pair.Status.COMPLETE
    assert Campaign.objects.get(pk=campaign.pk).annotators_per_pair == 5


# Schema


def test_the_schema_documents_both_operations():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = schema["paths"]["/api/campaigns/{campaign_id}"]
    assert set(operations) == {"get", "patch"}
    get, patch = operations["get"], operations["patch"]
    assert {"200", "403", "404"} <= set(get["responses"])
    assert {"200", "400", "403", "404", "409"} <= set(patch["responses"])
    body = patch["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/")[-1]
    properties = schema["components"]["schemas"][body]["properties"]
    assert set(properties) == set(SETTINGS_FIELDS)
    assert "required" not in schema["components"]["schemas"][body]  # a partial change
    out = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    out_properties = schema["components"]["schemas"][out.rsplit("/")[-1]]["properties"]
    assert out_properties["locked_fields"]["type"] == "array"
