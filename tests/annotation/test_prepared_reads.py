"""The hot path's prepared reads give the same model instances as the ORM (PostgreSQL)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.http import Http404
from rest_framework.test import APIRequestFactory

from annotation.authentication import TokenWithRolesAuthentication
from annotation.models import Assignment, Campaign
from annotation.roles import Role, user_has_role
from annotation.selectors import assignment_for_annotator, campaign_for_annotator
from annotation.services.assignments import assignment_next
from annotation.services.users import user_create
from tests.factories import CampaignFactory, PairFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL path"),
]


def assert_same_fields(found, expected) -> None:
    assert type(found) is type(expected) and not found._state.adding
    for field in type(expected)._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name


def test_an_assignment_and_its_campaign_read_prepared_equal_the_orms(annotator_a):
    campaign = CampaignFactory(
        escalation_rules={"disagreement_above": 0.5, "flags": ["unsafe"]},
        guidelines="Judge <b>carefully</b>.",
    )
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)

    found = assignment_for_annotator(
        assignment_id=assignment.pk, user=annotator_a, with_pair=False
    )
    expected = Assignment.objects.select_related("campaign").get(pk=assignment.pk)
    assert_same_fields(found, expected)
    assert_same_fields(found.campaign, expected.campaign)
    assert found.campaign.escalation_rules == {"disagreement_above": 0.5, "flags": ["unsafe"]}
    assert found.lease_expires_at.tzinfo is not None
    assert_same_fields(
        campaign_for_annotator(campaign_id=campaign.pk, user=annotator_a),
        Campaign.objects.get(pk=campaign.pk),
    )


def test_someone_elses_assignment_or_a_missing_campaign_is_not_found(annotator_a, annotator_b):
    campaign = CampaignFactory()
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    with pytest.raises(Http404):
        assignment_for_annotator(assignment_id=assignment.pk, user=annotator_b, with_pair=False)
    with pytest.raises(Http404):
        campaign_for_annotator(campaign_id=campaign.pk + 1000, user=annotator_a)


def test_the_token_user_read_prepared_equals_the_orms_with_its_roles():
    user, _password, token = user_create(username="tok", role=Role.EXPERT)
    request = APIRequestFactory().post("/", HTTP_AUTHORIZATION=f"Token {token}")
    found, _token = TokenWithRolesAuthentication().authenticate(request)
    assert_same_fields(found, get_user_model().objects.get(pk=user.pk))
    assert user_has_role(found, Role.EXPERT) and not user_has_role(found, Role.ANNOTATOR)
