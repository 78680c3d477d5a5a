"""create_scoring_service: a pipeline's account, in the scoring-service group, whose token may
score with a version and do nothing else; a person's account is never turned into one."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.roles import Role, role_groups
from scoring.models import ModelVersion
from tests.factories import UserFactory


def _create(username: str) -> list[str]:
    out = io.StringIO()
    call_command("create_scoring_service", username, stdout=out)
    return out.getvalue().strip().splitlines()


@pytest.mark.django_db
def test_the_account_scores_with_its_token_and_reaches_nothing_else(campaign) -> None:
    lines = _create("rlhf-pipeline")
    assert "created" in lines[0]
    token = lines[-1]
    user = get_user_model().objects.get(username="rlhf-pipeline")
    assert not user.has_usable_password() and not user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == ["scoring-service"]

    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint="/x", status="archived"
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    url = reverse("api-model-score", kwargs={"version_id": version.pk})
    body = {"items": [{"prompt": "hi", "response": "a"}]}
    # Allowed to score: the version is found (an archived one is a 409, not a 404).
    assert client.post(url, body, format="json").status_code == 409
    # Nothing an annotator or admin does.
    assert client.post(f"/api/campaigns/{campaign.pk}/next").status_code in (403, 404)
    assert client.get(f"/api/campaigns/{campaign.pk}/model-versions").status_code in (403, 404)

    again = _create("rlhf-pipeline")  # idempotent: the same token, kept and not shown again
    assert "it existed" in again[0] and again[-1].startswith("token: unchanged")
    assert client.post(url, body, format="json").status_code == 409


@pytest.mark.django_db
def test_a_persons_account_is_refused(admin_user) -> None:
    person = UserFactory(username="ada")
    person.groups.add(role_groups()[Role.ANNOTATOR])
    for name in ("ada", admin_user.username):
        with pytest.raises(CommandError, match="a person's account"):
            _create(name)
    assert not person.groups.filter(name="scoring-service").exists()
